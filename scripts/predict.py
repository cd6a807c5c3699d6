"""Predict the five findings for one chest X-ray (or a CSV batch) from the command line.

    python scripts/predict.py --image cxr.png --text "Shortness of breath"        # indication (the default)
    python scripts/predict.py --image cxr.png --text "Heart is enlarged." --text-mode report --json
    python scripts/predict.py --image cxr.png                                     # image only
    python scripts/predict.py --weights weights --batch studies.csv --out predictions.csv
    torchrun --nproc_per_node 4 scripts/predict.py --weights weights --batch studies.csv --out predictions.csv

``--batch`` with ``--out`` (and no ``--json``) is sharded and resumable (core.serving.sharded_batch): each
process predicts its share of the rows into ``OUT.parts/``, rank 0 merges them into OUT in
input order; after a kill, the same command (on any number of processes) skips the rows
already done. Files are checked to exist up front; an undecodable image stops the run with
one line (exit 2) and keeps the parts for a rerun once it is fixed.

Text given without ``--text-mode`` is read as the clinical *indication*, as in the app and
the web batch; no text means image only; text with ``--text-mode none`` is refused. The mode
is named in every output. A batch CSV has the same columns as the web batch: ``image`` (path,
relative to the CSV's folder or absolute; ``file`` is accepted too), optional ``text``,
``text_mode`` (``mode`` accepted) and ``id`` (your own study ID, copied to the output).
``--json`` prints one object per study: fusion, image, text (finding -> the model's probability
per head; text null when no text was read), ``probability`` (finding -> the calibrated number a reader
is shown, null where the finding is not assessed or not calibrated), ``decision`` (finding -> flagged,
not flagged or not assessed; core.serving.decision), ``operating_point`` (assessed finding -> its
sensitivity, specificity, CIs, PPV and where they were measured), ``operating_point_name``,
``not_assessed`` (finding -> why), thresholds, discordant, out_of_distribution, model, evidence (the
cross-validated AUC first). ``--operating-point`` picks another point than each mode's default
("specificity 0.95", "sensitivity 0.80", ...); every output names the one used.
Single-image and ``--json`` batch predictions are logged to the prediction log
(``$CXR_DB_PATH``, source ``cli``) like the app's, unless ``--no-log``; the sharded form
writes its CSV only. Bad input (missing file, undecodable image, unknown option) prints one
line on stderr and exits 2.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from core.serving.cli_output import batch_header, batch_row, result_json
from scripts._cli import Parser, fail, load_predictor, run_main


def parse_args(argv=None):
    from core.data.labels import TEXT_MODES
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "weights"),
                   help="the weights folder (default: the shipped weights/)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="PNG, JPEG or DICOM file")
    src.add_argument("--batch", help="CSV with columns image[,text,text_mode,id]")
    p.add_argument("--text", default="", help="the indication (default) or, with --text-mode report, the report")
    p.add_argument("--text-mode", choices=list(TEXT_MODES), default=None,
                   help="how the text is read (default: indication when there is text, else none)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                   help="JSON, one object per study, instead of a table: on stdout, or into OUT as with "
                        "evaluate.py and bench.py")
    p.add_argument("--out", help="batch: write a CSV of fused probabilities here (sharded, resumable)")
    p.add_argument("--operating-point", default=None, metavar="NAME",
                   help="decide flags at this operating point: specificity 0.80/0.90/0.95/0.98 or sensitivity "
                        "0.80/0.90 (default: each mode's own, specificity 0.90, with the report 0.98)")
    p.add_argument("--no-log", action="store_true", help="do not log the predictions to $CXR_DB_PATH")
    return p.parse_args(argv)


def study_mode(text: str, mode: str | None, where: str = "") -> str:
    """The mode the study is read in (core.data.labels.resolve_mode), or one line and exit 2."""
    from core.data.labels import resolve_mode
    from core.errors import OptionError
    try:
        return resolve_mode(text, mode)
    except OptionError as exc:
        fail(f"{where}{exc}")


def batch_study(row: dict, line: str, default_mode: str | None):
    """A batch CSV row read by the web batch's own function (core.serving.batch_csv.read_row: the
    mode lower-cased, ``Report`` is ``report``), or one line and exit 2."""
    from core.data.text_clean import TextError
    from core.errors import CxrError
    from core.serving.batch_csv import read_row
    try:
        return read_row(row, default_mode=default_mode)
    except TextError as exc:
        fail(str(exc))
    except CxrError as exc:  # the mode (core.data.labels.resolve_mode)
        fail(f"{line}{exc}")


def clean_text(text: str) -> str:
    """Drop control characters (NUL and friends) and refuse very long text."""
    from core.data.text_clean import MAX_TEXT_CHARS, TextError
    from core.data.text_clean import clean_text as clean
    try:
        return clean(text, max_chars=MAX_TEXT_CHARS)
    except TextError as exc:
        fail(str(exc))


def read_image(path: Path):
    from core.data.images import ImageDecodeError, decode_image
    if not path.is_file():
        fail(f"image {path} not found")
    try:
        return decode_image(path.read_bytes(), filename=path.name)
    except ImageDecodeError as exc:
        fail(f"{path.name}: {exc}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.operating_point is not None:
        from core.evaluation.operating_targets import parse_target
        args.operating_point = parse_target(args.operating_point)  # a bad name: one line, exit 2

    if args.image:
        path = Path(args.image)
        img = read_image(path)
        text = clean_text(args.text)
        mode = study_mode(text, args.text_mode)
        predictor = load_predictor(args.weights)  # after the inputs are checked: bad input is refused at once
        done = predict_and_log_cli(predictor, [(path, img, text, mode)], log=not args.no_log,
                                   target=args.operating_point)[0]
        pred = done.prediction
        if args.json:
            emit_json(args.json, [result_json(pred)])
        else:
            print_table(predictor, pred, done)
        return 0
    batch = Path(args.batch)
    if not batch.is_file():
        fail(f"batch file {batch} not found")
    from core.serving.batch_csv import has_image_column, header
    with batch.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        reader.fieldnames = header(reader.fieldnames)  # the web batch's header: names case-insensitive
        rows = list(reader)
    if not rows or not has_image_column(reader.fieldnames):
        fail(f"{batch.name} needs a header with an 'image' column (image,text,text_mode,id)")
    if args.out and not args.json:
        return predict_sharded(args, batch, rows)
    studies, read = [], []
    for i, row in enumerate(rows):  # validate everything before predicting anything
        study = batch_study(row, f"{batch.name} line {i + 2}: ", args.text_mode)
        path = Path(study.image)
        path = path if path.is_absolute() else batch.parent / path
        studies.append((path, read_image(path), study.text, study.mode))
        read.append(study)
    rows = read
    predictor = load_predictor(args.weights)
    results = []
    for s in range(0, len(studies), 16):
        results += predict_and_log_cli(predictor, studies[s:s + 16], log=not args.no_log,
                                       target=args.operating_point)
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(batch_header(predictor))
            for row, done in zip(rows, results, strict=True):
                w.writerow(batch_row(row, done.prediction, predictor.findings))
    if args.json or not args.out:
        emit_json(args.json or "-", [dict(result_json(done.prediction), image=row.image,
                                          **({"id": row.id} if row.id else {}))
                                     for row, done in zip(rows, results, strict=True)])
    return 0


def emit_json(target: str, objects: list[dict]) -> None:
    """One JSON object per line, on stdout (``-``) or into a file."""
    lines = "".join(json.dumps(o) + "\n" for o in objects)
    if target == "-":
        sys.stdout.write(lines)
    else:
        Path(target).write_text(lines)


def predict_and_log_cli(predictor, studies, *, log: bool, target: str | None = None):
    """(path, decoded image, text, mode) studies through core.serving.predict_and_log, logged
    with source ``cli`` (the file's own name: the user chose it on their own machine). A log
    that refuses the rows does not stop the predictions: one warning line on stderr."""
    from core.serving.predict_and_log import Study, predict_and_log_many
    from core.store import PredictionStore, StoreError
    store = None
    if log:
        try:
            store = PredictionStore()
        except StoreError as exc:
            print(f"warning: predictions not logged ({exc})", file=sys.stderr)
    done = predict_and_log_many(predictor, store, [
        Study(gray=img.gray, image_bytes=path.read_bytes(), image_name=path.name, text=text, mode=mode,
              colorfulness=img.colorfulness) for path, img, text, mode in studies], source="cli", keep_names=True,
        target=target)
    if done and done[0].log_error is not None:
        print(f"warning: predictions not logged ({done[0].log_error})", file=sys.stderr)
    return done


def print_table(predictor, pred, done) -> None:
    from core.serving.cli_output import plain_lines
    print("\n".join(plain_lines(predictor.description, pred, done.row_id)))


def predict_sharded(args, batch: Path, rows: list[dict]) -> int:
    """This process's share of the rows into OUT.parts/, then (rank 0) the merge into OUT."""
    import os

    from core.serving.sharded_batch import (
        PartsError,
        PartWriter,
        batch_fingerprint,
        done_rows,
        merge,
        my_blocks,
        open_parts,
    )
    read = []
    for i, row in enumerate(rows):  # cheap checks of every row before any work
        study = batch_study(row, f"{batch.name} line {i + 2}: ", args.text_mode)
        path = Path(study.image)
        if not (path if path.is_absolute() else batch.parent / path).is_file():
            fail(f"{batch.name} line {i + 2}: image {study.image!r} not found")
        read.append(study)
    rows = read
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo")  # only for the barrier before the merge
    predictor = load_predictor(args.weights)
    out = Path(args.out)
    try:
        parts = open_parts(out, batch_fingerprint(batch, predictor.version))
    except PartsError as exc:
        fail(str(exc))
    todo = my_blocks(len(rows), set(done_rows(parts)), rank, world)
    if world > 1:
        dist.barrier()  # every rank has read what is done before any rank writes more
    writer = PartWriter(parts, rank)
    for chunk in todo:
        images, texts, modes = [], [], []
        for r in chunk:
            path = Path(rows[r].image)
            images.append(read_image(path if path.is_absolute() else batch.parent / path))
            texts.append(rows[r].text)
            modes.append(rows[r].mode)
        preds = predictor.predict_batch([im.gray for im in images], texts, modes,
                                        colorfulness=[im.colorfulness for im in images], target=args.operating_point)
        writer.write([(r, batch_row(rows[r], p, predictor.findings)) for r, p in zip(chunk, preds, strict=True)])
    writer.close()
    if world > 1:
        dist.barrier()
    if rank == 0:
        try:
            n = merge(out, batch_header(predictor), len(rows))
        except PartsError as exc:
            fail(str(exc))
        print(f"wrote {out}: {n} studies ({sum(map(len, todo))} predicted by rank 0 in this run, "
              f"{world} process(es))")
    if world > 1:
        dist.barrier()  # the others exit after the merge
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_main(main)
