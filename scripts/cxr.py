"""The installed commands: ``cxr <command> [options]`` runs ``scripts/<command>.py`` with the same options
and the same exit codes (``cxr predict --image cxr.png`` is ``python scripts/predict.py --image cxr.png``);
``cxr-predict``, ``cxr-pacs``, ... are the same commands on their own (pyproject.toml)."""
from __future__ import annotations

import importlib
import sys

from scripts._cli import run_main

COMMANDS = {
    "predict": "predict one study or a CSV batch",
    "pacs": "read studies from a PACS over DICOMweb, send back DICOM SRs",
    "validate-site": "measure the model on your own labelled studies",
    "train": "train the fusion model",
    "cv": "cross-validate the training recipe",
    "evaluate": "evaluate weights on a split",
    "choose-operating-points": "choose each finding's operating point",
    "recalibrate": "refit the calibration maps",
    "report-qa": "report QA: findings the report and the image disagree on",
    "share": "share the app over an ngrok tunnel",
    "download-iu-xray": "download the IU X-ray collection",
    "export-runlog": "export the training run log",
}


def _run(command: str, argv: list[str]) -> None:
    module = importlib.import_module("scripts." + command.replace("-", "_"))
    sys.argv = [f"cxr {command}", *argv]  # argparse names the command in usage and errors
    run_main(module.main)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
        print("usage: cxr <command> [options]   (cxr <command> --help for its options)\n\ncommands:\n"
              + "\n".join(lines), file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: cxr: unknown command {argv[0]!r}", file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    _run(argv[0], argv[1:])


def _command(name: str):
    def entry() -> None:
        _run(name, sys.argv[1:])
    entry.__name__ = name.replace("-", "_")
    return entry


predict = _command("predict")
pacs = _command("pacs")
train = _command("train")
cv = _command("cv")
evaluate = _command("evaluate")
validate_site = _command("validate-site")
share = _command("share")
download_iu_xray = _command("download-iu-xray")
