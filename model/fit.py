"""Does a configuration fit its data and its weights? Every setting to change, named in one message.

A preset is written for its paper setting (ViT-B/16 at 224 px, thousands of clips, 12 or 22 epochs); run on a few
clips, a short schedule or a small CLIP it does not fit in several ways at once. `problems` lists them all, each
as the override that fixes it, and `check` raises one ConfigError with the whole list, so a user edits once:

    the configuration does not fit the data or the weights; change:
      train.warmup_epochs=0      (must be below train.epochs=1)
      train.global_batch=4       (the training split gives 2 micro-batches of 2 clips per process; ...)
      data.crop_size=64          (the weights are CLIP frostline-tiny, which takes 64x64 images)

The architecture named is the one the weights hold (model.clip.ClipInfo.name), not the preset's model.clip.
"""
from __future__ import annotations

from model.config import Config, ConfigError, check, schedule_problems  # noqa: F401  (check, schedule_problems: this module's API, kept in model.config so that validate needs no import of this one)


def batch_problems(cfg: Config, micro_batches: int | None, num_processes: int) -> list[tuple[str, str]]:
    """(override, reason) when train.global_batch is no multiple of micro_batch x processes, or when the training
    split (`micro_batches` per process and epoch, None: not known yet) cannot fill one optimiser step."""
    t = cfg.train
    per_step = t.micro_batch * num_processes
    fits_steps = micro_batches is None or t.global_batch <= per_step * micro_batches
    if t.global_batch % per_step == 0 and fits_steps:
        return []
    most = per_step * (micro_batches if micro_batches is not None else max(1, t.global_batch // per_step))
    suggested = min(most, max(per_step, t.global_batch // per_step * per_step))
    why = [f"was {t.global_batch}"]
    if t.global_batch % per_step:
        why.append(f"must be a multiple of train.micro_batch={t.micro_batch} x {num_processes} process(es)")
    if not fits_steps:
        why.append(f"the training split gives {micro_batches} micro-batch(es) of {t.micro_batch} clips per process "
                   f"and epoch, fewer than one optimiser step needs")
    return [(f"train.global_batch={suggested}", "; ".join(why))]


def crop_problems(cfg: Config, image_size: int, model_name: str) -> list[tuple[str, str]]:
    """(override, reason) when the crop is not the input size of the CLIP the weights hold."""
    d, out = cfg.data, []
    if d.crop_size != image_size:
        out.append((f"data.crop_size={image_size}", f"was {d.crop_size}; the weights are CLIP {model_name}, which "
                                                     f"takes {image_size}x{image_size} images"))
    lo, hi = d.short_side_range
    if d.crop_size != image_size and lo >= d.crop_size:  # the preset's jitter, scaled with its crop
        scaled = [round(v * image_size / d.crop_size) for v in (lo, hi)]
        out.append((f"data.short_side_range=[{scaled[0]},{scaled[1]}]",
                    f"was [{lo},{hi}] for a {d.crop_size}-pixel crop; the same jitter for {image_size} pixels"))
    elif lo < image_size or hi < lo:
        out.append((f"data.short_side_range=[{image_size},{max(hi, image_size * 8 // 7)}]",
                    f"was [{lo},{hi}]; training resizes the short side into this range before the "
                    f"{image_size}-pixel crop"))
    return out


