"""The training run's record: one JSON line per optimiser step in ``metrics.jsonl`` (main process), the same
scalars to accelerate's trackers (TensorBoard), and a log line every ``train.log_every`` steps."""
from __future__ import annotations

import json
from pathlib import Path

from model.config import Config


class MetricsLog:
    def __init__(self, accelerator, out: Path, every: int, logger):
        self.acc, self.every, self.logger = accelerator, every, logger
        self.file = None
        if accelerator.is_main_process:
            path = out / "metrics.jsonl"
            torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
            self.file = open(path, "a")
            if torn:  # a run killed mid-line: start the resumed records on a line of their own
                self.file.write("\n")

    def step(self, record: dict) -> None:
        self.acc.log({f"train/{k}": v for k, v in record.items() if k not in ("step", "epoch")}, step=record["step"])
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if record["step"] % self.every == 0:
            self.logger.info(
                f"epoch {record['epoch']} step {record['step']}: loss {record['loss']:.4f} (ce {record['ce']:.4f} "
                f"dv {record['distill_visual']:.4f} dt {record['distill_text']:.4f}) lr {record['lr']:.3g} "
                f"{record['clips_per_s']:.1f} clips/s")

    def close(self):
        if self.file:
            self.file.close()


def flat_config(cfg: Config) -> dict:
    """Scalars only, for TensorBoard's hparams."""
    out = {}
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            for k, v in values.items():
                out[f"{section}.{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
        else:
            out[section] = values
    return out
