"""frostline: model."""
