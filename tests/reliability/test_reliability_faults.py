"""Faults, end to end: kill -9 while weights are written, kill -9 while predictions are logged
through the app's logging path, and a read-only, full or unusable prediction log under the
Predict page.

tests/store/test_store.py already kills one writer once at store level; here writers log the way the
pages do (core.serving.predict_and_log.log_entry: review thumbnail, hashes, three heads), two at a time, and
are killed at random moments, round after round.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.labels import FINDINGS
from core.store import LogFile, PredictionStore, hashed_name
from tests.reliability.test_reliability_inputs import (
    app_errors,
    app_predict,
    chest_like,
    db_healthy,
    new_app,
    pil_bytes,
)

REPO = Path(__file__).resolve().parents[2]


class LineReader:
    """Collect a child's stdout lines on a thread, so waiting on them never blocks the test."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def drain(self) -> list[str]:
        """Every line the child wrote (call after it exited: the pipe then closes)."""
        self._thread.join(timeout=30)
        return self.lines

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"writer exited ({self.proc.returncode}) before {what}: "
                                     f"{self.proc.stderr.read()[-2000:]}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL a child that is still running (one that already died keeps its own exit status)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL


# ====================================================================== weights

WEIGHTS_WRITER = r"""
import sys
sys.path.insert(0, {repo!r})
import torch
torch.set_num_threads(1)
from core.model.checkpoint import save_weights
from core.model.fusion import ModelConfig, build_model
torch.manual_seed(0)
model, _ = build_model(ModelConfig(num_aux=3))          # DenseNet-121 + MiniLM: a ~37 MB file
marker = dict(model.named_parameters())[{marker!r}]
version = {start}
print("ready", flush=True)
while True:
    with torch.no_grad():
        marker.fill_(float(version))                   # the tensors say which version they belong to
    save_weights(model, {{"version": str(version), "preprocessing": {{"image_size": 64, "mean": 0.5, "std": 0.25}}}},
                 {out!r})
    print("saved", version, flush=True)
    version += 1
"""


MARKER = "image_head.bias"  # a float32 head parameter (stored at full precision): stamps each version


def _new_tmp(out: Path, before: set) -> list[Path]:
    found = []
    for p in set(out.glob(".model.safetensors.*.tmp")) - before:
        try:
            if p.stat().st_size > 0:
                found.append(p)
        except FileNotFoundError:  # replaced between glob and stat
            pass
    return found


def _stop_mid_write(proc, reader, out: Path, before: set, rng: random.Random) -> None:
    """Freeze the writer (SIGSTOP) while a new temporary weights file holds bytes and has not been
    renamed yet, so the SIGKILL that follows provably lands in the middle of a save."""
    deadline = time.monotonic() + 120
    while True:
        reader.wait_for(lambda _: _new_tmp(out, before), max(1.0, deadline - time.monotonic()), "a save to start")
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(proc.pid, signal.SIGSTOP)
        if _new_tmp(out, before):
            return
        os.kill(proc.pid, signal.SIGCONT)  # that save finished meanwhile: catch the next one


def _kill_rounds(out: Path, modes: list[str]) -> list[dict]:
    from core.model.checkpoint import load_weights

    marker = MARKER
    rng = random.Random(1234)
    start, on_disk, report = 0, None, []
    for r, mode in enumerate(modes):
        script = WEIGHTS_WRITER.format(repo=str(REPO), marker=marker, start=start, out=str(out))
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        reader = LineReader(proc)
        try:
            reader.wait_for(lambda lines: "ready" in lines, 300, "the model was built")
            if r == 0:  # a first complete model must exist before anything is killed
                reader.wait_for(lambda lines: any(x.startswith("saved") for x in lines), 300, "a first save")
            tmp_before = set(out.glob(".model.safetensors.*.tmp"))
            if mode == "mid-write":
                _stop_mid_write(proc, reader, out, tmp_before, rng)
            else:  # any moment: building tensors, writing, fsync, replace, the JSON copy, between saves
                time.sleep(rng.uniform(0.0, 2.5))
        finally:
            kill9(proc)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]  # it was alive, and killed
        saved = [int(x.split()[1]) for x in reader.drain() if x.startswith("saved")]
        last_done = saved[-1] if saved else on_disk         # the newest version known to be complete
        in_flight = saved[-1] + 1 if saved else start         # replaced just before the kill, unreported
        model, _, meta, _ = load_weights(out)  # must succeed after every kill
        version = int(meta["version"])
        stamp = dict(model.named_parameters())[marker]
        left = len(set(out.glob(".model.safetensors.*.tmp")) - tmp_before)
        report.append({"round": r, "mode": mode, "loaded": version, "last_reported": last_done,
                       "orphan_tmp": left, "start": start, "saved": saved[-3:]})
        # the file holds a version that was completely written: the last one reported, or the one
        # in flight if its os.replace happened just before the kill; tensors and metadata agree
        assert version in (last_done, in_flight), str(report)
        assert bool((stamp == float(version)).all()), str(report)
        if mode == "mid-write":  # killed with the new file half-written: the previous model is what loads
            assert version == last_done and left == 1, str(report)
        on_disk, start = version, in_flight + 1  # the next writer's versions are new numbers
    return report


def test_sigkill_while_writing_weights_keeps_the_previous_model(tmp_path):
    report = _kill_rounds(tmp_path / "weights", ["mid-write", "mid-write", "random"])
    print("weights kill rounds:", report)


@pytest.mark.slow
def test_sigkill_while_writing_weights_many_rounds(tmp_path):
    report = _kill_rounds(tmp_path / "weights", ["mid-write", "random"] * 6)
    print("weights kill rounds:", report)


# ====================================================================== the prediction log

DB_WRITER = r"""
import sys
sys.path.insert(0, {repo!r})
from core.data.labels import FINDINGS
from core.store import PredictionStore
from tests.reliability.test_reliability_faults import row_image, row_text, row_probs
from core.serving.predict_and_log import log_entry
from core.serving.prediction import Prediction
store = PredictionStore({db!r})
print("ready", flush=True)
i = 0
while True:
    p = row_probs(i)
    thr = {{f: 0.5 for f in FINDINGS}}
    pred = Prediction(model="kill-test", has_text=True, text_mode="report", fusion=p, image=p, text=p,
                      thresholds=thr, head_thresholds={{h: thr for h in ("fusion", "image", "text")}},
                      discordant=list(FINDINGS[: i % 6]), out_of_distribution=False, ood_score=0.25, ood_reason="")
    gray, data = row_image({tag!r}, i)
    store.log_prediction(log_entry(pred, gray=gray, image_bytes=data, image_name=f"{tag}-{{i}}.png",
                                   text=row_text({tag!r}, i), source="predict"))
    print("logged", i, flush=True)
    i += 1
"""


def row_text(tag: str, i: int) -> str:
    return f"{tag} row {i}: " + "Heart size is normal. Lungs are clear. " * (20 + i % 50)


def row_probs(i: int) -> dict:
    return {f: round(((i * 7 + k) % 100) / 100, 2) for k, f in enumerate(FINDINGS)}


def row_image(tag: str, i: int) -> tuple[np.ndarray, bytes]:
    gray = chest_like(300 + i % 5, 280, seed=i + 1000 * len(tag))
    return gray, pil_bytes(Image.fromarray(gray))


def _check_whole_rows(db: Path, tags: list[str]) -> int:
    store = PredictionStore(db)  # reopens and recovers the WAL
    assert db_healthy(db)
    rows = store.list_predictions(limit=None)
    by_tag: dict[str, list[int]] = {}
    for row in rows:
        tag, i = row["image_name"].removesuffix(".png").rsplit("-", 1)
        i = int(i)
        by_tag.setdefault(tag, []).append(i)
        text = row_text(tag, i)
        assert row["text"] == text and row["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert row["fusion"] == row_probs(i) == row["text_probs"] == row["image"]
        assert row["n_discordant"] == len(row["discordant"]) == i % 6
        png = store.get(row["id"])["image_png"]
        assert row["image_sha256"] == hashlib.sha256(row_image(tag, i)[1]).hexdigest()
        assert Image.open(io.BytesIO(png)).size[0] <= 256
    for tag in tags:  # each writer's rows are a gap-free prefix of what it attempted
        seen = sorted(by_tag.get(tag, []))
        assert seen == list(range(len(seen))), (tag, seen[-5:])
    return len(rows)


@pytest.mark.parametrize("rounds", [pytest.param(3, id="3-rounds"),
                                    pytest.param(15, id="15-rounds", marks=pytest.mark.slow)])
def test_sigkill_while_logging_leaves_only_whole_rows(tmp_path, rounds):
    db = tmp_path / "predictions.db"
    PredictionStore(db)
    rng = random.Random(99)
    tags, total = [], 0
    for r in range(rounds):
        procs = []
        for w in range(2):  # two writers at once: the lock is contended when the kill lands
            tag = f"r{r}w{w}"
            tags.append(tag)
            script = DB_WRITER.format(repo=str(REPO), db=str(db), tag=tag)
            proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            procs.append((proc, LineReader(proc)))
        try:
            for _proc, reader in procs:
                reader.wait_for(lambda lines: sum(x.startswith("logged") for x in lines) >= 3, 120, "3 rows")
            time.sleep(rng.uniform(0.0, 0.6))
        finally:
            for proc, _ in procs:
                kill9(proc)
                time.sleep(rng.uniform(0.0, 0.05))
        for proc, _ in procs:  # each writer was alive, and killed
            assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
        count = _check_whole_rows(db, tags)
        assert count >= total + 6  # every round added rows, and lost none of the earlier ones
        total = count
    print(f"prediction log: {rounds} rounds x 2 writers killed, {total} whole rows, integrity ok")


# ====================================================================== a failing log under the page

def _png(seed: int) -> bytes:
    return pil_bytes(Image.fromarray(chest_like(320, 288, seed=seed)))


def _read_only_open(self):
    """How SQLite opens a file it may not write (root ignores chmod, so open it read-only)."""
    return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10, isolation_level=None)


def _full_disk_open(real_open):
    def full_open(self):  # the file may not grow by one page: a full disk as SQLite sees it
        conn = real_open(self)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn
    return full_open


def _not_logged(at, words: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    errors = app_errors(at)
    assert len(errors) == 1 and "\n" not in errors[0] and "not logged" in errors[0] and words in errors[0], errors
    result = at.session_state["predict_result"]  # the prediction is still shown
    assert result["pid"] is None
    assert any("not logged" in c.value for c in at.caption)


def test_predict_page_keeps_working_when_the_log_is_read_only_or_full(app_env, tiny_weights, monkeypatch):
    db = Path(app_env["CXR_DB_PATH"])
    at = new_app(app_env, tiny_weights, monkeypatch)
    app_predict(at, "first.png", _png(1), "Heart is enlarged.")
    assert not at.exception and not app_errors(at)
    store = PredictionStore(db)
    first = store.get(at.session_state["predict_result"]["pid"])

    real_open = LogFile._open
    monkeypatch.setattr(LogFile, "_open", _read_only_open)
    app_predict(at, "second.png", _png(2), "Cough.", kind="indication")
    _not_logged(at, "read-only")
    at.run()  # a rerun draws the same result again: no crash loop, no exception
    assert not at.exception and at.session_state["predict_result"]["pid"] is None

    monkeypatch.setattr(LogFile, "_open", _full_disk_open(real_open))
    app_predict(at, "third.png", _png(3), "Heart size normal. " * 3000)
    _not_logged(at, "full")

    at.session_state["batch_tab"] = "History and review"  # tabs are lazy

    at.switch_page("pages/batch_review.py").run()  # history still reads while writes fail
    assert not at.exception and not app_errors(at)
    assert any("1 entries match" in c.value for c in at.caption)

    monkeypatch.setattr(LogFile, "_open", real_open)  # space freed / permissions fixed
    at.switch_page("pages/predict.py").run()
    app_predict(at, "fourth.png", _png(4), "Lungs are clear.")
    assert not at.exception and not app_errors(at)
    rows = PredictionStore(db).list_predictions(limit=None)
    # nothing lost, no half rows
    assert [r["image_name"] for r in rows] == [hashed_name("fourth.png", _png(4)), hashed_name("first.png", _png(1))]
    assert PredictionStore(db).get(first["id"]) == first
    assert db_healthy(db)


def test_unusable_log_path_is_one_line_and_the_app_recovers(app_env, tiny_weights, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    monkeypatch.setenv("CXR_DB_PATH", str(blocker / "predictions.db"))
    at = new_app(app_env, tiny_weights, monkeypatch)
    app_predict(at, "a.png", _png(5), "Cough.")
    _not_logged(at, "folder")
    at.session_state["batch_tab"] = "History and review"  # tabs are lazy
    at.switch_page("pages/batch_review.py").run()
    assert not at.exception
    errors = app_errors(at)
    assert len(errors) == 1 and "\n" not in errors[0] and "folder" in errors[0]

    good = tmp_path / "fixed" / "predictions.db"
    monkeypatch.setenv("CXR_DB_PATH", str(good))
    at.switch_page("pages/predict.py").run()
    app_predict(at, "b.png", _png(6), "Cough.")
    assert not at.exception and not app_errors(at)
    assert PredictionStore(good).count() == 1 and db_healthy(good)


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_real_full_disk_through_the_page(app_env, tiny_weights, monkeypatch, tmp_path):
    """A real full file system (a 1 MiB tmpfs), where the machine lets the test mount one."""
    mnt = tmp_path / "small-disk"
    if not _mount_tmpfs(mnt, "1m"):
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN); "
                    "the simulated full disk above still runs")
    try:
        db = mnt / "predictions.db"
        monkeypatch.setenv("CXR_DB_PATH", str(db))
        at = new_app(app_env, tiny_weights, monkeypatch)
        app_predict(at, "first.png", _png(7), "Heart is enlarged.")
        assert not at.exception and not app_errors(at)
        first = PredictionStore(db).get(at.session_state["predict_result"]["pid"])
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last byte
            try:
                while True:
                    fh.write(b"\1" * 4096)
            except OSError:
                pass
        app_predict(at, "second.png", _png(8), "Big report. " * 5000)
        _not_logged(at, "full")
        filler.unlink()
        app_predict(at, "third.png", _png(9), "Lungs are clear.")
        assert not at.exception and not app_errors(at)
        store = PredictionStore(db)
        names = [r["image_name"] for r in store.list_predictions(limit=None)]
        assert names == [hashed_name("third.png", _png(9)), hashed_name("first.png", _png(7))]
        assert store.get(first["id"]) == first and db_healthy(db)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
