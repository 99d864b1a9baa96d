"""What every frostline command does at its entry point: set up logging once, and turn expected failures
into one clear line.

The API is small and stable; tools and model CLIs import exactly these:

    from shards.cli import add_logging_flags, setup_logging, run

    def main(argv=None) -> int:
        p = argparse.ArgumentParser(...)
        add_logging_flags(p)                     # --quiet / --verbose
        args = p.parse_args(argv)
        setup_logging(args.quiet, args.verbose)  # once per command, stdlib logging, one format
        ...
        return 0

    if __name__ == "__main__":
        sys.exit(run(main))                      # expected failures -> one line on stderr, exit 2

- `setup_logging(quiet, verbose)`: INFO by default, WARNING with `--quiet`, DEBUG with `--verbose`; one
  handler on stderr with the format `LEVEL name: message`. The S3 client's libraries (botocore, aiobotocore,
  s3fs, urllib3, ...; `QUIET_LIBRARIES`) stay at WARNING at every level, since their debug lines carry request
  headers; and the handler replaces any credential of the environment (`SECRET_VARIABLES`) by `***`.
  Calling it again replaces the handler, so a command that is run twice in one process (tests) never prints
  a line twice.
- `run(main, *args)`: calls `main(*args)` and returns its exit status. An *expected* failure becomes
  `prog: error: <file or URL>: <what happened>` on stderr and status 2 (`EXPECTED_STATUS`):
    * bad input, the one error family: every exception class that frostline's packages define (`LayoutError`,
      `SplitError`, `TableError`, `SettingError`, `ShardDataError`, `ConfigError`, ...; most are `ValueError`
      subclasses), and `Failure`, the class for any other message meant for the user (a held lock, a store
      that holds another conversion). Input checking raises these, never a bare builtin, so a builtin
      `ValueError`/`KeyError`/`TypeError` that escapes is a bug and keeps its traceback;
    * `FileNotFoundError`, `PermissionError`, `IsADirectoryError`, `NotADirectoryError`, a full disk (ENOSPC)
      or read-only filesystem (EROFS);
    * `StorageError` (shards.storage.retry): storage unreachable for the whole retry budget, naming the URL;
    * object storage: wrong credentials (`PermissionError`/access denied from s3fs or botocore) naming
      the URL, an unreachable endpoint (connection refused, DNS, timeouts);
    * broken YAML (`yaml.YAMLError`), naming the file and line from the parser's mark.
  Everything else is a bug: it keeps its traceback and status 1. Credentials are never printed: the
  message is built from the URL and the error's class, never from the request.
- `describe(exc)`: the one-line message for an expected failure, or None for a bug (for callers that log
  rather than exit).

Where an error carries no file name (s3fs raises `PermissionError("Forbidden")`), `shards.storage` adds the
URL it was working on (`exc.filename`), so the line still names it.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

EXPECTED_STATUS = 2
FORMAT = "%(levelname)s %(name)s: %(message)s"
PROJECT_PACKAGES = ("shards", "pipeline", "model", "tools", "__main__")
QUIET_LIBRARIES = ("botocore", "aiobotocore", "boto3", "s3transfer", "s3fs", "fsspec", "urllib3", "aiohttp")
SECRET_VARIABLES = ("AWS_SESSION_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN")

_handler: logging.Handler | None = None


class Failure(Exception):
    """An expected failure whose message is meant for the user as is (it names the file or URL)."""


def whole_number(low: int, high: int | None = None):
    """An argparse type for every tool's counts: a whole number >= `low` (and <= `high`); a bad value is argparse's
    usage error naming the option and the value (exit status 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text!r}")
        return value
    return parse


def add_logging_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--quiet` (warnings and errors only) and `--verbose` (debug) to `parser`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    group.add_argument("-v", "--verbose", action="store_true", help="print debug messages too")
    return parser


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help as every frostline tool shows it: the description and epilog (the docstring's examples) keep their
    lines, and every option with a default says it, `(default: X)`, unless its help already names one."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        unset = any(default is v for v in (None, False, argparse.SUPPRESS))
        if ("%(default)" in text or "default" in text.lower() or unset
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        return f"{text} (default: %(default)s)".strip()

    def _format_action(self, action):
        if action.help is None and self._get_help_string(action):  # an option without help still shows its default
            import copy
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


def tool_parser(doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """The parser every tool starts from: `doc`'s first paragraph is the description, the rest (its examples) the
    epilog of `--help`; defaults are shown (`HelpFormatter`); `-q/--quiet` and `-v/--verbose` are there."""
    head, _, rest = (doc or "").strip().partition("\n\n")
    kwargs.setdefault("description", head)
    kwargs.setdefault("epilog", rest.strip("\n") or None)
    kwargs.setdefault("formatter_class", HelpFormatter)
    return add_logging_flags(argparse.ArgumentParser(**kwargs))


def add_alias(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Accept `old` as a hidden spelling of the option `new` (the name it had before the tools agreed on one)."""
    action = parser._option_string_actions[new]
    parser.add_argument(old, dest=action.dest, type=action.type, nargs=action.nargs, choices=action.choices,
                        metavar=action.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def setup_logging(quiet: bool = False, verbose: bool = False) -> int:
    """Configure the root logger for this command (see the module docstring); returns the level."""
    global _handler
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(_handler)
    root.setLevel(level)
    _handler.addFilter(_redact)
    # the S3 client's own debug lines hold request headers (the session token, signatures): kept at WARNING
    # even with --verbose, whose debug lines are frostline's own
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    return level


def _secrets() -> list[str]:
    return [v for k in SECRET_VARIABLES if len(v := os.environ.get(k) or "") >= 8]


def _redact(record: logging.LogRecord) -> bool:
    """A handler filter: any credential from the environment in a log line becomes `***` (a second line of
    defence behind QUIET_LIBRARIES, for a library that logs it at WARNING)."""
    secrets = _secrets()
    if secrets:
        text = record.getMessage()
        if any(s in text for s in secrets):
            for s in secrets:
                text = text.replace(s, "***")
            record.msg, record.args = text, None
    return True


def _project_class(exc: BaseException) -> bool:
    return any(c.__module__.split(".")[0] in PROJECT_PACKAGES for c in type(exc).__mro__[:-1]
               if c.__module__ not in ("builtins",))


def _where(exc: BaseException) -> str | None:
    for attr in ("filename", "url"):
        value = getattr(exc, attr, None)
        if value:
            return str(value)
    return None


def _with_where(exc: BaseException, text: str) -> str:
    where = _where(exc)
    return f"{where}: {text}" if where and where not in text else text


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_unreachable(exc: BaseException) -> bool:
    names = {c.__name__ for e in _chain(exc) for c in type(e).__mro__}
    return bool(names & {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                         "ClientConnectorError", "ServerTimeoutError", "ConnectionError",
                         "ConnectionRefusedError", "NewConnectionError", "TimeoutError"})


def _is_denied(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, PermissionError):
            return True
        code = getattr(e, "response", {}) or {}
        code = code.get("Error", {}).get("Code", "") if isinstance(code, dict) else ""
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403",
                    "ExpiredToken", "InvalidToken"):
            return True
        if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return True
    return False


def describe(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None when `exc` is a bug (see the module docstring)."""
    if isinstance(exc, Failure) or _project_class(exc):
        return str(exc)   # frostline's own: bad input, or storage that stayed unreachable (shards.storage.retry)
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        yaml = None
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = getattr(exc, "filename", None) or (mark.name if mark is not None else None)
        line = f":{mark.line + 1}" if mark is not None else ""
        return f"{where}{line}: broken YAML: {problem}" if where else f"broken YAML: {problem}"
    remote = (_where(exc) or "").startswith(("s3://", "http://", "https://", "gs://"))
    if _is_unreachable(exc):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default endpoint"
        return _with_where(exc, f"storage endpoint {endpoint} unreachable ({type(exc).__name__})")
    if remote and _is_denied(exc):
        return _with_where(exc, "access denied: check the AWS credentials (AWS_ACCESS_KEY_ID, "
                                "AWS_SECRET_ACCESS_KEY) and the bucket's permissions")
    if isinstance(exc, OSError):
        if isinstance(exc, FileNotFoundError):
            return _with_where(exc, "no such file or folder") if _where(exc) else str(exc)
        if isinstance(exc, PermissionError):
            return _with_where(exc, "permission denied")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _with_where(exc, "no space left on device (disk full)")
        if exc.errno == errno.EROFS:
            return _with_where(exc, "read-only file system")
        if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
            return _with_where(exc, exc.strerror or str(exc))
    return None


def run(main, *args, prog: str | None = None, **kwargs) -> int:
    """Call `main(*args, **kwargs)`; expected failures print one line and return 2, bugs raise."""
    try:
        status = main(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - sorted into expected failures and bugs just below
        message = describe(exc)
        if message is None:
            raise
        name = prog or os.path.basename(sys.argv[0] or "frostline").removesuffix(".py")
        for secret in _secrets():
            message = message.replace(secret, "***")
        print(f"{name}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
        return EXPECTED_STATUS
    return 0 if status is None else int(status)
