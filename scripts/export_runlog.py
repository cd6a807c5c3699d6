"""Export one training run's log next to its weights, so the training monitor can show how
the shipped model was trained.

    python scripts/export_runlog.py --runlog runs/runs.db --run 3 --out weights/training_log.json
"""
from __future__ import annotations

import json
from pathlib import Path

from scripts._cli import Parser, fail, run_main


def main(argv=None) -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--runlog", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-steps", type=int, default=400)
    args = p.parse_args(argv)
    if not Path(args.runlog).is_file():
        fail(f"no run log at {args.runlog}")
    from core.training.run_log_export import export_run
    try:
        data = export_run(Path(args.runlog), args.run, max_steps=args.max_steps)
    except ValueError as exc:
        fail(str(exc))
    Path(args.out).write_text(json.dumps(data, default=str) + "\n")
    print(f"wrote {args.out}: {len(data['epochs'])} epochs, {len(data['steps'])} of {data['steps_logged']} steps")
    return 0


if __name__ == "__main__":
    run_main(main)
