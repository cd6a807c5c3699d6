"""Default paths that core computes from its own location still point into the repository
after core/ was regrouped into packages (a run log had appeared under core/runs/)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_default_files_live_at_the_repository_root():
    from core.serving import sharing
    from core.store import connection
    from core.training import run_log
    assert run_log.DEFAULT_RUNLOG == REPO / "runs" / "runs.db"
    assert connection.REPO == REPO and sharing.REPO == REPO
