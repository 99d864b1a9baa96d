"""Pieces of the protocol splits (see shards/splits.py): class-name rules and the import of published split files."""
