"""frostline: pipeline."""
