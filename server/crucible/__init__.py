"""Crucible: an AI language server."""

__version__ = "0.1.0"
