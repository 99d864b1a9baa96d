"""The CLIP architectures frostline builds by name: open_clip's own, plus the project's configs
(model/model_configs/*.json: frostline-tiny, -small, -world), registered with open_clip once, on first use, so
their names work everywhere an open_clip name does (model.clip builds them, model.weights matches files to them).
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_registered = False


def register_configs() -> list[str]:
    """Register model/model_configs/*.json with open_clip (once); return their names."""
    global _registered
    if not _registered:
        import open_clip
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
