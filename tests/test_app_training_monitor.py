"""Training monitor: rendered from a small run log written with core.runlog.RunLog."""
import math
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.labels import FINDINGS
from core.runlog import RunLog

APP = str(Path(__file__).resolve().parents[1] / "app.py")


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
