"""The project is a package people can install (pyproject.toml): built and installed into a fresh virtual
environment (not editable, from a copy of the tree), its console command runs from another folder and
imports the installed code, not the checkout's."""
from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("pkg")
    # a copy of what git tracks, so the build never writes into the checkout (build/, *.egg-info)
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    files = listed.stdout.split() if listed.returncode == 0 else [  # a copy of the tree without .git
        str(p.relative_to(ROOT)) for d in ("core", "ui", "scripts") for p in (ROOT / d).rglob("*.py")
        if "__pycache__" not in p.parts] + ["pyproject.toml", "README.md"]
    src = base / "src"
    for name in files:
        if name.startswith(("core/", "ui/", "scripts/")) or name in ("pyproject.toml", "README.md"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    env_dir = base / "venv"
    # the heavy dependencies (torch, transformers, ...) come from this interpreter's site-packages
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-build-isolation", str(src)], check=True, capture_output=True, timeout=600)
    return env_dir


def test_console_command_runs_from_the_installed_package(installed, tmp_path):
    done = subprocess.run([str(installed / "bin" / "cxr"), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "predict" in done.stdout and "pacs" in done.stdout


def test_installed_predict_reads_the_shipped_weights(installed, tmp_path):
    from PIL import Image
    image = tmp_path / "cxr.png"
    # a smooth greyscale frame: the command must run end to end (the guard may call it not a chest film)
    Image.linear_gradient("L").resize((256, 256)).save(image)
    done = subprocess.run([str(installed / "bin" / "cxr-predict"), "--weights", str(ROOT / "weights"),
                           "--image", str(image), "--json", "--no-log"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"decision"' in done.stdout
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import core; print(core.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(installed) in where, where  # the installed copy, not the checkout
