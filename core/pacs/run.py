"""One pass over PACS studies: find, fetch, decode, predict, SR, store, log — each study exactly once.

    runner = Runner(pacs, predictor, store)              # store=None: predict without logging
    outcomes = runner.run(pacs.find_studies(since="20261201"))
    [o.to_json() for o in outcomes]                      # the --json contract of scripts/pacs.py

Per study, in this order: the PACS is asked whether an SR of this model version is there (then the
study is ``exists``, and only a missing log row is made good); the frontal CR/DX chest image is
chosen and fetched, decoded (core.data.images, the same decoding as an upload), predicted in the
indication mode when the header holds an indication and image-only otherwise; the SR is stored
(one STOW-RS request, fixed UIDs); then the log row is written (core.pacs.ledger, once per study
and version). A crash between any two steps leaves nothing a re-run would duplicate or lose.
A study that cannot be scored is ``skipped`` with its reason and the run goes on; the PACS
failing (no answer, refused credentials) stops the run with ``PacsUnavailable``/``PacsAuthError``.

Fetching and decoding run on ``workers`` threads a few studies ahead of the model, which takes
``batch`` studies per call; ``timings`` adds up the seconds of each stage.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from core.data.images import DecodedImage, ImageDecodeError, decode_image
from core.data.text_clean import TextError, clean_text
from core.pacs import ledger
from core.pacs.connection import Pacs, PacsAuthError, PacsError, PacsUnavailable, StudyRef
from core.pacs.sr import algorithm_versions, base_version, build_sr, sr_uids
from core.pacs.studies import Candidate, candidates, indication_of, ordered

MAX_TEXT_CHARS = 20_000
STAGES = ("find", "fetch", "decode", "predict", "sr", "store", "log", "overlay")


@dataclass
class Outcome:
    """What happened to one study (``to_json``: one object of scripts/pacs.py --json)."""
    study_uid: str
    status: str                                  # scored | exists | skipped
    reason: str = ""
    source_sop_instance_uid: str | None = None
    sr_sop_instance_uid: str | None = None
    text_mode: str | None = None
    fusion: dict | None = None
    image: dict | None = None
    text: dict | None = None
    model: str | None = None
    row_id: int | None = None                    # the log's row (not in the contract's JSON)
    out_of_distribution: bool | None = None
    date: str = ""
    positive: list = field(default_factory=list)  # findings at or above the fused threshold
    overlay_sop_instance_uid: str | None = None   # the Grad-CAM secondary capture, when asked for

    def to_json(self) -> dict:
        keys = ("study_uid", "status", "reason", "source_sop_instance_uid", "sr_sop_instance_uid", "text_mode",
                "fusion", "image", "text", "model")
        out = {k: getattr(self, k) for k in keys}
        if self.overlay_sop_instance_uid:
            out["overlay_sop_instance_uid"] = self.overlay_sop_instance_uid
        return out

    def line(self) -> str:
        """One line for a person: the study by a hash of its UID, never a patient identifier."""
        from core.pacs.connection import short_hash
        what = {"scored": "scored", "exists": "already has an SR of this model", "skipped": "skipped"}[self.status]
        tail = f": {self.reason}" if self.reason else ""
        if self.status == "scored" and self.fusion:
            top = max(self.fusion, key=self.fusion.get)
            tail = f" ({self.text_mode} mode; highest {top} {self.fusion[top]:.3f}){tail}"
        return f"study {short_hash(self.study_uid)} {what}{tail}"


@dataclass
class Prepared:
    ref: StudyRef
    outcome: Outcome | None = None               # decided without the model (skipped, or done)
    chosen: Candidate | None = None
    data: bytes = b""
    dataset: object = None                       # the fetched instance's header (pydicom, no pixels)
    decoded: DecodedImage | None = None
    text: str = ""
    mode: str = "none"
    sr_exists: bool = False
    sr_uid: str | None = None
    timings: dict = field(default_factory=lambda: defaultdict(float))


class Runner:
    def __init__(self, pacs: Pacs, predictor, store=None, *, dry_run: bool = False, workers: int = 2,
                 batch: int = 8, stop: threading.Event | None = None, on_outcome=None, lock=None,
                 source: str = ledger.SOURCE, overlay: bool = False) -> None:
        self.pacs, self.predictor, self.store = pacs, predictor, store
        self.dry_run, self.workers, self.batch = dry_run, max(1, workers), max(1, batch)
        self.stop = stop or threading.Event()
        self.on_outcome = on_outcome                  # called with each Outcome as it is decided
        self.lock = lock                              # guards the model call (the app's MODEL_LOCK)
        self.source = source                          # the log's source: 'cli' (scripts/pacs.py), 'batch' (the page)
        self.overlay = overlay                        # also store the Grad-CAM overlay (core.pacs.overlay)
        self.version = base_version(predictor.version)
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    # ------------------------------------------------------------------ one study, off the main thread
    def prepare(self, ref: StudyRef) -> Prepared:
        prep = Prepared(ref)
        t = time.perf_counter()
        try:
            self._prepare(prep)
        except (PacsUnavailable, PacsAuthError):
            raise
        except PacsError as exc:                      # this study only (gone since it was listed...)
            prep.outcome = Outcome(ref.study_uid, "skipped", str(exc))
        prep.timings["fetch"] += time.perf_counter() - t - prep.timings["decode"]
        return prep

    def _prepare(self, prep: Prepared) -> None:
        uid = prep.ref.study_uid
        series = self.pacs.series(uid)
        images, sr_series = candidates(series, lambda s: self.pacs.series_metadata(uid, s))
        for s in sr_series:
            for meta in self.pacs.series_metadata(uid, s):
                if self.version in algorithm_versions(meta):
                    prep.sr_exists = True
                    prep.sr_uid = str(((meta.get("00080018") or {}).get("Value") or [None])[0])
        row_id = None if self.store is None else ledger.logged_id(self.store, uid, self.version)
        if prep.sr_exists and (self.dry_run or self.store is None or row_id is not None):
            prep.outcome = Outcome(uid, "exists", "", sr_sop_instance_uid=prep.sr_uid, model=self.version,
                                   row_id=row_id, date=prep.ref.date)
            return
        frontal, unknown, lateral = ordered(images)
        if not images:
            prep.outcome = Outcome(uid, "skipped", "no CR or DX image in the study")
            return
        if not (frontal or unknown or lateral):
            parts = sorted({c.body_part for c in images if c.body_part})
            prep.outcome = Outcome(uid, "skipped", f"not a chest study (body part {', '.join(parts)})")
            return
        problems = []
        for cand in [*frontal[:1], *unknown]:
            try:
                data = self.pacs.retrieve(uid, cand.series_uid, cand.sop_uid)
                t = time.perf_counter()
                decoded = decode_image(data, filename="image.dcm")
                prep.timings["decode"] += time.perf_counter() - t
            except ImageDecodeError as exc:
                problems.append(str(exc))
                continue
            if cand.kind == "unknown" and self._looks_lateral(decoded):
                lateral.append(cand)
                continue
            prep.chosen, prep.data, prep.decoded = cand, data, decoded
            break
        if prep.chosen is None:
            if problems:
                prep.outcome = Outcome(uid, "skipped", f"the frontal image cannot be decoded: {problems[0]}")
            else:
                views = ", ".join(sorted({c.view or "no view position; the guard says lateral" for c in lateral}))
                prep.outcome = Outcome(uid, "skipped", f"only a lateral view ({views}); no findings are given "
                                                       "for a lateral: add the frontal view")
            return
        import io

        import pydicom
        prep.dataset = pydicom.dcmread(io.BytesIO(prep.data), stop_before_pixels=True, force=True)
        try:
            prep.text = clean_text(indication_of(prep.dataset), max_chars=MAX_TEXT_CHARS)
        except TextError:
            prep.text = ""
        prep.mode = "indication" if prep.text else "none"

    def _looks_lateral(self, decoded: DecodedImage) -> bool:
        from core.model.guard import LATERAL_REASON
        guard = getattr(self.predictor, "ood", None)
        if guard is None:
            return False
        return guard.check(decoded.gray, decoded.colorfulness).reason == LATERAL_REASON

    # ------------------------------------------------------------------ the model, the SR, the log
    def _finish(self, ready: list[Prepared]) -> list[Outcome]:
        from core.serving.predict_and_log import Study, log_entry, predict_and_log_many
        t = time.perf_counter()
        studies = [Study(p.decoded.gray, p.data, ledger.row_name(p.ref.study_uid), p.text, p.mode,
                         colorfulness=p.decoded.colorfulness) for p in ready]
        done = predict_and_log_many(self.predictor, None, studies, source=self.source, lock=self.lock)
        self.timings["predict"] += time.perf_counter() - t
        out = []
        for prep, logged in zip(ready, done, strict=True):
            pred, uid = logged.prediction, prep.ref.study_uid
            overlay_uid = None
            status, sr_uid = ("exists", prep.sr_uid) if prep.sr_exists else ("scored", sr_uids(uid, self.version)[1])
            if not self.dry_run and not prep.sr_exists:
                t = time.perf_counter()
                sr = build_sr(prep.dataset, pred, version=self.version)
                self.timings["sr"] += time.perf_counter() - t
                t = time.perf_counter()
                self.pacs.store(sr)                    # PacsUnavailable here: nothing logged, a re-run stores it
                self.timings["store"] += time.perf_counter() - t
                if self.overlay:
                    t = time.perf_counter()
                    overlay_uid = self._store_overlay(prep, pred, logged.window.read if logged.window else "")
                    self.timings["overlay"] += time.perf_counter() - t
            row_id = None
            if not self.dry_run and self.store is not None:
                t = time.perf_counter()
                entry = log_entry(pred, gray=prep.decoded.gray, image_bytes=prep.data,
                                  image_name=ledger.row_name(uid), text=logged.window.read if logged.window else "",
                                  source=self.source, keep_name=True)
                row_id, _ = ledger.log_once(self.store, uid, entry)
                self.timings["log"] += time.perf_counter() - t
            reason = "dry run: nothing written" if self.dry_run else (
                "the SR was there; its missing log row was written" if prep.sr_exists else "")
            if pred.out_of_distribution:
                reason = (reason + "; " if reason else "") + f"out of distribution: {pred.ood_reason}"
            out.append(Outcome(uid, status, reason, source_sop_instance_uid=prep.chosen.sop_uid,
                               sr_sop_instance_uid=None if self.dry_run else sr_uid, text_mode=pred.text_mode,
                               fusion=pred.fusion, image=pred.image, text=pred.text, model=pred.model,
                               row_id=row_id, out_of_distribution=pred.out_of_distribution, date=prep.ref.date,
                               positive=pred.positive("fusion"), overlay_sop_instance_uid=overlay_uid))
        return out

    def _store_overlay(self, prep: Prepared, pred, text: str) -> str:
        """Grad-CAM (image head) of the finding furthest above its threshold (or nearest below), stored
        as a Secondary Capture series beside the SR; returns its SOP Instance UID."""
        from contextlib import nullcontext

        from core.pacs.overlay import build_overlay
        finding = max(pred.fusion, key=lambda f: pred.fusion[f] / max(pred.thresholds[f], 1e-6))
        with self.lock if self.lock is not None else nullcontext():
            attribution = self.predictor.attribute(prep.decoded.gray, text, pred.text_mode, finding=finding,
                                                   head="image", method="gradcam")
        ds = build_overlay(prep.dataset, prep.decoded.gray, attribution, version=self.version)
        self.pacs.store(ds)
        return str(ds.SOPInstanceUID)

    def run(self, refs: list[StudyRef]) -> list[Outcome]:
        """Every study of ``refs`` once, in order; stops early (between studies) when ``stop`` is set."""
        outcomes: list[Outcome] = []
        ahead = self.workers * 2 + self.batch
        with ThreadPoolExecutor(self.workers, thread_name_prefix="pacs-fetch") as pool:
            queue: deque = deque()
            todo = iter(refs)
            ready: list[Prepared] = []

            def fill():
                while len(queue) < ahead and not self.stop.is_set():
                    ref = next(todo, None)
                    if ref is None:
                        return
                    queue.append(pool.submit(self.prepare, ref))

            def emit(items: list[Outcome]) -> None:
                for o in items:
                    outcomes.append(o)
                    if self.on_outcome is not None:
                        self.on_outcome(o)

            try:
                fill()
                while queue and not self.stop.is_set():
                    prep = queue.popleft().result()
                    fill()
                    for k, v in prep.timings.items():
                        self.timings[k] += v
                    if prep.outcome is not None:
                        emit([prep.outcome])
                        continue
                    ready.append(prep)
                    if len(ready) >= self.batch or not queue:
                        emit(self._finish(ready))
                        ready = []
                if ready and not self.stop.is_set():
                    emit(self._finish(ready))
            finally:
                for f in queue:
                    f.cancel()
        return outcomes
