"""How a training or evaluation process starts: as one rank of `accelerate launch`, or alone.

- **accelerate is the one source of truth for the launch.** The distributed type (DDP, FSDP) and the mixed
  precision are read from the `Accelerator`. frostline's YAML states what the recipe expects
  (``train.distributed``, ``train.mixed_precision``); when ``accelerate launch`` (its flags or ``accelerate
  config``) says otherwise, the run is refused with a message naming both, instead of one silently winning. A
  plain ``python model/train.py`` has no launch config: the YAML's values are used. ``train.distributed=fsdp``
  turns FSDP on under a plain ``--multi_gpu`` launch too. accelerate 1.x runs FSDP on GPUs only; on CPU
  processes it would silently fall back to DDP, so there ``train.distributed=fsdp`` is refused.
- **Ranks die with their parent.** A rank started by ``accelerate launch`` asks the kernel for SIGKILL when the
  launcher dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the launcher leaves no rank running on.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

from model.config import Config, ConfigError

PR_SET_PDEATHSIG = 1


def launched() -> bool:
    """Whether this process is a rank started by accelerate launch / torchrun."""
    return "LOCAL_RANK" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ


def is_main_rank() -> bool:
    """Rank 0 of the whole job, known before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def die_with_parent() -> None:
    """SIGKILL this process when the process that started it dies (Linux); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os.kill(os.getpid(), signal.SIGKILL)


def _launch_settings() -> dict:
    """What accelerate launch / accelerate config set for this process (empty for a plain python run)."""
    out = {}
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        out["mixed_precision"] = os.environ["ACCELERATE_MIXED_PRECISION"].lower()
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes"):
        out["distributed"] = "fsdp"
    return out


def make_accelerator(cfg: Config, *, tensorboard: bool = False):
    """The Accelerator for this run, after checking the launch against the YAML (see the module docstring)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    launch, t = _launch_settings(), cfg.train
    if "mixed_precision" in launch and launch["mixed_precision"] != t.mixed_precision:
        raise ConfigError(f"accelerate launch set mixed precision {launch['mixed_precision']!r} but the config has "
                          f"train.mixed_precision={t.mixed_precision!r}; launch with --mixed_precision "
                          f"{t.mixed_precision} or set train.mixed_precision={launch['mixed_precision']}")
    if launch.get("distributed") == "fsdp" and t.distributed != "fsdp":
        raise ConfigError(f"accelerate launch is configured for FSDP but the config has "
                          f"train.distributed={t.distributed!r}; set train.distributed=fsdp or launch without FSDP")
    kwargs = {}
    if "mixed_precision" not in launch:
        kwargs["mixed_precision"] = t.mixed_precision
    if t.distributed == "fsdp":
        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(use_orig_params=True)
    if tensorboard:
        kwargs.update(log_with="tensorboard", project_dir=str(Path(cfg.output_dir)))
    accelerator = Accelerator(**kwargs)
    got = "fsdp" if accelerator.distributed_type == DistributedType.FSDP else "ddp"
    if accelerator.num_processes > 1 and got != t.distributed:
        cpu = " (accelerate runs FSDP on GPUs only: CPU processes would silently train with DDP)" \
            if accelerator.device.type == "cpu" else ""
        raise ConfigError(f"train.distributed={t.distributed!r} but accelerate runs "
                          f"{accelerator.distributed_type.value}{cpu}; set train.distributed={got}")
    if accelerator.mixed_precision != t.mixed_precision:
        raise ConfigError(f"the accelerator runs mixed precision {accelerator.mixed_precision!r} but the config "
                          f"has train.mixed_precision={t.mixed_precision!r}")
    return accelerator
