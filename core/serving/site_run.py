"""The model over a site's studies (core.data.site_table), resumable: every image image-only, and with its
study's indication where there is one, through ``Predictor.predict_batch``.

    preds = predict_site(predictor, table, load_image=..., out=Path("site.json"), on_progress=print)

Rows go in fixed blocks of 16 images into ``OUT.parts/`` (core.serving.sharded_batch: a CRC per line, one
fsync per block, a fingerprint of the table and the model), so a run killed at any point resumes with the
blocks it had not finished. A study's probability per task is the one its images give; with several images
(rows sharing an id) the mean of their probabilities *before* the weights' calibration map, then the map,
as scripts/evaluate.py scores a report with several frontal images (core.evaluation.split_eval).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.images import DecodedImage, ImageDecodeError
from core.data.site_table import SiteError, SiteTable
from core.evaluation.recalibration import logit, map_for, sigmoid
from core.evaluation.site_measure import TASKS
from core.serving.sharded_batch import PartWriter, done_rows, my_blocks, open_parts, parts_dir

BLOCK = 16


@dataclass
class SitePredictions:
    """task -> studies x findings (NaN for a study outside the task), and the guard per image."""
    probs: dict[str, np.ndarray]
    ood: list[bool]
    ood_per_study: list[list[bool]]
    model: str
    predicted_now: int = 0            # images the model ran on in this call (the rest were in the parts)


def _fields(none_pred, ind_pred, findings) -> list:
    """One image's line: guard flag and score, the image-only probabilities, those with the indication."""
    none_p = [repr(float(none_pred.image[f])) for f in findings]
    ind_p = [repr(float(ind_pred.fusion[f])) for f in findings] if ind_pred is not None else [""] * len(findings)
    return [int(none_pred.out_of_distribution), repr(float(none_pred.ood_score)), *none_p, *ind_p]


def _predict_block(predictor, table: SiteTable, rows: list[tuple[int, str]], chunk: list[int],
                   load_image: Callable[[str], DecodedImage], target) -> list[tuple[int, list]]:
    images = []
    for r in chunk:
        k, source = rows[r]
        try:
            images.append(load_image(source))
        except (ImageDecodeError, OSError) as exc:
            raise SiteError(f"study {table.studies[k].id!r}, image {source!r}: {exc}") from None
    grays, colour = [im.gray for im in images], [im.colorfulness for im in images]
    none = predictor.predict_batch(grays, [""] * len(chunk), ["none"] * len(chunk), colorfulness=colour,
                                   target=target)
    with_ind = [i for i, r in enumerate(chunk) if table.studies[rows[r][0]].indication]
    ind = [None] * len(chunk)
    if with_ind:
        got = predictor.predict_batch([grays[i] for i in with_ind],
                                      [table.studies[rows[chunk[i]][0]].indication for i in with_ind],
                                      ["indication"] * len(with_ind), colorfulness=[colour[i] for i in with_ind],
                                      target=target)
        for i, p in zip(with_ind, got, strict=True):
            ind[i] = p
    return [(r, _fields(n, d, predictor.findings)) for r, n, d in zip(chunk, none, ind, strict=True)]


def _study_value(values: list[float], recalibration, mode: str, head: str, finding: str) -> float:
    """One study's probability from its images' served (mapped) ones: the mean before the map, then the map."""
    if len(values) == 1:
        return values[0]
    m = map_for(recalibration, mode, head, finding)
    if m is None:
        return float(np.mean(values))
    raw = sigmoid((logit(np.array(values)) - m.b) / m.a)
    return float(m(np.mean(raw)))


def collect(table: SiteTable, lines: dict[int, list[str]], findings, recalibration, model: str,
            predicted_now: int = 0) -> SitePredictions:
    """The per-study probabilities and guard flags from every image's line."""
    rows = table.image_rows()
    nf = len(findings)
    per_study: list[list[int]] = [[] for _ in table.studies]
    for r, (k, _) in enumerate(rows):
        per_study[k].append(r)
    probs = {task: np.full((len(table.studies), nf), np.nan) for task in TASKS}
    for k, rs in enumerate(per_study):
        for t, (task, (mode, head)) in enumerate(TASKS.items()):
            start = 2 + t * nf
            cells = [lines[r][start:start + nf] for r in rs]
            if any(c == "" for cell in cells for c in cell):
                continue  # no indication for this study: outside image + indication
            for j, f in enumerate(findings):
                probs[task][k, j] = _study_value([float(c[j]) for c in cells], recalibration, mode, head, f)
    ood = [lines[r][0] == "1" for r in range(len(rows))]
    return SitePredictions(probs, ood, [[ood[r] for r in rs] for rs in per_study], model, predicted_now)


def predict_site(predictor, table: SiteTable, *, load_image: Callable[[str], DecodedImage], out: Path,
                 target: str | None = None, on_progress: Callable[[int, int], None] | None = None,
                 keep_parts: bool = False, lock=None) -> SitePredictions:
    """Predict every image of ``table`` not yet in ``OUT.parts/`` (see the module docstring), then collect
    the per-study probabilities; the parts are removed at the end unless ``keep_parts``. ``lock``: held
    around each block's model calls (the app passes ``Predictor.exclusive()``: a block is served by one set of
    encoders, and other sessions predict between blocks)."""
    rows = table.image_rows()
    fingerprint = {"batch_sha256": table.fingerprint(), "model": predictor.version, "what": "site validation"}
    parts = open_parts(Path(out), fingerprint)
    done = done_rows(parts)
    todo = my_blocks(len(rows), set(done), 0, 1, BLOCK)
    finished = len(rows) - sum(len(b) for b in todo)
    if on_progress:
        on_progress(finished, len(rows))
    writer = PartWriter(parts, 0)
    predicted = 0
    try:
        for chunk in todo:
            with lock if lock is not None else nullcontext():
                lines = _predict_block(predictor, table, rows, chunk, load_image, target)
            writer.write(lines)
            finished += len(chunk)
            predicted += len(chunk)
            if on_progress:
                on_progress(finished, len(rows))
    finally:
        writer.close()
    lines = done_rows(parts)
    result = collect(table, lines, list(predictor.findings), predictor.recalibration, predictor.version, predicted)
    if not keep_parts:
        shutil.rmtree(parts_dir(Path(out)), ignore_errors=True)
    return result
