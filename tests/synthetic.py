"""Small Open-I-layout folders made by the tests themselves (no patient data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <IUXRId id="{uid}"/>
   <MedlineCitation><Article><Abstract>
      <AbstractText Label="COMPARISON">None.</AbstractText>
      <AbstractText Label="INDICATION">{indication}</AbstractText>
      <AbstractText Label="FINDINGS">{findings}</AbstractText>
      <AbstractText Label="IMPRESSION">{impression}</AbstractText>
   </Abstract></Article></MedlineCitation>
   <MeSH>{mesh}</MeSH>
   {images}
</eCitation>
"""

PATTERNS = [  # (MeSH major terms, findings text)
    (["normal"], "The heart is normal in size. The lungs are clear. No pneumonia."),
    (["Cardiomegaly/mild"], "The heart is enlarged. Lungs are clear."),
    (["Pulmonary Atelectasis/base/left"], "Left basilar atelectasis. Heart size normal."),
    (["Pulmonary Edema", "Cardiomegaly"], "Cardiomegaly with pulmonary edema."),
    (["Pneumonia/lung/lower lobe/right", "Consolidation"], "Right lower lobe consolidation consistent with pneumonia."),
]


def write_png(path: Path, seed: int, bright: bool, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    img = rng.normal(90, 25, (size, size + 8))
    if bright:  # a crude "large heart" the image branch can learn
        img[size // 3: size, size // 4: 3 * size // 4] += 80
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def make_openi(root: Path, n_reports: int = 40, *, images_per_report: int = 1, manifest: bool = True) -> Path:
    png = root / "NLMCXR_png"
    xml = root / "NLMCXR_reports" / "ecgen-radiology"
    png.mkdir(parents=True)
    xml.mkdir(parents=True)
    rows = ["image_id,uid,view,width,height"]
    for uid in range(1, n_reports + 1):
        mesh, text = PATTERNS[uid % len(PATTERNS)]
        ids = [f"CXR{uid}_IM-{uid:04d}-{k + 1}001" for k in range(images_per_report)]
        for k, image_id in enumerate(ids):
            write_png(png / f"{image_id}.png", uid * 10 + k, bright="Cardiomegaly" in " ".join(mesh))
            rows.append(f"{image_id},{uid},frontal,72,64")
        (xml / f"{uid}.xml").write_text(XML.format(
            uid=uid, indication="Cough and fever." if uid % 2 else "Chest pain.", findings=text,
            impression="See findings.", mesh="".join(f"<major>{m}</major>" for m in mesh),
            images="".join(f'<parentImage id="{i}"><caption>PA</caption></parentImage>' for i in ids)))
    # a report with no image on disk, and one whose XML lists a missing image
    (xml / f"{n_reports + 1}.xml").write_text(XML.format(uid=n_reports + 1, indication="", findings="Normal.",
                                                          impression="", mesh="<major>normal</major>",
                                                          images='<parentImage id="CXR_MISSING"/>'))
    if manifest:
        (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root
