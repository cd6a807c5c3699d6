"""Training monitor: rendered from a small run log written with core.training.run_log.RunLog."""
import math
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.data.labels import FINDINGS
from core.training.run_log import RunLog

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _write_run(path: Path, *, name: str, finish: bool) -> RunLog:
    log = RunLog(path, name=name, config={"image_size": 64})
    for i in range(3):
        log.step(phase="image", epoch=0, step=i * 10, loss=1.0 - 0.1 * i, lrs={"image": 1e-3 * (i + 1)},
                 samples_per_s=20.0, eta_s=100.0 - i)
    log.epoch(phase="image", epoch=0, val_auc={f: 0.6 for f in FINDINGS} | {"Pneumonia": math.nan},
              val_macro_auc=0.6, train_loss=0.9, seconds=3.0, samples_per_s=20.0)
    log.step(phase="frozen", epoch=0, step=0, loss=1.5, lrs={"heads": 1e-3}, samples_per_s=3000.0, eta_s=1.0)
    per_head = {h: [0.5, 0.6, 0.7, 0.8, math.nan] for h in ("fusion", "image", "text")}
    log.epoch(phase="frozen", epoch=0, val_auc={m: per_head for m in ("report", "indication", "none")},
              val_macro_auc=0.65, train_loss=1.4, seconds=0.1, samples_per_s=3000.0)
    if finish:
        log.finish(best_val_macro_auc=0.65)
    return log


def _monitor(app_env):
    at = AppTest.from_file(APP, default_timeout=60).run()
    return at.switch_page("pages/training_monitor.py").run()


def test_finished_run_renders_curves(app_env):
    _write_run(Path(app_env["CXR_RUNLOG"]), name="first", finish=True)
    at = _monitor(app_env)
    assert not at.exception and not at.error
    assert [m.value for m in at.metric][:2] == ["finished", "frozen"]
    assert len(at.get("plotly_chart")) == 5  # loss, lr, throughput, AUC per finding, compare
    assert not any("Live" in c.value for c in at.caption)


def test_live_run_and_compare(app_env):
    _write_run(Path(app_env["CXR_RUNLOG"]), name="old", finish=True)
    live = _write_run(Path(app_env["CXR_RUNLOG"]), name="live", finish=False)
    assert live.run_id == 2
    at = _monitor(app_env)
    assert at.selectbox(key="monitor_run").value == 2  # newest first
    assert at.metric[0].value == "running"  # this test process holds the run's pid
    assert any("Live" in c.value for c in at.caption)
    at.multiselect(key="monitor_compare").set_value([1, 2]).run()
    assert not at.exception


def test_interrupted_run_is_not_called_live(app_env):
    log = _write_run(Path(app_env["CXR_RUNLOG"]), name="dead", finish=False)
    log.update(pid=2**22 + 12345)  # no such process
    at = _monitor(app_env)
    assert at.metric[0].value.startswith("interrupted")


def test_no_runs_says_how_to_start(app_env):
    at = _monitor(app_env)
    assert any("No training runs" in i.value for i in at.info)


def test_suggests_a_run_folder_never_the_shipped_weights(app_env):
    """Defect 7: the page suggested `train.py --out weights`, which overwrites the shipped model."""
    at = _monitor(app_env)
    codes = [c.value for c in at.code]
    assert any("train.py" in c for c in codes)
    assert not any("--out weights" in c.replace("--out weights/", "") and "runs/" not in c for c in codes)
    assert all("--out weights " not in c + " " for c in codes)


def test_shows_how_the_loaded_model_was_trained(app_env, tiny_weights, monkeypatch, tmp_path):
    """Defect 7: nothing was shown for the shipped model. Without an exported log: the summary
    its metadata keeps; with one (scripts/export_runlog.py): its curves."""
    import json
    import shutil
    import subprocess
    import sys

    weights = tmp_path / "w"
    shutil.copytree(tiny_weights, weights)
    monkeypatch.setenv("CXR_WEIGHTS", str(weights))
    at = _monitor(app_env)
    assert not at.exception
    assert any(h.value == "The loaded model" for h in at.subheader)
    assert any("not exported" in c.value for c in at.caption)
    runlog = tmp_path / "train.db"
    _write_run(runlog, name="shipped", finish=True)
    root = Path(APP).parent
    out = subprocess.run([sys.executable, "scripts/export_runlog.py", "--runlog", str(runlog), "--run", "1",
                          "--out", str(weights / "training_log.json")], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((weights / "training_log.json").read_text())["run"]["name"] == "shipped"
    at = _monitor(app_env)
    assert not at.exception
    assert any("exported with the weights" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 2


def test_logged_runs_are_set_apart_from_the_loaded_model(app_env):
    """A run in the run log (here an unrelated 4-step one) is shown under its own heading, said
    not to be the loaded model, and its tiles say they are that run's."""
    _write_run(Path(app_env["CXR_RUNLOG"]), name="smoke", finish=True)
    at = _monitor(app_env)
    assert not at.exception
    assert [h.value for h in at.subheader][:2] == ["The loaded model", "Training runs on this machine"]
    assert any("not the loaded model" in c.value for c in at.caption)
    assert any(m.label == "Best val macro AUC (this run)" for m in at.metric)
