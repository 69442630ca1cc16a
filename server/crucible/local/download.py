"""Downloading a model file: resumable, verified, never a partial file under the final name.

``download(source, progress=...)`` writes to ``NAME.part`` next to the final path and renames
it only once it is complete and its SHA-256 matches (``os.replace``, atomic on one file
system). A connection cut mid-file is resumed with an HTTP ``Range`` request from the bytes
already there, up to ``RETRIES`` times in one call; a ``.part`` left by an earlier, interrupted
call is resumed the same way. A server that ignores ``Range`` (200 instead of 206) is read from
the start again. A digest mismatch deletes the ``.part`` (its bytes are wrong, resuming them
would stay wrong) and raises.

It is blocking (``urllib``, stdlib): the command line calls it directly, the language server in
a thread. ``urllib`` follows redirects (Hugging Face answers 302 to its CDN) and takes proxies
from the environment (``https_proxy``, ``http_proxy``, ``no_proxy``), as users behind a
corporate proxy expect; no key or header of Crucible's goes with the request.

Errors::

    DownloadError (CrucibleError)   the transfer failed (the .part stays, to resume)
    ├── ChecksumMismatch            complete, but not the bytes expected (the .part is deleted)
    └── UnverifiedDownload          no SHA-256 to check against and ``verify`` was asked
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path

from crucible import __version__
from crucible.errors import CrucibleError
from crucible.local.models import ModelSource

log = logging.getLogger(__name__)

RETRIES = 3  # resumptions of a cut transfer within one call
_CHUNK = 1 << 20
_TIMEOUT_S = 30.0  # per socket operation, not for the whole file

# (bytes so far, total bytes or None when the server does not say)
Progress = Callable[[int, int | None], None]


class DownloadError(CrucibleError):
    """The model could not be downloaded; the message says what to do."""


class ChecksumMismatch(DownloadError):
    pass


class UnverifiedDownload(DownloadError):
    pass


class _Cut(Exception):
    """The transfer stopped before the end (a resumable failure)."""


def download(
    source: ModelSource,
    *,
    verify: bool = True,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Download ``source`` to ``source.path`` (module docstring); returns that path."""
    if not source.url:
        raise DownloadError(f"{source.name}: no URL to download it from")
    if verify and not source.sha256:
        raise UnverifiedDownload(
            f"{source.name}: no SHA-256 to check the download against; set sha256 for it, or"
            " pull with --no-verify to accept whatever the server sends"
        )
    source.path.parent.mkdir(parents=True, exist_ok=True)
    attempts = 0
    while True:
        try:
            _transfer(source, progress, cancel)
            break
        except _Cut as exc:
            attempts += 1
            have = _size(source.partial)
            if attempts > RETRIES:
                raise DownloadError(
                    f"{source.name}: the download stopped at {have} bytes ({exc}); run the same"
                    " command again to resume it"
                ) from None
            log.info("%s: download cut at %d bytes (%s); resuming", source.name, have, exc)
    _check(source)
    os.replace(source.partial, source.path)
    return source.path


def _transfer(
    source: ModelSource, progress: Progress | None, cancel: threading.Event | None
) -> None:
    """Append the rest of the file to ``.part``; returns once the server sent all of it."""
    offset = _size(source.partial)
    if source.size is not None and offset > source.size:
        offset = 0  # longer than the file can be: not a prefix of it
    request = urllib.request.Request(
        source.url, headers={"User-Agent": f"crucible-lsp/{__version__}"}
    )
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and offset == source.size:
            return  # the .part is already whole
        raise DownloadError(f"{source.name}: {source.url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Cut(str(getattr(exc, "reason", exc))) from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored Range: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else source.size
        with source.partial.open("r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            done = offset
            if progress is not None:
                progress(done, total)
            while True:
                if cancel is not None and cancel.is_set():
                    raise DownloadError(f"{source.name}: download cancelled")
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, HTTPException) as exc:
                    raise _Cut(str(exc) or type(exc).__name__) from None
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise _Cut(f"connection closed after {done} of {total} bytes")


def _check(source: ModelSource) -> None:
    """The complete ``.part`` has the expected size and digest, or it is deleted."""
    size = _size(source.partial)
    problem = ""
    if source.size is not None and size != source.size:
        problem = f"{size} bytes instead of {source.size}"
    elif source.sha256:
        digest = hashlib.sha256()
        with source.partial.open("rb") as data:
            while block := data.read(_CHUNK):
                digest.update(block)
        if digest.hexdigest() != source.sha256:
            problem = f"SHA-256 {digest.hexdigest()} instead of {source.sha256}"
    if problem:
        source.partial.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{source.name}: the download is not the file expected ({problem}); it was deleted"
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
