"""Write one batch as a PNG grid (a row per clip, a column per frame, labelled with class names): what the model sees.

    python tools/show_batch.py --split SPLIT.parquet --out batch.png [--test] [--device cpu|gpu]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from shards.cli import run, setup_logging, tool_parser  # noqa: E402
from pipeline.loader import LoaderConfig, build_loader  # noqa: E402
from pipeline.sampling import CLIP_MEAN, CLIP_STD  # noqa: E402

LABEL_H = 14


def to_images(clips: torch.Tensor) -> np.ndarray:
    """B x T x 3 x H x W normalised -> B x T x H x W x 3 uint8 (undo CLIP normalisation)."""
    mean = torch.tensor(CLIP_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 1, 3, 1, 1)
    x = clips.detach().float().cpu() * std + mean
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()


def grid(images: np.ndarray, captions: list[str]) -> Image.Image:
    B, T, H, W, _ = images.shape
    canvas = Image.new("RGB", (T * W, B * (H + LABEL_H)), "black")
    draw = ImageDraw.Draw(canvas)
    for b in range(B):
        y = b * (H + LABEL_H)
        draw.text((2, y + 1), captions[b], fill="white")
        for t in range(T):
            canvas.paste(Image.fromarray(images[b, t]), (t * W, y + LABEL_H))
    return canvas


def main(argv=None) -> None:
    ap = tool_parser(__doc__)
    ap.add_argument("--split", required=True, help="split Parquet file or shard store")
    ap.add_argument("--out", default="batch.png")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--test", action="store_true", help="test mode (views, centre crop) instead of training")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--frame-stride", type=int, default=16)
    ap.add_argument("--sampling", choices=["dense", "segment"], default="dense")
    ap.add_argument("--crop-size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if os.path.splitext(args.out)[1].lower() not in Image.registered_extensions():
        ap.error(f"--out {args.out!r}: name an image file (.png, .jpg, ...)")
    setup_logging(args.quiet, args.verbose)

    cfg = LoaderConfig(device=args.device, batch_size=args.batch_size, num_frames=args.num_frames,
                       frame_stride=args.frame_stride, sampling=args.sampling, crop_size=args.crop_size,
                       short_side_range=(args.crop_size, round(args.crop_size * 256 / 224)), train=not args.test,
                       seed=args.seed)
    loader = build_loader(args.split, cfg)
    batch = next(iter(loader))
    names = {lb: name for lb, name, _ in loader.classes}
    captions = []
    for i, (key, lb) in enumerate(zip(batch.keys, batch.labels.tolist())):
        view = f" view {int(batch.views[i])}" if batch.views is not None else ""
        frames = ",".join(str(f) for f in batch.frames[i].tolist())
        captions.append(f"{names.get(lb, lb)} | {key}{view} | frames {frames}")
    grid(to_images(batch.clips), captions).save(args.out)
    loader.close()
    print(f"wrote {args.out}: {len(captions)} clips x {args.num_frames} frames")
    for c in captions:
        print(" ", c)


if __name__ == "__main__":
    sys.exit(run(main, prog="show_batch"))
