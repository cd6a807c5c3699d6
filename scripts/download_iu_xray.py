"""Download the Indiana University Chest X-ray Collection (Open-I) into the layout the tool reads.

    python scripts/download_iu_xray.py                          # into data/iu-xray
    python scripts/download_iu_xray.py --out /data/iu-xray
    python scripts/download_iu_xray.py --base-url https://mirror.example.org/collections

Fetches NLMCXR_reports.tgz and NLMCXR_png.tgz (about 1.3 GB) from openi.nlm.nih.gov into
--out, resuming an interrupted download (HTTP Range into ARCHIVE.part), checks each archive's
size against Content-Length, reads it through (gzip CRC and tar listing; SHA-256 too where one
is known), then extracts:

    OUT/NLMCXR_png/<image_id>.png
    OUT/NLMCXR_reports/ecgen-radiology/<uid>.xml

Run it again at any time: finished parts are skipped. Without network, copy the two archives
into OUT and run it: they are verified and extracted without contacting the server.
Exit status: 0 done; 2 bad usage or the server cannot be reached; 1 an incomplete or corrupt
archive (run again to resume or re-download).
"""
from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlparse

from core.data.download import (
    ARCHIVES,
    BASE_URL,
    LICENSE,
    DownloadError,
    Unreachable,
    install,
)
from scripts._cli import Parser, fail, run_main

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "data" / "iu-xray", help="target folder (default data/iu-xray)")
    p.add_argument("--base-url", default=BASE_URL, help="where the archives are (a mirror); default Open-I")
    p.add_argument("--timeout", type=float, default=60, help="network timeout in seconds (default 60)")
    p.add_argument("--remove-archives", action="store_true", help="delete each .tgz once it is extracted")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not urlparse(args.base_url).scheme.startswith("http"):
        fail(f"--base-url must be an http(s) URL, not {args.base_url!r}")
    if args.out.exists() and not args.out.is_dir():
        fail(f"--out {args.out} is a file, not a folder")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {args.out}: {exc.strerror}")
    print(LICENSE)
    try:
        for archive in ARCHIVES:
            install(archive, args.out, base_url=args.base_url, timeout=args.timeout,
                    remove_archive=args.remove_archives)
    except Unreachable as exc:
        fail(str(exc))
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk or an unwritable --out while writing or extracting
        print(f"error: cannot write {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"done: {args.out} holds NLMCXR_png/ and NLMCXR_reports/ecgen-radiology/ "
          "(CC BY-NC-ND 4.0; cite doi:10.1093/jamia/ocv080)")
    return 0


if __name__ == "__main__":
    run_main(main)
