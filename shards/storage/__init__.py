"""Local folders and `s3://` URLs behind one small set of functions, with fsspec's `url_to_fs` underneath.

Every reader and writer under `shards/` and `tools/make_*` goes through here:

    read_bytes(url[, start, end])   the object, or a byte range of it
    write_bytes(url, data)          atomic: readers see the old object or the whole new one, never a part
    create_bytes(url, data)         exclusive create (FileExistsError when it exists): locks
    exists(url), list_files(url)    fresh answers on S3 (the listing cache is dropped first)
    put_file(local, url)            move a finished local file to its final name (rename / one upload)
    split_url(url)                  (folder, name), for a file URL or local path

`Store` is a thin face over them for a folder that files are committed into: relative names, and a
local scratch folder where shards are built before their commit.

S3 is reached through fsspec/s3fs, which takes the endpoint and credentials from the standard `AWS_*`
variables (including `AWS_ENDPOINT_URL`). A local file is written under a temporary name and renamed;
an S3 object only becomes visible when its upload completes.

Every call on object storage goes through `shards.storage.retry` (one retry mechanism for the project): a transient
fault (connection refused or reset, timeouts, 5xx, SlowDown) is retried with backoff for FROSTLINE_IO_RETRY_S
seconds (default 600), then a `StorageError` names the URL and the cause. A missing object, denied access or a
bug is raised at once.

Errors keep their type (FileNotFoundError, PermissionError, ...) but always name the URL they were about:
s3fs raises `PermissionError("Forbidden")` with no name, so `naming` sets `filename` (an OSError with an errno)
or `url` (anything else, such as botocore's EndpointConnectionError) before re-raising. `shards.cli` prints it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import tempfile
import uuid

import fsspec

from .retry import retry

TMP = "_tmp"


def is_remote(url: str) -> bool:
    return "://" in str(url) and not str(url).startswith("file://")


class URLError(ValueError):
    """A URL that names no place in object storage (`s3://` without a bucket, `..` in its path); names the URL."""


def normalise(url: str) -> str:
    """An S3 URL without its trailing slash, or an absolute local path."""
    url = str(url)
    if not is_remote(url):
        return os.path.abspath(url)
    scheme, _, rest = url.partition("://")
    parts = rest.rstrip("/").split("/")
    if not scheme or not parts[0] or any(p in (".", "..") for p in parts):
        raise URLError(f"{url!r} names no object in storage: write {scheme or 's3'}://bucket/prefix")
    return url.rstrip("/")


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def split_url(url: str) -> tuple[str, str]:
    """`s3://b/p/x.parquet` -> (`s3://b/p`, `x.parquet`); a local path -> (absolute folder, name)."""
    url = normalise(url)
    return tuple(url.rsplit("/", 1)) if is_remote(url) else os.path.split(url)


def url_to_fs(url: str):
    """(fsspec filesystem, its path) for `url`; filesystems are cached by fsspec, so this is cheap."""
    return fsspec.core.url_to_fs(normalise(url))


@contextlib.contextmanager
def naming(url: str):
    """Re-raise any error with the URL it was about (see the module docstring)."""
    try:
        yield
    except Exception as e:
        if isinstance(e, OSError) and e.errno is not None:
            if not e.filename:
                e.filename = url
        elif not getattr(e, "url", None) and not getattr(e, "filename", None):
            with contextlib.suppress(Exception):
                e.url = url   # not `filename`: an OSError without errno would print as "[Errno None] None: ..."
        raise


def _fresh(fs, path: str, url: str) -> None:
    """Drop s3fs's listing cache for `path`: another process (a part, a lock holder) may have changed it."""
    if is_remote(url):
        fs.invalidate_cache(path)


def _remote(call, url: str, what: str):
    """Run one storage call; on object storage through the shared retry policy (`shards.storage.retry`: transient
    faults are retried with backoff for FROSTLINE_IO_RETRY_S seconds, then a StorageError names the URL)."""
    return retry(call, what=f"{what} {url}") if is_remote(url) else call()


def exists(url: str) -> bool:
    with naming(url):
        fs, path = url_to_fs(url)

        def call():
            _fresh(fs, path, url)
            return fs.exists(path)
        return _remote(call, url, "check")


def read_bytes(url: str, start: int | None = None, end: int | None = None) -> bytes:
    with naming(url):
        fs, path = url_to_fs(url)
        return _remote(lambda: fs.cat_file(path, start=start, end=end), url, "read")


def write_bytes(url: str, data: bytes) -> None:
    """Write `url` atomically: readers see the old file or the whole new one, never a part."""
    with naming(url):
        fs, path = url_to_fs(url)
        if is_remote(url):
            _remote(lambda: fs.pipe_file(path, data), url, "write")
            return
        _through_temp(path, data, os.replace)


def create_bytes(url: str, data: bytes) -> None:
    """Create `url` only if it does not exist yet (FileExistsError otherwise), whole: a reader sees no file or all
    of `data`. On S3 a conditional PUT; on local disk a complete file hard-linked into place (`link` fails if the
    name exists), or `O_CREAT|O_EXCL` on file systems without hard links."""
    with naming(url):
        fs, path = url_to_fs(url)
        if is_remote(url):
            _remote(lambda: fs.pipe_file(path, data, mode="create"), url, "create")
            return
        if _through_temp(path, data, _link):
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _through_temp(path: str, data: bytes, put):
    """Write `data` to a temp file beside local `path` (folders made), then `put(temp, path)`; the temp file never
    stays. Returns what `put` returned."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        return put(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def _link(tmp: str, path: str) -> bool:
    """Hard-link `tmp` to `path` (FileExistsError when `path` exists); False where the file system has no links."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            return False
        raise


def remove(url: str) -> None:
    with naming(url), contextlib.suppress(FileNotFoundError):
        fs, path = url_to_fs(url)
        _remote(lambda: fs.rm_file(path), url, "remove")


def list_files(url: str) -> list[str]:
    """Names of the files directly inside folder `url` (sorted; [] when the folder does not exist)."""
    with naming(url):
        fs, path = url_to_fs(url)

        def call():
            _fresh(fs, path, url)
            if not fs.exists(path):
                return []
            return sorted(posixpath.basename(info["name"].rstrip("/"))
                          for info in fs.ls(path, detail=True) if info.get("type") == "file")
        return _remote(call, url, "list")


def put_file(local_file: str, url: str) -> None:
    """Move a finished local file to `url`: a rename on local disk, one upload (then delete) for S3."""
    with naming(url):
        fs, path = url_to_fs(url)
        if is_remote(url):
            try:
                _remote(lambda: fs.put_file(local_file, path), url, "upload")
            finally:
                os.remove(local_file)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(local_file, path)


class Store:
    """A folder (local path or s3://bucket/prefix) that files are read from and committed into."""

    def __init__(self, url: str, tmp_name: str = TMP):
        self.tmp_name = tmp_name  # scratch folder; one per --part so parts never clean each other's files
        self.url = normalise(url)
        self.remote = is_remote(self.url)
        self.fs, self.root = url_to_fs(self.url)

    def path(self, rel: str) -> str:
        """The filesystem path of `rel` (what `self.fs` understands)."""
        return posixpath.join(self.root, rel) if self.remote else os.path.join(self.root, rel)

    def url_of(self, rel: str) -> str:
        """The URL of `rel` as other tools (DALI, pyarrow) take it."""
        return join(self.url, rel)

    def exists(self, rel: str) -> bool:
        return exists(self.url_of(rel))

    def read_bytes(self, rel: str, start: int | None = None, end: int | None = None) -> bytes:
        return read_bytes(self.url_of(rel), start, end)

    def list(self, prefix: str = "") -> list[str]:
        """Names (relative to the store) of the files directly inside folder `prefix`."""
        names = list_files(self.url_of(prefix) if prefix else self.url)
        return [posixpath.join(prefix, n) for n in names] if prefix else names

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write `rel` atomically: readers see the old file or the whole new one, never a part.

        Locally the bytes go through the scratch folder (so a killed run leaves nothing next to the
        final names, and `clean_tmp` finds its leftovers)."""
        if self.remote:
            write_bytes(self.url_of(rel), data)
            return
        tmp = self.local_tmp(rel)
        with naming(tmp), open(tmp, "wb") as f:
            f.write(data)
        self.commit_local(tmp, rel)

    def scratch_folder(self) -> str:
        """Where files are built before their commit: inside a local store (same filesystem, so a rename
        commits), or in the system temp folder for S3, one folder per store URL and part."""
        if not self.remote:
            return os.path.join(self.root, self.tmp_name)
        tag = hashlib.sha1(self.url.encode()).hexdigest()[:12]
        return os.path.join(self._scratch_base(), tag, self.tmp_name)

    def _scratch_base(self) -> str:
        return self.root if not self.remote else os.path.join(tempfile.gettempdir(), "frostline-upload")

    def local_tmp(self, rel: str) -> str:
        """A local scratch file for building `rel`."""
        folder = self.scratch_folder()
        with naming(folder):
            os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, f"{posixpath.basename(rel)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")

    def commit_local(self, local_file: str, rel: str) -> None:
        """Move a finished scratch file to its final name `rel` (rename locally, one upload on S3)."""
        put_file(local_file, self.url_of(rel))

    def clean_tmp(self) -> None:
        """Drop the scratch files a killed run left behind (S3 itself never shows partial objects)."""
        folder = self.scratch_folder()
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                os.remove(os.path.join(folder, name))
            os.rmdir(folder)
        top = self._scratch_base()
        parent = os.path.dirname(folder)
        while parent.startswith(top) and parent != top and os.path.isdir(parent):
            try:
                os.rmdir(parent)    # only succeeds when empty: other parts' scratch folders stay
            except OSError:
                break
            parent = os.path.dirname(parent)
