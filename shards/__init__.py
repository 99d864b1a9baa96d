"""frostline: shards."""
