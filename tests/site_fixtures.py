"""Simulated sites made from the IU X-ray test split of the shipped weights (tests and docs/site-validation.md).

    write_site(out_dir, reports, data_dir)                         # the same images, IU labels as columns
    write_site(out_dir, reports, data_dir, shift=SCANNER_SHIFT)    # another scanner: gamma, contrast, JPEG, size

Each report's frontal images are rows sharing its uid as ``id``; ``report`` is FINDINGS + IMPRESSION and
``indication`` the INDICATION section, as the model reads them; ``label_<Finding>`` the IU coding (MeSH).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

# a shifted scanner: darker mid-tones (gamma), more contrast, heavy JPEG and half the resolution
SCANNER_SHIFT = {"gamma": 0.6, "contrast": 1.3, "jpeg_quality": 30, "scale": 0.5}


def test_reports(data_dir: Path, weights: Path):
    """The shipped weights' test split as Report objects (frontal images on disk)."""
    from core.evaluation.split_eval import select_reports, weights_collection
    from core.model.description import read_description
    desc = read_description(weights)
    return select_reports(weights_collection(desc, Path(data_dir)).reports, "test", desc.split)


def shifted(png: Path, *, gamma: float, contrast: float, jpeg_quality: int, scale: float) -> bytes:
    """The image as another scanner might give it (JPEG bytes)."""
    x = np.asarray(Image.open(png).convert("L"), dtype=np.float64) / 255.0
    x = np.clip((x ** gamma - 0.5) * contrast + 0.5, 0, 1)
    im = Image.fromarray((x * 255).round().astype(np.uint8))
    im = im.resize((max(8, int(im.width * scale)), max(8, int(im.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=jpeg_quality)
    return buf.getvalue()


def write_site(out: Path, reports, data_dir: Path, *, shift: dict | None = None, labels: bool = True,
               name: str = "site.csv") -> Path:
    """A site CSV (and, with ``shift``, its shifted images under out/images) for ``reports``."""
    from core.data.labels import FINDINGS
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png_dir = Path(data_dir) / "NLMCXR_png"
    rows = []
    for r in reports:
        for image_id in r.image_ids:
            src = png_dir / f"{image_id}.png"
            if shift:
                (out / "images").mkdir(exist_ok=True)
                dst = out / "images" / f"{image_id}.jpg"
                if not dst.is_file():
                    dst.write_bytes(shifted(src, **shift))
                image = f"images/{dst.name}"
            else:
                image = str(src.resolve())
            row = {"image": image, "report": r.text("report"), "indication": r.text("indication"), "id": r.uid}
            if labels:
                row.update({f"label_{f}": v for f, v in zip(FINDINGS, r.labels, strict=True)})
            rows.append(row)
    path = out / name
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def halves(reports) -> tuple[list, list]:
    """Two halves of a site, stratified by the labels (each label pattern dealt alternately), so each half
    holds about half the positives of every finding: one to adapt on, one held out."""
    ordered = sorted(reports, key=lambda r: (tuple(r.labels), r.uid))
    return ordered[0::2], ordered[1::2]


def few_positives(reports, *, n: int = 150, keep: dict | None = None) -> list:
    """A small site with few positives: ``keep`` (finding -> how many positives to keep, default 4 of each)
    and studies without any of the five findings up to ``n``."""
    from core.data.labels import FINDINGS
    keep = dict(keep or {f: 4 for f in FINDINGS})
    chosen, taken = [], {f: 0 for f in FINDINGS}
    for r in sorted(reports, key=lambda r: r.uid):
        pos = [f for f, v in zip(FINDINGS, r.labels, strict=True) if v]
        if pos and all(taken[f] < keep.get(f, 0) for f in pos):
            chosen.append(r)
            for f in pos:
                taken[f] += 1
    for r in sorted(reports, key=lambda r: r.uid):
        if len(chosen) >= n:
            break
        if not any(r.labels):
            chosen.append(r)
    return chosen


def main(argv=None) -> int:
    """Write the simulated sites of docs/site-validation.md: python -m tests.site_fixtures --out /tmp/sites"""
    import argparse
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", required=True, help="folder for the sites")
    p.add_argument("--data", default=str(root.parent / "shared" / "iu-xray"), help="the IU X-ray folder")
    p.add_argument("--weights", default=str(root / "weights"), help="whose test split")
    args = p.parse_args(argv)
    out, data = Path(args.out), Path(args.data)
    reports = test_reports(data, Path(args.weights))
    fit, held = halves(reports)
    print(write_site(out / "same", reports, data))
    print(write_site(out / "shifted", fit, data, shift=SCANNER_SHIFT, name="fit.csv"))
    print(write_site(out / "shifted", held, data, shift=SCANNER_SHIFT, name="held.csv"))
    print(write_site(out / "few", few_positives(reports, n=150), data, labels=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
