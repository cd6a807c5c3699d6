"""One pass over PACS studies: find, fetch, decode, predict, SR, store, log — each study exactly once.

    with Runner(pacs, predictor, store, processes=True) as runner:   # store=None: predict without logging
        outcomes = runner.run(pacs.find_studies(since="20261201"))
    [o.to_json() for o in outcomes]                      # the --json contract of scripts/pacs.py

Per study, in this order: the PACS is asked whether an SR of this model version at this operating
point is there (then the study is ``exists``, and only a missing log row is made good); the frontal CR/DX chest image is
chosen and fetched, decoded (core.data.images, the same decoding as an upload), predicted in the
indication mode when the header holds an indication and image-only otherwise, and decided at the
operating point asked for (``target``; None: each mode's default) by the one policy
(core.serving.decision); the SR is stored (one STOW-RS request; its UID is derived from what it says,
core.pacs.sr); then the log row is written (core.pacs.ledger, once per study and version). A crash
between any two steps leaves nothing a re-run would duplicate or lose.
A study that cannot be scored is ``skipped`` with its reason and the run goes on; the PACS
failing (no answer, refused credentials) stops the run with ``PacsUnavailable``/``PacsAuthError``.

Where the work runs: fetching, decoding, building and storing the SR go to ``workers``
(core.pacs.study_work), processes when ``processes`` (the command line: they hold the GIL, so threads
could not use a second core) and threads otherwise (the app); the model, the guard's view check and the
log stay here, the model taking ``batch`` studies per call. ``timings`` adds up the seconds of each stage
(summed over workers). Outcomes are reported in the order of the studies.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from core.data.images import DecodedImage
from core.errors import CxrError
from core.pacs import ledger, study_work
from core.pacs.connection import Pacs, PacsAuthError, PacsError, PacsUnavailable, StudyRef
from core.pacs.sr import base_version, sr_decisions
from core.pacs.study_work import Context, Option, Prepared

STAGES = ("find", "fetch", "decode", "predict", "sr", "store", "log", "overlay")


class WorkerDied(CxrError, RuntimeError):
    """A worker process stopped without an answer (killed, or out of memory)."""


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
    text: dict | None = None                     # None when no text was read (image only), as predict.py --json
    model: str | None = None
    row_id: int | None = None                    # the log's row (not in the contract's JSON)
    out_of_distribution: bool | None = None
    date: str = ""
    # the study's decisions (core.serving.decision.Decisions: flagged / not flagged / not assessed per finding,
    # at one named operating point), as its SR states them; None when the study was not predicted
    decisions: object | None = None
    overlay_sop_instance_uid: str | None = None   # the Grad-CAM secondary capture, when asked for
    # for the page (not in the contract's JSON): the image-only evidence per finding
    image_evidence: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        keys = ("study_uid", "status", "reason", "source_sop_instance_uid", "sr_sop_instance_uid", "text_mode",
                "fusion", "image", "text", "model", "out_of_distribution")
        out = {k: getattr(self, k) for k in keys}
        d = self.decisions
        # the one decision per finding, the number a reader may see (calibrated, of an assessed finding; else
        # null) and what a flag means, at the operating point named (DESIGN.md, as predict.py --json)
        out["operating_point_name"] = d.operating_point if d is not None else None
        out["decision"] = d.status() if d is not None else None
        out["operating_point"] = d.operating_points() if d is not None else None
        out["not_assessed"] = d.not_assessed() if d is not None else None
        out["probability"] = {x.finding: x.probability for x in d} if d is not None else None
        if self.overlay_sop_instance_uid:
            out["overlay_sop_instance_uid"] = self.overlay_sop_instance_uid
        return out

    def summary(self) -> str:
        """What was decided, in words: 'flagged at specificity 0.90: Cardiomegaly · not assessed: Pneumonia,
        Consolidation: not supported from the image in this mode (...)'. No number the app would not show."""
        d = self.decisions
        if d is None:
            return ""
        if d.out_of_distribution:
            return "not assessed: " + next(iter(d.not_assessed().values()), "out-of-distribution image")
        flagged = d.flagged()
        text = f"flagged at {d.operating_point}: " + (", ".join(flagged) if flagged else "none")
        missing = d.not_assessed()
        if missing:
            reasons = sorted(set(missing.values()))
            why = f": {reasons[0]}" if len(reasons) == 1 else ""
            text += f" · not assessed: {', '.join(missing)}{why}"
        return text

    def line(self) -> str:
        """One line for a person: the study by a hash of its UID, never a patient identifier."""
        from core.data.labels import MODE_NAMES
        from core.pacs.connection import short_hash
        what = {"scored": "scored", "exists": "already has an SR of this model", "skipped": "skipped"}[self.status]
        tail = f": {self.reason}" if self.reason else ""
        if self.status == "scored" and self.decisions is not None:
            mode = MODE_NAMES.get(self.text_mode or "", self.text_mode)
            reason = f" · {self.reason}" if self.reason and not self.decisions.out_of_distribution else ""
            tail = f" · text mode {mode} · {self.summary()}{reason}"
        return f"study {short_hash(self.study_uid)} {what}{tail}"


@dataclass
class Chosen:
    """A study with the image it will be scored on, its header and its text."""
    prep: Prepared
    option: Option
    dataset: object
    text: str
    mode: str
    row_id: int | None


@dataclass
class Pending:
    """A predicted study whose SR is being written (``future``; None: nothing to write)."""
    chosen: Chosen
    logged: object                               # core.serving.predict_and_log's result
    decisions: object                            # core.serving.decision.Decisions, as the SR states them
    future: Future | None = None


class Runner:
    def __init__(self, pacs: Pacs, predictor, store=None, *, dry_run: bool = False, workers: int = 2,
                 batch: int = 8, processes: bool = False, stop: threading.Event | None = None, on_outcome=None,
                 lock=None, source: str = ledger.SOURCE, overlay: bool = False, target: str | None = None) -> None:
        from core.serving.decision import resolve_target
        self.pacs, self.predictor, self.store = pacs, predictor, store
        self.dry_run, self.workers, self.batch = dry_run, max(1, workers), max(1, batch)
        self.processes = processes
        self.stop = stop or threading.Event()
        self.on_outcome = on_outcome                  # called with each Outcome as it is decided
        self.lock = lock                              # optional: holds the model across a study
        self.source = source                          # the log's source: 'cli' (scripts/pacs.py), 'batch' (the page)
        self.overlay = overlay                        # also store the Grad-CAM overlay (core.pacs.overlay)
        self.version = base_version(predictor.version)
        # the operating point decided at (None: each mode's default); TargetError here, before any work,
        # for a name the weights do not know. An SR at another point is another SR (core.pacs.sr.is_ours_for)
        self.target = target
        self.points = tuple(sorted({resolve_target(target, m) for m in ("indication", "none")}))
        self.context = Context(pacs, self.version, self.points)
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._pool = None

    # ------------------------------------------------------------------ the worker pool
    def start(self) -> Runner:
        """Start the workers (processes: ~1 s each, spawned so no model or thread state is forked)."""
        if self._pool is None:
            if self.processes:
                import multiprocessing
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=study_work.init_process,
                    initargs=(self.pacs.url, self.pacs.session.auth, self.pacs.timeout, self.version, self.points,
                              os.getpid()))
                try:
                    for f in [self._pool.submit(study_work.warm) for _ in range(self.workers)]:
                        f.result()
                except BrokenProcessPool:
                    raise WorkerDied("a worker process could not start; run with fewer --workers") from None
            else:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pacs-work")
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (none with threads): the benchmark adds up their CPU time."""
        return list(getattr(self._pool, "_processes", None) or ()) if self.processes else []

    def _submit(self, fn, *args) -> Future:
        return self._pool.submit(study_work.in_context, fn, None if self.processes else self.context, *args)

    # ------------------------------------------------------------------ deciding what to score
    def _prepared(self, ref: StudyRef, future: Future) -> Prepared:
        try:
            return future.result()
        except (PacsUnavailable, PacsAuthError):
            raise
        except PacsError as exc:                      # this study only (gone since it was listed...)
            return Prepared(ref, skip=str(exc))
        except BrokenProcessPool:
            raise WorkerDied("a worker process stopped (killed, or out of memory); run the same command again: "
                             "what was stored is complete") from None

    def _choose(self, prep: Prepared, row_id: int | None) -> Outcome | Chosen:
        uid = prep.ref.study_uid
        if prep.done:
            return Outcome(uid, "exists", "", sr_sop_instance_uid=prep.sr_uid, model=self.version, row_id=row_id,
                           date=prep.ref.date)
        if prep.skip:
            return Outcome(uid, "skipped", prep.skip)
        laterals = list(prep.laterals)
        for option in prep.options:
            if option.candidate.kind == "unknown" and self._looks_lateral(option.decoded):
                laterals.append(option.candidate)
                continue
            dataset = study_work.header(option.data)
            text, mode = study_work.read_text(dataset)
            return Chosen(prep, option, dataset, text, mode, row_id)
        if prep.problems:
            return Outcome(uid, "skipped", f"the frontal image cannot be decoded: {prep.problems[0]}")
        views = ", ".join(sorted({c.view or "no view position; the guard says lateral" for c in laterals}))
        return Outcome(uid, "skipped", f"only a lateral view ({views}); no findings are given for a lateral: "
                                       "add the frontal view")

    def _looks_lateral(self, decoded: DecodedImage) -> bool:
        from core.model.guard import LATERAL_REASON
        guard = getattr(self.predictor, "ood", None)
        if guard is None:
            return False
        return guard.check(decoded.gray, decoded.colorfulness).reason == LATERAL_REASON

    # ------------------------------------------------------------------ the model, the SR, the log
    def _predict(self, ready: list[Chosen]) -> list[Pending]:
        from core.serving.predict_and_log import Study, predict_and_log_many
        t = time.perf_counter()
        studies = [Study(c.option.decoded.gray, c.option.data, ledger.row_name(c.prep.ref.study_uid), c.text, c.mode,
                         colorfulness=c.option.decoded.colorfulness) for c in ready]
        done = predict_and_log_many(self.predictor, None, studies, source=self.source, lock=self.lock,
                                    target=self.target)
        self.timings["predict"] += time.perf_counter() - t
        out = []
        for chosen, logged in zip(ready, done, strict=True):
            decisions = sr_decisions(logged.prediction, self.predictor.description)
            write = not self.dry_run and not chosen.prep.sr_exists
            out.append(Pending(chosen, logged, decisions, self._submit(
                study_work.write_sr, chosen.dataset, logged.prediction, decisions) if write else None))
        return out

    def _complete(self, item: Pending) -> Outcome:
        """The SR is stored (or was there): the overlay when asked for, then the log row."""
        from core.serving.predict_and_log import log_entry
        chosen, pred = item.chosen, item.logged.prediction
        prep, uid = chosen.prep, chosen.prep.ref.study_uid
        status, sr_uid = ("exists", prep.sr_uid) if prep.sr_exists else ("scored", None)
        overlay_uid = None
        text = item.logged.window.read if item.logged.window else ""
        if item.future is not None:
            try:
                sr_uid, build_s, store_s = item.future.result()   # PacsUnavailable: nothing logged, a re-run stores it
            except BrokenProcessPool:
                raise WorkerDied("a worker process stopped while storing a report; run the same command again: "
                                 "what was stored is complete") from None
            self.timings["sr"] += build_s
            self.timings["store"] += store_s
            if self.overlay:
                t = time.perf_counter()
                overlay_uid = self._store_overlay(chosen, pred, item.decisions, text)
                self.timings["overlay"] += time.perf_counter() - t
        row_id = None
        if not self.dry_run and self.store is not None:
            t = time.perf_counter()
            entry = log_entry(pred, gray=chosen.option.decoded.gray, image_bytes=chosen.option.data,
                              image_name=ledger.row_name(uid), text=text, source=self.source, keep_name=True)
            row_id, _ = ledger.log_once(self.store, uid, entry)
            self.timings["log"] += time.perf_counter() - t
        reason = "dry run: nothing written" if self.dry_run else (
            "the SR was there; its missing log row was written" if prep.sr_exists else "")
        if pred.out_of_distribution:
            reason = (reason + "; " if reason else "") + f"out of distribution: {pred.ood_reason}"
        return Outcome(uid, status, reason, source_sop_instance_uid=chosen.option.candidate.sop_uid,
                       sr_sop_instance_uid=None if self.dry_run else sr_uid, text_mode=pred.text_mode,
                       fusion=pred.fusion, image=pred.image, text=pred.text if pred.has_text else None,
                       model=pred.model, row_id=row_id, out_of_distribution=pred.out_of_distribution,
                       date=prep.ref.date, decisions=item.decisions, overlay_sop_instance_uid=overlay_uid,
                       image_evidence=dict(pred.head_evidence.get("image") or {}))

    def _store_overlay(self, chosen: Chosen, pred, decisions, text: str) -> str | None:
        """Grad-CAM (image head) of the leading assessed finding (core.pacs.overlay.leading_finding), stored
        as a Secondary Capture series beside the SR; returns its SOP Instance UID (None: no finding was
        assessed, as for an out-of-distribution image: nothing to explain)."""
        from contextlib import nullcontext

        from core.pacs.overlay import build_overlay, leading_finding
        finding = leading_finding(decisions, pred.fusion)
        if finding is None:
            return None
        gray = chosen.option.decoded.gray
        with self.lock if self.lock is not None else nullcontext():
            attribution = self.predictor.attribute(gray, text, pred.text_mode, finding=finding,
                                                   head="image", method="gradcam")
        ds = build_overlay(chosen.dataset, gray, attribution, version=pred.model)
        self.pacs.store(ds)
        return str(ds.SOPInstanceUID)

    # ------------------------------------------------------------------ the pass
    def run(self, refs: list[StudyRef]) -> list[Outcome]:
        """Every study of ``refs`` once, reported in order; stops early (between studies) when ``stop`` is
        set, after finishing the studies whose reports are being stored."""
        owned = self._pool is None                    # started here: closed here (a runner used once)
        self.start()
        outcomes: list[Outcome] = []
        ahead = self.workers * 2 + self.batch
        queue: deque = deque()                        # (ref, log row id, future of study_work.prepare)
        pending: deque = deque()                      # Outcome, or Pending (its SR being written)
        todo = iter(refs)
        ready: list[Chosen] = []

        def fill() -> None:
            while len(queue) < ahead and not self.stop.is_set():
                ref = next(todo, None)
                if ref is None:
                    return
                row_id = None if self.store is None else ledger.logged_id(self.store, ref.study_uid, self.version)
                settled = self.dry_run or self.store is None or row_id is not None   # no row left to write
                queue.append((ref, row_id, self._submit(study_work.prepare, ref, settled)))

        def emit(block: bool) -> None:
            while pending:
                head = pending[0]
                if isinstance(head, Pending):
                    if not block and head.future is not None and not head.future.done():
                        return
                    head = self._complete(head)
                pending.popleft()
                outcomes.append(head)
                if self.on_outcome is not None:
                    self.on_outcome(head)

        try:
            fill()
            while queue and not self.stop.is_set():
                ref, row_id, future = queue.popleft()
                prep = self._prepared(ref, future)
                fill()
                for k, v in prep.timings.items():
                    self.timings[k] += v
                decided = self._choose(prep, row_id)
                if isinstance(decided, Outcome):
                    pending.append(decided)
                else:
                    ready.append(decided)
                if ready and (len(ready) >= self.batch or not queue):
                    pending.extend(self._predict(ready))
                    ready = []
                emit(block=False)
            if ready and not self.stop.is_set():
                pending.extend(self._predict(ready))
            emit(block=True)
        finally:
            for _, _, f in queue:
                f.cancel()
            if owned:
                self.close()
        return outcomes
