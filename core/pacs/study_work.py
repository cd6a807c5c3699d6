"""The work on one study that needs no model: fetch and decode (before), build and store the SR (after).

core.pacs.run hands these to a pool: worker *processes* for the command line (the codecs and SR building
hold Python's GIL: two decoding threads ran 0.9-1.3x one), threads in the app. Either way the functions
take a ``Context``: the process's own (``init_process`` makes it from the URL and credentials, passed in
memory, never on a command line) or the caller's. Nothing here imports torch: a worker process starts
in ~1 s and holds no model.
"""
from __future__ import annotations

import io
import time
from collections import defaultdict
from dataclasses import dataclass, field

from core.data.images import DecodedImage, ImageDecodeError, decode_image
from core.data.text_clean import MAX_TEXT_CHARS, TextError, clean_text
from core.pacs.connection import Pacs, StudyRef
from core.pacs.sr import build_sr, is_ours_for
from core.pacs.studies import Candidate, candidates, indication, ordered


@dataclass
class Context:
    pacs: Pacs
    version: str                                 # the weights' version (no "+int8")
    points: tuple[str, ...] = ()                 # the operating points asked for (an SR at another is not ours)


@dataclass
class Option:
    """A decoded image the study could be scored on (the model's side decides an unknown view)."""
    candidate: Candidate
    data: bytes
    decoded: DecodedImage


@dataclass
class Prepared:
    """A study fetched and decoded, or decided without the model (``skip`` set, or done already)."""
    ref: StudyRef
    skip: str = ""                               # why no image can be scored ('' when there is one)
    options: list[Option] = field(default_factory=list)   # the frontal, or the images of unknown view
    laterals: list[Candidate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)     # why candidates failed to decode
    sr_exists: bool = False
    sr_uid: str | None = None
    done: bool = False                           # the SR is there and so is the log row: nothing to do
    timings: dict = field(default_factory=lambda: defaultdict(float))


_PROCESS_CONTEXT: Context | None = None


def init_process(url: str, auth, timeout: float, version: str, points: tuple[str, ...], parent: int) -> None:
    """A worker process's own connection (its own HTTP session). Ctrl-C and SIGTERM are the parent's to
    handle (a service manager signals the whole group): it finishes the studies in hand, then ends the
    workers. If the parent dies (kill -9), the worker dies with it."""
    import signal
    global _PROCESS_CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with(parent)
    _PROCESS_CONTEXT = Context(Pacs(url, auth, timeout=timeout), version, points)


def _die_with(parent: int) -> None:
    """On Linux the kernel kills this process when its parent dies (PR_SET_PDEATHSIG), so a killed command
    leaves no worker finishing a report on its own: what is stored is what the command had stored."""
    import os
    import sys
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:            # the parent died before the line above: nothing to work for
        os._exit(1)


def warm() -> None:
    """Import what the first study would (highdicom, the pixel decoders), so no study pays for it."""
    import highdicom  # noqa: F401
    import pydicom.pixels  # noqa: F401


def in_context(fn, context: Context | None, *args):
    """``fn(context, *args)``: the caller's context (a thread), or this process's (a worker process)."""
    return fn(context if context is not None else _PROCESS_CONTEXT, *args)


def prepare(ctx: Context, ref: StudyRef, settled: bool) -> Prepared:
    """Find the study's chest images and its SRs, then fetch and decode the frontal (or every image of
    unknown view, for the guard to judge). ``settled``: no log row is left to write for this study (the
    log has it, or this run logs nothing), so an SR already there makes the study done. An SR already
    there is one of ours for these weights (any precision) at the operating point asked for."""
    prep = Prepared(ref)
    t = time.perf_counter()
    uid = ref.study_uid
    images, sr_series = candidates(ctx.pacs.series(uid), lambda s: ctx.pacs.series_metadata(uid, s))
    for s in sr_series:
        for meta in ctx.pacs.series_metadata(uid, s):
            if is_ours_for(meta, ctx.version, ctx.points or None):
                prep.sr_exists = True
                prep.sr_uid = str(meta.get("SOPInstanceUID"))
    if prep.sr_exists and settled:
        prep.done = True
        return _timed(prep, t)
    frontal, unknown, prep.laterals = ordered(images)
    if not images:
        prep.skip = "no CR or DX image in the study"
    elif not (frontal or unknown or prep.laterals):
        parts = sorted({c.body_part for c in images if c.body_part})
        prep.skip = f"not a chest study (body part {', '.join(parts)})"
    for cand in [] if prep.skip else [*frontal[:1], *unknown]:
        data = ctx.pacs.retrieve(uid, cand.series_uid, cand.sop_uid)
        d = time.perf_counter()
        try:
            decoded = decode_image(data, filename="image.dcm")
        except ImageDecodeError as exc:
            prep.problems.append(str(exc))
            continue
        finally:
            prep.timings["decode"] += time.perf_counter() - d
        prep.options.append(Option(cand, data, decoded))
        if cand.kind == "frontal":
            break
    return _timed(prep, t)


def _timed(prep: Prepared, t: float) -> Prepared:
    prep.timings["fetch"] += time.perf_counter() - t - prep.timings["decode"]
    return prep


def read_text(dataset) -> tuple[str, str]:
    """(indication, text mode) from the chosen image's header: indication mode when it holds one."""
    try:
        text = clean_text(indication(dataset), max_chars=MAX_TEXT_CHARS)
    except TextError:
        text = ""
    return text, "indication" if text else "none"


def header(data: bytes):
    """The DICOM header of an instance's bytes (no pixels)."""
    import pydicom
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


def write_sr(ctx: Context, dataset, prediction, decisions) -> tuple[str, float, float]:
    """Build the SR of ``prediction`` and its ``decisions`` (core.pacs.sr.sr_decisions) on ``dataset`` and
    store it (one STOW-RS request): (its SOP Instance UID, seconds building, seconds storing). PacsError
    leaves as it is."""
    t = time.perf_counter()
    sr = build_sr(dataset, prediction, decisions)
    built = time.perf_counter()
    ctx.pacs.store(sr)
    return str(sr.SOPInstanceUID), built - t, time.perf_counter() - built


def indication_in(data: bytes) -> str:
    """The cleaned indication in a DICOM file's header ('' for none, or for what is not DICOM): what the
    PACS command reads, so the Predict page can read the same file the same way."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return ""
    try:
        return read_text(header(data))[0]
    except Exception:  # noqa: BLE001 — a header pydicom cannot read: no indication, the decoder words the rest
        return ""
