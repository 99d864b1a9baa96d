"""What the model floor reads: the split files of a protocol (make_splits' layout) and the pipeline's settings
for them. The pipeline is imported lazily: it pulls in DALI."""
from __future__ import annotations

from model.config import Config, DataConfig


def split_paths(cfg: DataConfig) -> dict:
    """The split files of the configured protocol, in make_splits' layout.

    Returns ``{"train": url, "eval": {dataset: {name: url}}}``; names are ``base``/``novel`` (base2novel) or
    ``1``, ``2``, ``3`` and ``full`` (cross; ``full`` only when the file exists).
    """
    root = cfg.splits.rstrip("/")
    if cfg.protocol == "base2novel":
        d = f"{root}/base2novel/{cfg.dataset}"
        return {"train": f"{d}/train_s{cfg.train_set}.parquet",
                "eval": {cfg.dataset: {"base": f"{d}/eval_base.parquet", "novel": f"{d}/eval_novel.parquet"}}}
    evals = {}
    for ds in cfg.eval_datasets:
        d = f"{root}/cross/{ds}"
        evals[ds] = {str(i): f"{d}/eval_{i}.parquet" for i in (1, 2, 3)} | {"full": f"{d}/eval_full.parquet"}
    return {"train": f"{root}/cross/{cfg.dataset}/train.parquet", "eval": evals}


def split_exists(url: str) -> bool:
    """Whether an optional split file (cross-dataset ``eval_full``) is there, locally or on s3://."""
    from shards import storage
    return storage.exists(url)


def loader_config(cfg: Config, *, train: bool, batch_size: int, device: str):
    """The pipeline's LoaderConfig for this run."""
    from pipeline.loader import LoaderConfig
    d = cfg.data
    return LoaderConfig(device=device, num_frames=d.num_frames, sampling=d.sampling, frame_stride=d.frame_stride,
                        batch_size=batch_size, train=train, num_views=d.num_views, crop_size=d.crop_size,
                        short_side_range=tuple(d.short_side_range), flip=d.flip, force_flip=d.force_flip,
                        dtype="fp32", seed=cfg.train.seed,
                        num_threads=d.num_threads, prefetch=d.prefetch, shuffle=d.shuffle,
                        interleave_shards=d.interleave_shards, read_chunk_mb=d.read_chunk_mb)


def loader_device(cfg: Config, accelerator) -> str:
    """The pipeline's device: as configured, or the accelerator's (`auto`)."""
    if cfg.data.device != "auto":
        return cfg.data.device
    return "gpu" if accelerator.device.type == "cuda" else "cpu"


def build_loader(url: str, cfg: Config, accelerator, *, train: bool, batch_size: int):
    """This rank's share of one split file, batched for training or evaluation. The file's whole split set is
    checked first (`shards.splits.check_split_set`): a set whose files come from different make_splits runs is
    refused, naming them, before any step trains or evaluates on it."""
    from pipeline.loader import build_loader as build
    from shards.splits import check_split_set
    check_split_set(url)
    return build(url, loader_config(cfg, train=train, batch_size=batch_size, device=loader_device(cfg, accelerator)),
                 rank=accelerator.process_index, world_size=accelerator.num_processes)


def data_health(loader, accelerator) -> dict:
    """What the loader made of its split, over all ranks: the split's rows, samples read (when the loader counts
    them) and the samples skipped as undecodable, with their keys (also those skipped before a resume)."""
    stats = loader.stats
    skipped = set(stats.get("skipped_keys", [])) | set(loader.state_dict().get("skipped_keys", []))
    mine = {"read": stats.get("read"), "skipped_keys": sorted(skipped)}
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object
        parts = gather_object([mine])
    else:
        parts = [mine]
    keys = sorted({k for p in parts for k in p["skipped_keys"]})
    out = {"rows": int(stats.get("rows", len(loader.table)))}
    if all(p["read"] is not None for p in parts):
        out["read"] = int(sum(p["read"] for p in parts))
    out.update(skipped=len(keys), skipped_keys=keys)
    return out
