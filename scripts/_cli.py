"""Shared command-line conventions: exit 0 on success; bad input, or any other error of the
tool's family (``core.errors.CxrError``: missing or damaged weights, a missing text-backbone
package, a locked prediction log...), prints one line on stderr and exits 2, never a traceback."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.errors import CxrError


class CliError(CxrError):
    """Bad input from the user: reported as one line, exit status 2."""


def fail(message: str) -> None:
    raise CliError(message)


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as a single line, and shows every option's default
    in --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message} (see --help)")

    def add_weights_and_data(self, *, dataset: bool = True) -> None:
        """--weights (default: the shipped weights/) and --data (default: $IU_XRAY_DIR, else
        ../shared/iu-xray next to the repository)."""
        root = Path(__file__).resolve().parents[1]
        self.add_argument("--weights", default=str(root / "weights"), help="the weights folder")
        self.add_argument("--data", default=os.environ.get("IU_XRAY_DIR", str(root.parent / "shared" / "iu-xray")),
                          help="the data folder (default: $IU_XRAY_DIR, else ../shared/iu-xray)")
        if dataset:
            self.add_dataset()

    def add_dataset(self) -> None:
        """--dataset: the layout of --data (core.data.sources); default the one the weights were trained on."""
        from core.data.sources import DATASETS
        self.add_argument("--dataset", choices=list(DATASETS), default=None,
                          help="layout of --data (default: the dataset the weights were trained on)")


def read_weights_description(weights: Path):
    """The typed description of a weights folder (torch-free), or one line and exit 2."""
    from core.model.description import WeightsError, read_description
    try:
        return read_description(Path(weights))
    except WeightsError as exc:
        fail(str(exc))


def load_predictor(weights):
    """The Predictor over a weights folder; what stops it loading (WeightsError, BackboneUnavailable)
    is a CxrError, which ``run_main`` reports as one line and exit 2. Loaded with the cyclic collector
    paused and its ~550,000 objects frozen afterwards (core.serving.gc_pause), so the full collections a
    long run triggers skip them: on a PACS run the SR building (many small objects) took 30% longer without."""
    from core.serving.gc_pause import collector_paused
    from core.serving.predictor import Predictor
    with collector_paused(freeze=True):
        return Predictor.load(weights)


def one_line(exc: BaseException) -> str:
    """The error's message on one line (a message never spans lines on a terminal or in a log)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def run_main(main) -> None:
    try:
        code = main()
    except CxrError as exc:  # CliError and every error the tool reports: one line, exit 2
        print(f"error: {one_line(exc)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.exit(code)


def pct(values, q: float) -> float:
    """The q-th percentile by nearest rank (the benchmarks' p50 / p95: a value that was measured)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]
