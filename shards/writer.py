"""Tar shards plus DALI index files, built in scratch space and committed atomically.

A shard is written to a local scratch file; only when it is complete are its index and then the
tar moved to their final names (`{split}-{000000}.idx`, `.tar`). So a killed run never leaves a
partial shard under a final name, and a shard either exists whole or not at all.
"""
from __future__ import annotations

import json
import os
import struct
import tarfile
from dataclasses import dataclass, field

from .index import BLOCK, IndexedSample, Member, format_index
from .storage import Store, naming

MTIME = 0  # fixed member metadata: the same samples give byte-identical shards


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}"


def padded(size: int) -> int:
    """Bytes a member's data takes in a tar: rounded up to whole 512-byte blocks."""
    return -(-size // BLOCK) * BLOCK


def tar_bytes(members: list[tuple[str, bytes]]) -> int:
    """Bytes `members` add to a tar: a header block plus the padded data, each."""
    return sum(BLOCK + padded(len(data)) for _, data in members)


def int32_le(value: int) -> bytes:
    return struct.pack("<i", int(value))


def sample_members(key: str, video: bytes, meta: dict, label: int, num_frames: int) -> list[tuple[str, bytes]]:
    """The members of one sample, in the order they are written: the stream, its metadata, label, frame count."""
    return [
        ("mp4", video),
        ("json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")),
        ("lbl", int32_le(label)),
        ("nfr", int32_le(num_frames)),
    ]


@dataclass
class ShardBuilder:
    """One tar shard being filled in a scratch file."""

    store: Store
    name: str                                   # e.g. "train-000003"
    scratch: str = ""
    samples: list[IndexedSample] = field(default_factory=list)
    _tar: tarfile.TarFile | None = None

    def __post_init__(self):
        self.scratch = self.store.local_tmp(self.name + ".tar")
        with naming(self.scratch):
            self._file = open(self.scratch, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)

    @property
    def tar_name(self) -> str:
        return self.name + ".tar"

    @property
    def index_name(self) -> str:
        return self.name + ".idx"

    @property
    def nbytes(self) -> int:
        return self._file.tell()

    def add(self, key: str, members: list[tuple[str, bytes]]) -> tuple[int, int]:
        """Append a sample; returns (offset of its first header, size up to the end of its last member)."""
        with naming(self.scratch):
            return self._add(key, members)

    def _add(self, key: str, members: list[tuple[str, bytes]]) -> tuple[int, int]:
        start = self._file.tell()
        written = []
        for ext, data in members:
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), MTIME, 0o444
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            header_at = self._file.tell()
            self._tar.addfile(info, _Reader(data))
            written.append(Member(ext, header_at + BLOCK, len(data), info.name))
        self.samples.append(IndexedSample(key, tuple(written)))
        return start, self._file.tell() - start

    def commit(self) -> None:
        """Finish the tar, then move index and tar to their final names (index first, the tar last)."""
        with naming(self.scratch):
            self._tar.close()
            self._file.close()
        index_text = format_index(self.samples)
        self.store.write_bytes(self.index_name, index_text.encode())
        self.store.commit_local(self.scratch, self.tar_name)

    def abandon(self) -> None:
        """Drop the scratch file (after an error: closing may fail again, on a full disk, and is not needed)."""
        for close in (self._tar.close, self._file.close):
            try:
                close()
            except OSError:
                pass
        if os.path.exists(self.scratch):
            os.remove(self.scratch)


class _Reader:
    """A minimal file-like reader over bytes for tarfile.addfile (avoids copying into BytesIO)."""

    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n is None or n < 0 else min(len(self._view), self._pos + n)
        chunk = self._view[self._pos:end].tobytes()
        self._pos = end
        return chunk
