"""The golden shard stores: what `make_shards` writes for two small generated datasets, pinned by hashes.

`build(root)` converts a UCF101-layout dataset with every quirk (rejects of each kind, two parts and a merge,
tiny shards) and an SSv2-layout one (templates, placeholders, an fps change), and returns {file: sha256} of
every file of both stores. `python tests/golden_store.py` rewrites tests/data/golden_store.json; it was
written from the code before the storage/merge rework (commit d9f52d1), so the test that compares against
it proves the rework changed no byte. The hashes depend on the encoder: the file records the PyAV and
libavcodec versions, and the test only compares on a machine with the same ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import av

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "data", "golden_store.json")


def encoder_versions() -> dict:
    return {"av": av.__version__, "libavcodec": list(av.library_versions.get("libavcodec", ()))}


def store_hashes(out: str) -> dict:
    """{relative path: sha256} of every file of a store, except scratch and lock files."""
    hashes = {}
    for folder, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if d != "_tmp"]
        for name in files:
            if name.endswith(".lock") or name.startswith("."):
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, out)] = hashlib.sha256(f.read()).hexdigest()
    return dict(sorted(hashes.items()))


def build(root: str) -> dict:
    # the golden hashes were recorded with keyframe interval 16, the default before the gathered cut (issue 14)
    from shards.convert import convert_dataset
    from shards.generated.synthetic import make_ssv2, make_ucf101

    ucf = make_ucf101(os.path.join(root, "ucf_src"), num_classes=4, groups=4, clips=1)
    for part in ("1/2", "2/2"):
        convert_dataset("ucf101", ucf.root, os.path.join(root, "ucf"), workers=1, shard_size="24kB",
                        part=part, progress=False, keyframe_interval=16)
    ssv2 = make_ssv2(os.path.join(root, "ssv2_src"), num_classes=4)
    convert_dataset("ssv2", ssv2.root, os.path.join(root, "ssv2"), workers=1, shard_size="40kB", progress=False,
                    keyframe_interval=16)
    out = {}
    for name in ("ucf", "ssv2"):
        out.update({f"{name}/{k}": v for k, v in store_hashes(os.path.join(root, name)).items()})
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = build(tmp)
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    with open(GOLDEN, "w") as f:
        json.dump({"encoder": encoder_versions(), "files": files}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {GOLDEN}: {len(files)} files", file=sys.stderr)
