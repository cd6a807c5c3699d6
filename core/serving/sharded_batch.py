"""Sharded, resumable batch prediction files (``scripts/predict.py --batch CSV --out OUT``,
alone or under ``torchrun --nproc_per_node N``).

    OUT.parts/batch.json            what the parts belong to: SHA-256 of the batch CSV, model version
    OUT.parts/part-r<rank>-<pid>.csv  rows predicted by one process: ``row,<output columns>,crc``

Rows go in fixed blocks of 16, dealt round-robin over the ranks of *this* run, after leaving
out every block that earlier parts already hold complete, so a run killed at any point
(``kill -9``) resumes on any number of processes and redoes only the unfinished blocks. Each line ends with a CRC-32 of
the rest, and a process appends whole chunks then fsyncs: a line torn by a kill fails its
check and is predicted again. Rank 0 merges after all ranks finish: every input row exactly
once, in input order, written atomically to OUT; then the parts are removed.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zlib
from pathlib import Path

from core.errors import CxrError


class PartsError(CxrError, ValueError):
    """The parts folder belongs to another batch, or the merge is missing rows."""


def parts_dir(out: Path) -> Path:
    return Path(str(out) + ".parts")


def batch_fingerprint(batch_csv: Path, model_version: str) -> dict:
    return {"batch_sha256": hashlib.sha256(Path(batch_csv).read_bytes()).hexdigest(), "model": model_version}


def open_parts(out: Path, fingerprint: dict) -> Path:
    """Create (or check) OUT.parts for this batch and model."""
    d = parts_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    marker = d / "batch.json"
    if marker.is_file():
        if json.loads(marker.read_text()) != fingerprint:
            raise PartsError(f"{d} holds parts of another batch or model; delete it to start over")
    else:
        tmp = marker.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(fingerprint))
        os.replace(tmp, marker)
    return d


def encode_line(row: int, fields: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([row, *fields])
    payload = buf.getvalue()
    return f"{payload},{zlib.crc32(payload.encode()):08x}\n"


def decode_line(line: str) -> tuple[int, list[str]] | None:
    """(row, fields) of a complete, intact line; None for a torn or altered one."""
    if not line.endswith("\n"):
        return None
    payload, sep, crc = line[:-1].rpartition(",")
    if not sep or len(crc) != 8 or f"{zlib.crc32(payload.encode()):08x}" != crc:
        return None
    fields = next(csv.reader([payload]))
    return int(fields[0]), fields[1:]


def done_rows(d: Path) -> dict[int, list[str]]:
    """Every row some part holds complete (the first copy when a row appears twice)."""
    done: dict[int, list[str]] = {}
    for part in sorted(Path(d).glob("part-*.csv")):
        with part.open(newline="", encoding="utf-8") as fh:
            for line in fh:
                parsed = decode_line(line)
                if parsed is not None:
                    done.setdefault(parsed[0], parsed[1])
    return done


def my_blocks(n_rows: int, done: set[int], rank: int, world: int, block: int = 16) -> list[list[int]]:
    """This rank's share of the blocks still to do. Blocks are fixed runs of ``block`` input
    rows and are always predicted whole: the fast path quantises activations per batch, so a
    study's numbers depend on its batch-mates, and fixed blocks keep them the same on any
    number of processes and after any resume (a block with a row missing is redone whole)."""
    blocks = [list(range(s, min(s + block, n_rows))) for s in range(0, n_rows, block)]
    todo = [b for b in blocks if any(r not in done for r in b)]
    return todo[rank::world]


class PartWriter:
    """Appends whole chunks of lines to this process's part file and fsyncs each chunk."""

    def __init__(self, d: Path, rank: int) -> None:
        self.path = Path(d) / f"part-r{rank}-{os.getpid()}.csv"
        self.fh = self.path.open("a", newline="", encoding="utf-8")

    def write(self, rows: list[tuple[int, list]]) -> None:
        self.fh.write("".join(encode_line(r, f) for r, f in rows))
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def merge(out: Path, header: list[str], n_rows: int) -> int:
    """Write OUT (header + every row once, in input order) atomically and remove the parts."""
    d = parts_dir(out)
    done = done_rows(d)
    missing = [r for r in range(n_rows) if r not in done]
    if missing:
        raise PartsError(f"{len(missing)} row(s) have no prediction yet (first: row {missing[0] + 1}); "
                         "run the same command again to finish them")
    tmp = Path(out).with_name(f".{Path(out).name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in range(n_rows):
            w.writerow(done[r])
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    for part in d.iterdir():
        part.unlink()
    d.rmdir()
    return n_rows
