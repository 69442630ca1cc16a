"""Logging set-up: stderr or a file, never stdout (stdout carries the protocol)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pygls logs every message it sends at INFO, document text and suggestions included, and
    # httpx logs every request line: both stay quiet unless the user asked for DEBUG.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for noisy in ("pygls", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(quiet)
