#!/usr/bin/env python
"""Check a shard store against its manifest: sha256 of every stream, the .lbl/.nfr/.json members, every .idx
against its tar, and shards missing from the store or orphaned in it.

    python tools/verify_shards.py STORE            # a folder or s3://bucket/prefix
    python tools/verify_shards.py --split FILE     # a split file's rows against the shards they name

Prints one line per problem (`FILE: KEY: KIND: detail`), then a summary. Exit status: 0 when the store is
clean, 1 when problems were found, 2 on bad usage or a store that cannot be read (no manifest, no access).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shards.cli import run, setup_logging, tool_parser  # noqa: E402
from shards.verify import verify, verify_split  # noqa: E402

PROBLEMS_FOUND = 1


def main(argv=None) -> int:
    p = tool_parser(__doc__)
    p.add_argument("store", nargs="?",
                   help="the shard store: a folder or s3://bucket/prefix (what make_shards --out wrote)")
    p.add_argument("--split", action="append", default=[], metavar="FILE",
                   help="also (or only) check a split file (make_splits): its set, and each row's members, label, "
                        "frame count and fragment table against the stored stream (and, with STORE, that its "
                        "shards are STORE's); repeatable")
    p.add_argument("--max-lines", type=int, default=200, help="print at most this many problems (default 200)")
    args = p.parse_args(argv)
    if not args.store and not args.split:
        p.error("give a STORE, a --split FILE, or both")
    if args.max_lines < 0:
        p.error(f"--max-lines must be at least 0, got {args.max_lines}")
    setup_logging(args.quiet, args.verbose)
    reports = ([verify(args.store)] if args.store else []) + [verify_split(f, args.store) for f in args.split]
    for report in reports:
        for problem in report.problems[:args.max_lines]:
            print(problem)
        if len(report.problems) > args.max_lines:
            print(f"... and {len(report.problems) - args.max_lines} more")
        print(report.summary())
    return 0 if all(r.ok for r in reports) else PROBLEMS_FOUND


if __name__ == "__main__":
    sys.exit(run(main, prog="verify_shards"))
