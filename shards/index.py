"""DALI's webdataset index format, as `wds2idx` writes it.

    v1.2 <number of samples>
    <ext> <data offset> <size> <member name> [<ext> <data offset> <size> <member name> ...]   # one line per sample

Offsets point at a member's data (its 512-byte tar header sits just before). With an index, DALI's
`fn.readers.webdataset` never scans the tar; an index that lists only some samples makes it read
only those, which is how a split reads its subset of a shard without copying it.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterable

VERSION = "v1.2"
BLOCK = 512


@dataclass(frozen=True)
class Member:
    ext: str
    offset: int   # of the data, in bytes from the start of the tar
    size: int
    name: str


@dataclass(frozen=True)
class IndexedSample:
    key: str
    members: tuple[Member, ...]

    @property
    def offset(self) -> int:
        """Where the sample's first tar header starts (its members carry plain ustar headers)."""
        return self.members[0].offset - BLOCK

    @property
    def size(self) -> int:
        """Bytes from the first header to the end of the last member's padded data."""
        last = self.members[-1]
        end = last.offset + -(-last.size // BLOCK) * BLOCK
        return end - self.offset


def split_name(name: str) -> tuple[str, str]:
    """`dir/key.a.b` -> (`dir/key`, `a.b`): WebDataset splits a member name at the first dot of its base name."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:]


def group_members(members: Iterable[Member]) -> list[IndexedSample]:
    """Group consecutive members with the same key into samples, as DALI and webdataset do."""
    samples: list[IndexedSample] = []
    current: list[Member] = []
    key = None
    for m in members:
        k, _ = split_name(m.name)
        if k != key and current:
            samples.append(IndexedSample(key, tuple(current)))
            current = []
        key = k
        current.append(m)
    if current:
        samples.append(IndexedSample(key, tuple(current)))
    return samples


def scan_tar(fileobj: BinaryIO) -> list[IndexedSample]:
    """Read a tar's headers (not its data) and return its samples."""
    members = []
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        for info in tar:
            if not info.isreg():
                continue
            key, ext = split_name(info.name)
            if not key or key.endswith("/"):
                continue
            members.append(Member(ext, info.offset_data, info.size, info.name))
    return group_members(members)


def format_index(samples: Iterable[IndexedSample]) -> str:
    samples = list(samples)
    if not samples:
        raise ValueError("a DALI index needs at least one sample")
    lines = [f"{VERSION} {len(samples)}"]
    for s in samples:
        lines.append(" ".join(f"{m.ext} {m.offset} {m.size} {m.name}" for m in s.members))
    return "\n".join(lines) + "\n"


def build_index(fileobj: BinaryIO) -> str:
    """The index text for an open tar file."""
    return format_index(scan_tar(fileobj))


def parse_index(text: str) -> list[IndexedSample]:
    """Parse index text; raises ValueError naming the line that does not fit the format."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("empty index")
    head = lines[0].split()
    if len(head) != 2 or head[0] != VERSION or not head[1].isdigit():
        raise ValueError(f"index line 1: expected '{VERSION} <count>', got {lines[0]!r}")
    members = []
    samples = []
    for no, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) % 4:
            raise ValueError(f"index line {no}: expected groups of 'ext offset size name', got {line!r}")
        members = []
        for i in range(0, len(fields), 4):
            ext, off, size, name = fields[i:i + 4]
            if not (off.isdigit() and size.isdigit()):
                raise ValueError(f"index line {no}: offset and size must be integers, got {line!r}")
            members.append(Member(ext, int(off), int(size), name))
        samples.append(IndexedSample(split_name(members[0].name)[0], tuple(members)))
    if len(samples) != int(head[1]):
        raise ValueError(f"index says {head[1]} samples but lists {len(samples)}")
    return samples


def subset_index(index_text: str, sample_offsets: Iterable[int]) -> str:
    """Keep only the samples whose first tar header starts at one of `sample_offsets` (the manifest's `offset`).

    The samples keep the shard's order. Raises KeyError listing offsets that start no sample.
    """
    wanted = {int(o) for o in sample_offsets}
    kept = [s for s in parse_index(index_text) if s.offset in wanted]
    if len(kept) != len(wanted):
        found = {s.offset for s in kept}
        missing = sorted(wanted - found)
        raise KeyError(f"no sample starts at offset(s) {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return format_index(kept)
