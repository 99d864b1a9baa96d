"""A loopback S3 server (moto) for tests and benchmarks: filled from local folders *before* it listens, and
counting the requests it serves.

    python tools/s3_server.py --port 9000 --fill BUCKET/PREFIX=LOCAL_FOLDER [--fill ...]

Filling before listening is what lets a test kill the server and start it again on the same port: a client never
sees it up but empty (moto keeps objects in memory), so an outage looks to the client exactly like a real one.
`GET /_frostline/requests` returns the counts by HTTP method since start (or since the last `POST /_frostline/reset`, which answers the counts it clears).
Prints `ready <port>` once it listens. Credentials are moto's test ones; nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shards.cli import setup_logging, tool_parser  # noqa: E402


def fill(bucket_prefix: str, folder: str) -> int:
    """Put every file under `folder` into `bucket/prefix/...` of moto's in-process backend; returns the count."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    bucket, _, prefix = bucket_prefix.partition("/")
    if bucket not in backend.buckets:
        backend.create_bucket(bucket, "us-east-1")
    n = 0
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            with open(path, "rb") as f:
                backend.put_object(bucket, f"{prefix}/{rel}" if prefix else rel, f.read())
            n += 1
    return n


class Counting:
    """WSGI middleware counting requests by method; answers its own two paths."""

    def __init__(self, app):
        self.app, self.lock, self.counts = app, threading.Lock(), {}

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path.startswith("/_frostline/"):
            with self.lock:
                body = json.dumps(self.counts).encode()
                if path == "/_frostline/reset":
                    self.counts = {}
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        with self.lock:
            self.counts[method] = self.counts.get(method, 0) + 1
        return self.app(environ, start_response)


def main() -> None:
    ap = tool_parser(__doc__)
    ap.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    ap.add_argument("--fill", action="append", default=[], metavar="BUCKET/PREFIX=FOLDER",
                    help="copy FOLDER's files under s3://BUCKET/PREFIX before listening (repeatable)")
    args = ap.parse_args()
    setup_logging(args.quiet, args.verbose)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass

    for spec in args.fill:
        target, _, folder = spec.partition("=")
        if not folder or not os.path.isdir(folder):
            print(f"--fill {spec}: expected BUCKET/PREFIX=FOLDER with an existing folder", file=sys.stderr)
            sys.exit(2)
        fill(target, folder)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", args.port, Counting(app), threaded=True, request_handler=Quiet)
    print(f"ready {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
