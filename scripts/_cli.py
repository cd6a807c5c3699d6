"""Shared command-line conventions: exit 0 on success; bad input prints one line on
stderr and exits 2, never a traceback."""
from __future__ import annotations

import argparse
import sys


class CliError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


def fail(message: str) -> None:
    raise CliError(message)


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as a single line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message} (see --help)")


def load_predictor(weights):
    """The Predictor over a weights folder, or one clear line and exit 2."""
    from core.checkpoint import WeightsError
    from core.predictor import Predictor
    try:
        return Predictor.load(weights)
    except WeightsError as exc:
        fail(str(exc))


def run_main(main) -> None:
    try:
        code = main()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.exit(code)
