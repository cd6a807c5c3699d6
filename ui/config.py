"""Where the app finds its files (environment first) and the commands it tells users to run."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_UPLOAD_MB = 50  # same as server.maxUploadSize in .streamlit/config.toml, checked again in code
# a run folder, never weights/: training straight into weights/ would overwrite the shipped model
TRAIN_COMMAND = ("python scripts/train.py --data ../shared/iu-xray --out runs/my-run/weights "
                 "--run-dir runs/my-run")
TRY_COMMAND = "CXR_WEIGHTS=runs/my-run/weights streamlit run app.py"
EVAL_COMMAND = ("python scripts/evaluate.py --weights weights --data ../shared/iu-xray --split test "
                "--text-mode report --head fusion --json weights/eval/test_report_fusion.json "
                "--predictions weights/eval/test_report_fusion.csv")
SHARE_COMMAND = "python scripts/share.py --auth user:long-password"


def weights_dir() -> Path:
    """$CXR_WEIGHTS, else <repo>/weights."""
    env = os.environ.get("CXR_WEIGHTS")
    return Path(env).expanduser() if env else REPO / "weights"


def weights_stamp(folder: Path) -> float | None:
    """Modification time of the weights file: a new file means a new cache entry."""
    try:
        return (Path(folder) / "model.safetensors").stat().st_mtime
    except OSError:
        return None
