#!/usr/bin/env python
"""Convert any weights file frostline reads into open_clip's checkpoint format, and say what was in it.

    python tools/convert_weights.py ~/.cache/clip/ViT-B-16.pt vit_b16_openai.pt
    python tools/convert_weights.py swa_2_22.pth froster_student.pt            # FROSTER: the student only
    python tools/convert_weights.py vifi_clip_k400.pth vifi.pt --base ~/.cache/clip/ViT-B-16.pt
    python tools/convert_weights.py runs/k400 k400_student.pt        # a run folder: the weights it trained

IN: a frostline run folder (its averaged weights, or its newest epoch before the average exists), OpenAI's
TorchScript archive (opened because you name it), a FROSTER / Open-VCLIP PySlowFast checkpoint, a
ViFi-CLIP checkpoint, an open_clip ``{"state_dict"}`` file, a plain state dict or safetensors (model.weights).
OUT: ``{"state_dict", "model_name"}``, which plain open_clip loads::

    model = open_clip.create_model(MODEL_NAME, pretrained=OUT)

MODEL_NAME carries '-quickgelu' when the weights need QuickGELU. Exit status 2 on a file that cannot be read.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shards.cli import add_alias, setup_logging, tool_parser  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = tool_parser(__doc__)
    ap.add_argument("input", help="weights file in any supported format, or a run folder")
    ap.add_argument("output", help="open_clip checkpoint to write")
    ap.add_argument("--model", dest="clip", metavar="NAME", default=None, help="open_clip model name (default: the one the tensors fit)")
    ap.add_argument("--base", default=None, help="weights for tensors IN lacks (ViFi-CLIP's token table; "
                                                  "default: the 'openai' tag from the hub cache)")
    add_alias(ap, "--clip", "--model")
    a = ap.parse_args(argv)
    setup_logging(a.quiet, a.verbose)

    import torch
    from model.clip import export_clip, load_clip
    from model.inputs import check_output_file
    check_output_file(a.output)
    from model.inference import run_weights
    try:
        source = run_weights(a.input)[1] if Path(a.input).is_dir() else Path(a.input)
        model, _, info = load_clip(a.clip, source, base=a.base)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    export_clip(model.state_dict(), a.output, info.name, quick_gelu=info.quick_gelu, boundary=info.boundary,
                temporal=info.temporal)
    name = torch.load(a.output, map_location="cpu", weights_only=True)["model_name"]
    w = info.weights
    print(json.dumps({"input": a.input, "weights": str(source), "format": w.kind, "architecture": info.name,
                      "quick_gelu": info.quick_gelu,
                      "boundary": w.boundary, "temporal": w.temporal, "tensors": len(w.state_dict),
                      "projectors": {k: list(v) for k, v in w.projectors.items()}, "left_out": w.left_out,
                      "filled": w.missing, "output": a.output, "model_name": name}, indent=2))
    print(f"load it with: open_clip.create_model({name!r}, pretrained={a.output!r})")
    return 0


if __name__ == "__main__":
    from shards.cli import run
    sys.exit(run(main))
