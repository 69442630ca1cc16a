"""A cache of the code objects attrs compiles for the classes it builds (issue 16).

Why: ``import lsprotocol.types`` is ~250-430 ms of a cold start, and about half of it is attrs
compiling the source it generates for each of its ~550 classes (``attr._make.
_compile_and_eval``: ``compile(script, filename, "exec")`` then ``eval``; 140-185 ms here, 608
scripts for the whole server). Python caches the bytecode of modules in ``__pycache__`` but
not of generated source: attrs' open issue python-attrs/attrs#575 asks for exactly this. With
the code objects read from a marshal file (~1.2 MB, read, checked and loaded in ~8 ms) instead
of compiled, the import takes 0.49x the time, and a completion asked at once is answered
~0.15 s sooner (``docs/startup.md``, "What changed", 3).

What is patched: ``attr._make._compile_and_eval``, and only when it has the signature this
module was written against (``script, globs, locs=None, filename=""``); otherwise nothing is
(a DEBUG line says why). Its callers look it up in the module at each call, so every class
attrs builds after ``install`` goes through :meth:`BytecodeCache.compile_and_eval`. attrs
registers the script with ``linecache`` before it calls that function, so tracebacks and pdb
still show the generated source. A code object is looked up by ``(filename, blake2b(script))``;
on a miss it is compiled exactly as attrs compiles it: the same source, file name, mode and
optimisation level, and the ``__future__`` flags attrs' own function would pass on (its code's
flags, ``from __future__ import annotations`` in attrs 26), with ``dont_inherit=True`` so this
module's own flags do not leak in. Everything else that decides the code object (the
interpreter's compiler and marshal format, ``-O``, those flags, attrs' version) is in the file's
name, so another interpreter or an upgrade never reads a foreign file.

A script that embeds a per-process value is never stored: attrs writes ``hash(<the class's
file name>)`` into a generated ``__hash__`` (22 of the server's scripts: trio's, outcome's and
cattrs' frozen classes), and string hashes change with every process. Such a script would miss
on every start; it is compiled, counted as ``uncached``, and does not make the file be rewritten.

Trust model: the file holds code that will run in the server. Only the environment decides
where it is (``$XDG_CACHE_HOME/crucible/bytecode``, else ``~/.cache/crucible/bytecode``),
never a workspace file or a setting (the repository being edited is not trusted). It is read
only when it is a regular file (not a symlink) owned by this user and writable by no one else,
in a directory that is also this user's and writable by no one else, opened through that
directory's descriptor so the checks and the read are of the same objects; this is stricter
than ``__pycache__``. The directory is created 0700, the file 0600. The file carries a blake2b
digest of its content, checked before marshal reads it.

Failing safe: no file, a file that fails those checks, a corrupt or truncated one (bad digest,
or marshal raising ``ValueError``, ``EOFError`` or ``TypeError``), or entries of the wrong
types: the cache starts empty and every script is compiled as without it. Any ``OSError``
reading or writing costs the cache, never the server. ``CRUCIBLE_BYTECODE_CACHE=0`` turns it
off.

Bounded: the file is written after the load (:func:`save_in_background`, a thread of its own
started once the server is built), only when some script missed, atomically (a temporary file
renamed over it), and holds only the code objects this load used, so it does not grow across
versions of lsprotocol or Crucible; files of other versions in the directory are removed then.
"""

from __future__ import annotations
import __future__

import functools
import hashlib
import importlib
import logging
import marshal
import operator
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

from crucible.config.paths import default_cache_dir

__all__ = [
    "ENV_SWITCH",
    "BytecodeCache",
    "cache_directory",
    "install",
    "installed",
    "save_in_background",
    "snapshot",
]

logger = logging.getLogger(__name__)

ENV_SWITCH = "CRUCIBLE_BYTECODE_CACHE"
FILE_PREFIX = "attrs-"
MAGIC = b"crucible-attrs-bytecode\n"
DIGEST_BYTES = 16
# The parameters of the function this module replaces, as attrs 26.1 defines it.
EXPECTED_PARAMETERS = ("script", "globs", "locs", "filename")
# Every flag a ``from __future__ import`` sets on a code object: what ``compile`` passes on
# from its caller's code when ``dont_inherit`` is false.
FUTURE_FLAGS: int = functools.reduce(
    operator.or_, (getattr(__future__, name).compiler_flag for name in __future__.all_feature_names)
)
# attrs' file names for generated code: ``<attrs generated {what} {module}.{qualname}>``, with
# ``-N`` before the ``>`` when linecache already held another script under that name.
_GENERATED_NAME = re.compile(r"<attrs generated \S+ (?P<target>.+?)(?:-\d+)?>")

Key = tuple[str, bytes]


def cache_directory(env: Mapping[str, str] = os.environ) -> Path:
    """Where the file lives: a directory of its own under Crucible's cache directory, so it
    can be held 0700 without touching the one the disk cache and the models share."""
    return default_cache_dir(env) / "bytecode"


class BytecodeCache:
    """The code objects of one process's attrs classes: those read from the file, those this
    load used, and its counts. ``compile_and_eval`` is what ``attr._make`` calls."""

    def __init__(self, directory: Path, file_name: str, flags: int) -> None:
        self.directory = directory
        self.file_name = file_name
        self._flags = flags  # the __future__ flags attrs' own compile would use
        self._stored: dict[Key, CodeType] = {}  # read from the file
        self._used: dict[Key, CodeType] = {}  # what this process's classes used: the next file
        self.hits = 0
        self.misses = 0
        self.uncached = 0  # scripts with a per-process value: compiled, never stored
        self.read_ms = 0.0
        self.compile_ms = 0.0
        self._pid = os.getpid()  # a forked child inherits the cache, not the duty to save it
        self._saved = False

    def load(self) -> None:
        """Read the file, if it is there, trusted and intact; otherwise start empty."""
        started = time.perf_counter()
        blob = _read_trusted(self.directory, self.file_name)
        if blob is not None:
            try:
                entries = parse(blob)
            except Exception:  # whatever marshal makes of it, the server starts without it
                logger.warning("bytecode cache: %s not read", self.file_name, exc_info=True)
                entries = None
            if entries is None:
                logger.debug("bytecode cache: %s is corrupt; ignored", self.file_name)
            else:
                self._stored = entries
        self.read_ms = (time.perf_counter() - started) * 1000

    def compile_and_eval(
        self,
        script: str,
        globs: dict[str, Any] | None,
        locs: Mapping[str, object] | None = None,
        filename: str = "",
    ) -> None:
        """What ``attr._make._compile_and_eval`` does, with the code object from the cache."""
        eval(self.code(script, filename), globs, locs)  # attrs' own code, run as attrs runs it

    def code(self, script: str, filename: str) -> CodeType:
        """The code object of ``script``: read from the file, or compiled as attrs compiles it
        (and kept for the next file unless it holds a per-process value)."""
        key = (filename, hashlib.blake2b(script.encode(), digest_size=DIGEST_BYTES).digest())
        code = self._stored.get(key)
        if code is not None:
            self.hits += 1
            self._used[key] = code
            return code
        started = time.perf_counter()
        compiled: CodeType = compile(script, filename, "exec", flags=self._flags, dont_inherit=True)
        self.compile_ms += (time.perf_counter() - started) * 1000
        if per_process(script, filename):
            self.uncached += 1
        else:
            self.misses += 1
            self._used[key] = compiled
        return compiled

    @property
    def pending(self) -> bool:
        """Something missed and is not saved yet, in the process that loaded the file."""
        return self.misses > 0 and not self._saved and os.getpid() == self._pid

    def save(self) -> bool:
        """Write what this load used, when something missed; True when the file was written.
        Never raises for the file's sake: an ``OSError`` only costs the saving."""
        if not self.pending:
            return False
        self._saved = True
        entries = dict(self._used)  # a copy: classes built meanwhile add to _used
        try:
            write(self.directory, self.file_name, entries)
        except OSError as exc:  # a read-only home, a full disk: only the saving is lost
            logger.debug("bytecode cache: not saved (%s)", exc)
            return False
        except Exception:  # a bug: said, and the server goes on without the file
            logger.warning("bytecode cache: not saved", exc_info=True)
            return False
        logger.debug("bytecode cache: saved %d code objects", len(entries))
        return True

    def snapshot(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "uncached": self.uncached}

    def describe(self) -> str:
        return (
            f"{self.hits} hits, {self.misses} misses, {self.uncached} uncached; file read in"
            f" {self.read_ms:.1f} ms ({len(self._stored)} entries); {self.compile_ms:.1f} ms"
            " compiling"
        )


def per_process(script: str, filename: str) -> bool:
    """Whether attrs wrote this process's ``hash`` of the class's name into the script (a
    generated ``__hash__``): string hashes differ between processes, so storing it is useless."""
    found = _GENERATED_NAME.fullmatch(filename)
    if found is None:
        return False
    type_hash = hash(f"<attrs generated hash {found.group('target')}>")
    return f"{type_hash}," in script


_installed: BytecodeCache | None = None
_install_lock = threading.Lock()


def install(env: Mapping[str, str] = os.environ) -> BytecodeCache | None:
    """Patch attrs to use the cache; the cache, or None when it is off or cannot apply.
    Idempotent: a second call (a forked child's own load) returns the first one's cache."""
    global _installed
    with _install_lock:
        if _installed is not None:
            return _installed
        if env.get(ENV_SWITCH, "1") == "0":
            logger.debug("bytecode cache: off (%s=0)", ENV_SWITCH)
            return None
        if not hasattr(os, "geteuid") or not hasattr(os, "O_NOFOLLOW"):
            logger.debug("bytecode cache: no owner checks on this platform; off")
            return None
        try:
            make = importlib.import_module("attr._make")
        except ImportError:
            logger.debug("bytecode cache: attrs is not installed; off")
            return None
        original = getattr(make, "_compile_and_eval", None)
        if not _expected_shape(original):
            logger.debug("bytecode cache: attrs' _compile_and_eval is not the one expected; off")
            return None
        assert isinstance(original, FunctionType)
        flags = original.__code__.co_flags & FUTURE_FLAGS
        cache = BytecodeCache(cache_directory(env), file_name(make, flags), flags)
        cache.load()
        make._compile_and_eval = cache.compile_and_eval  # type: ignore[attr-defined]
        _installed = cache
        return cache


def installed() -> BytecodeCache | None:
    return _installed


def snapshot() -> dict[str, int] | None:
    """``crucible/status`` ``startup.bytecode_cache``: its counts, or None when it is off."""
    return None if _installed is None else _installed.snapshot()


def save_in_background() -> None:
    """Once the server is built: log the counts, and write the file from a thread of its own
    when something missed (a one-off after an upgrade), off the path to the first answer. Not
    a daemon thread: an exit right after waits for the write (~10 ms) rather than cutting it."""
    cache = _installed
    if cache is None:
        return
    logger.debug("bytecode cache: %s", cache.describe())
    if cache.pending:
        threading.Thread(target=cache.save, name="crucible-bytecode-save").start()


def _expected_shape(function: object) -> bool:
    if not isinstance(function, FunctionType):
        return False
    code = function.__code__
    return (
        code.co_varnames[: code.co_argcount] == EXPECTED_PARAMETERS
        and code.co_kwonlyargcount == 0
        and not code.co_flags & (0x04 | 0x08)  # CO_VARARGS, CO_VARKEYWORDS
        and len(function.__defaults__ or ()) == 2
    )


def file_name(make: ModuleType, flags: int) -> str:
    """The file for this interpreter, marshal format, ``-O`` level, attrs version and flags."""
    version = attrs_version(make)
    return (
        f"{FILE_PREFIX}{version}-{sys.implementation.cache_tag}-marshal{marshal.version}"
        f"-opt{sys.flags.optimize}-flags{flags:x}.bin"
    )


def attrs_version(make: ModuleType) -> str:
    """attrs' version from its ``dist-info`` folder beside the package (``attr.__version__``
    asks importlib.metadata, ~8 ms), plus the size and mtime of ``_make.py`` (as a ``.pyc``
    checks its source), which also tells a patched or editable attrs apart."""
    source = getattr(make, "__file__", None) or ""
    try:
        info = os.stat(source)
        stamp = f"{info.st_size:x}{info.st_mtime_ns:x}"
    except OSError:
        stamp = "0"
    site = Path(source).parent.parent
    version = "unknown"
    try:
        for entry in os.listdir(site):
            if entry.startswith("attrs-") and entry.endswith(".dist-info"):
                version = entry.removeprefix("attrs-").removesuffix(".dist-info")
                break
    except OSError:
        pass
    return f"{version}-{hashlib.blake2b(stamp.encode(), digest_size=4).hexdigest()}"


def _owned_private(info: os.stat_result) -> bool:
    """This user's, and writable by no one else."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_trusted(directory: Path, name: str) -> bytes | None:
    try:
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None  # not there yet: the first start
    try:
        if not _owned_private(os.fstat(directory_fd)):
            logger.debug("bytecode cache: %s is not this user's alone; not read", directory)
            return None
        try:
            # O_NOFOLLOW: not through a symlink; O_NONBLOCK: a FIFO would not hang the load.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory_fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or not _owned_private(info):
                logger.debug("bytecode cache: %s is not this user's alone; not read", name)
                return None
            return file.read()
    except OSError as exc:
        logger.debug("bytecode cache: not read (%s)", exc)
        return None
    finally:
        os.close(directory_fd)


def encode(entries: dict[Key, CodeType]) -> bytes:
    payload = marshal.dumps(entries)
    return MAGIC + hashlib.blake2b(payload, digest_size=DIGEST_BYTES).digest() + payload


def parse(blob: bytes) -> dict[Key, CodeType] | None:
    """The entries of a file's content, or None when it is not an intact file of this kind."""
    start = len(MAGIC) + DIGEST_BYTES
    if len(blob) < start or not blob.startswith(MAGIC):
        return None
    payload = memoryview(blob)[start:]
    if hashlib.blake2b(payload, digest_size=DIGEST_BYTES).digest() != blob[len(MAGIC) : start]:
        return None
    try:
        entries = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(entries, dict):
        return None
    for key, code in entries.items():
        if not (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[0], str)
            and isinstance(key[1], bytes)
            and isinstance(code, CodeType)
        ):
            return None
    return entries


def write(directory: Path, name: str, entries: dict[Key, CodeType]) -> None:
    """Write the file atomically in a private directory, then remove other versions' files."""
    blob = encode(entries)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = os.fstat(directory_fd)
        if info.st_uid != os.geteuid():
            raise PermissionError(f"{directory} belongs to uid {info.st_uid}")
        if info.st_mode & 0o077:  # ours, but open to others: made private again
            os.fchmod(directory_fd, 0o700)
        temporary = f"{name}.{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(temporary, flags, 0o600, dir_fd=directory_fd)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(blob)
            os.replace(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=directory_fd)
            except OSError:
                pass
            raise
        for entry in os.listdir(directory_fd):
            if entry.startswith(FILE_PREFIX) and entry != name:
                try:
                    os.unlink(entry, dir_fd=directory_fd)
                except OSError:
                    pass  # another process's, just renamed or removed: its business
    finally:
        os.close(directory_fd)
