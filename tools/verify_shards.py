#!/usr/bin/env python
"""Check a shard store against its manifest: sha256 of every stream, the .lbl/.nfr/.json members, every .idx
against its tar, and shards missing from the store or orphaned in it.

    python tools/verify_shards.py STORE            # a folder or s3://bucket/prefix

Prints one line per problem (`FILE: KEY: KIND: detail`), then a summary. Exit status: 0 when the store is
clean, 1 when problems were found, 2 on bad usage or a store that cannot be read (no manifest, no access).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shards.cli import run, setup_logging, tool_parser  # noqa: E402
from shards.verify import verify  # noqa: E402

PROBLEMS_FOUND = 1


def main(argv=None) -> int:
    p = tool_parser(__doc__)
    p.add_argument("store", help="the shard store: a folder or s3://bucket/prefix (what make_shards --out wrote)")
    p.add_argument("--max-lines", type=int, default=200, help="print at most this many problems (default 200)")
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    report = verify(args.store)
    for problem in report.problems[:args.max_lines]:
        print(problem)
    if len(report.problems) > args.max_lines:
        print(f"... and {len(report.problems) - args.max_lines} more")
    print(report.summary())
    return 0 if report.ok else PROBLEMS_FOUND


if __name__ == "__main__":
    sys.exit(run(main, prog="verify_shards"))
