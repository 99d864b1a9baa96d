"""Local folders and `s3://` URLs behind one small interface.

S3 is reached through fsspec/s3fs, which takes the endpoint and credentials from the standard
`AWS_*` variables (including `AWS_ENDPOINT_URL`). Writes are atomic on both: a local file is written
under a temporary name and renamed; an S3 object only becomes visible when its upload completes.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
import uuid

import fsspec


def is_remote(url: str) -> bool:
    return "://" in str(url) and not str(url).startswith("file://")


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


TMP = "_tmp"


class Store:
    """A folder (local path or s3://bucket/prefix) that files are read from and committed into."""

    def __init__(self, url: str, tmp_name: str = TMP):
        self.tmp_name = tmp_name  # scratch folder; one per --part so parts never clean each other's files
        self.url = str(url).rstrip("/") if is_remote(url) else os.path.abspath(url)
        self.remote = is_remote(self.url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def path(self, rel: str) -> str:
        """The filesystem path of `rel` (what `self.fs` understands)."""
        return posixpath.join(self.root, rel) if self.remote else os.path.join(self.root, rel)

    def url_of(self, rel: str) -> str:
        """The URL of `rel` as other tools (DALI, pyarrow) take it."""
        return join(self.url, rel)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def open(self, rel: str, mode: str = "rb"):
        return self.fs.open(self.path(rel), mode)

    def list(self, prefix: str = "") -> list[str]:
        """Names (relative to the store) of the files directly inside folder `prefix`."""
        folder = self.path(prefix) if prefix else self.root
        if self.remote:
            self.fs.invalidate_cache()
        if not self.fs.exists(folder):
            return []
        out = []
        for info in self.fs.ls(folder, detail=True):
            if info.get("type") == "file":
                name = posixpath.basename(info["name"].rstrip("/"))
                out.append(posixpath.join(prefix, name) if prefix else name)
        return sorted(out)

    def remove(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm_file(self.path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write `rel` atomically: readers see the old file or the whole new one, never a part."""
        if self.remote:
            self.fs.pipe_file(self.path(rel), data)
            return
        tmp = self.local_tmp(rel)
        with open(tmp, "wb") as f:
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
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, f"{posixpath.basename(rel)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")

    def commit_local(self, local_file: str, rel: str) -> None:
        """Move a finished scratch file to its final name `rel` (rename locally, one upload on S3)."""
        if self.remote:
            try:
                self.fs.put_file(local_file, self.path(rel))
            finally:
                os.remove(local_file)
        else:
            dest = self.path(rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(local_file, dest)

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
