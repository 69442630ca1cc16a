"""The bytecode cache of attrs' generated methods (``runtime/bytecode_cache.py``).

What attrs compiles is patched process-wide, so everything that installs the cache runs in a
child interpreter (``_run``), with its own cache directory; the file's checks run here on
:class:`BytecodeCache` objects, which patch nothing.
"""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

from crucible.runtime import bytecode_cache
from crucible.runtime.bytecode_cache import BytecodeCache, encode, parse, per_process

ROOT = Path(__file__).resolve().parents[2]
NAME = "attrs-test.bin"
SCRIPT = "def __init__(self, x):\n    self.x = x\n"
FILENAME = "<attrs generated methods example.Point>"

# In a child: the cache installed as load_server installs it, lsprotocol imported through it
# (plus one frozen class of its own: a __hash__ with this process's hash in it), the file
# saved; then every script compiled once more by attrs' own function (its eval caught), and
# the two code objects compared: equal, and the same file name, flags and lines all the way
# down.
EXACT = """
import json, os, sys
import attr, attr._make as make
from crucible.runtime import bytecode_cache

original = make._compile_and_eval
cache = bytecode_cache.install()
scripts = []

def recording(script, globs, locs=None, filename=""):
    scripts.append((filename, script))
    cache.compile_and_eval(script, globs, locs, filename)

make._compile_and_eval = recording
import lsprotocol.types

@attr.frozen
class Pinned:
    x: int

written = cache.save()
counts = cache.snapshot()
caught = []
make.eval = lambda code, *rest: caught.append(code)
for filename, script in scripts:
    original(script, {}, {}, filename)
del make.eval

def same(mine, theirs):
    if not (
        mine == theirs
        and mine.co_filename == theirs.co_filename
        and mine.co_flags == theirs.co_flags
        and mine.co_firstlineno == theirs.co_firstlineno
        and mine.co_qualname == theirs.co_qualname
    ):
        return False
    nested = [(a, b) for a, b in zip(mine.co_consts, theirs.co_consts) if hasattr(a, "co_code")]
    return all(same(a, b) for a, b in nested)

different = [
    f for (f, s), theirs in zip(scripts, caught) if not same(cache.code(s, f), theirs)
]
print(json.dumps({**counts, "written": written, "compared": len(caught),
                  "different": different, "file": cache.file_name}))
"""


def _run(code: str, cache_home: Path, **env: str) -> dict[str, Any]:
    """Run ``code`` in a child interpreter with this checkout's package; its last stdout line,
    parsed as JSON."""
    process = subprocess.run(
        [sys.executable, "-c", code],
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'server'}{os.pathsep}{ROOT}",
            "XDG_CACHE_HOME": str(cache_home),
            **env,
        },
        cwd=cache_home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    found: dict[str, Any] = json.loads(process.stdout.splitlines()[-1])
    return found


def test_a_cold_start_writes_the_file_and_a_warm_one_reads_it(tmp_path: Path) -> None:
    home = tmp_path / "cache"
    cold = _run(EXACT, home)
    assert cold["hits"] == 0
    assert cold["misses"] >= 500  # lsprotocol's classes
    assert cold["uncached"] == 1  # Pinned's __hash__ holds this process's hash of its name
    assert cold["written"] is True
    directory = home / "crucible" / "bytecode"
    file = directory / cold["file"]
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.stat(file).st_mode & 0o777 == 0o600
    before = os.stat(file)

    warm = _run(EXACT, home)
    assert warm["hits"] == cold["misses"]
    assert warm["misses"] == 0
    assert warm["uncached"] == 1
    assert warm["written"] is False  # nothing missed: the file is left as it is
    after = os.stat(file)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_code_objects_read_from_the_file_are_those_attrs_compiles(tmp_path: Path) -> None:
    home = tmp_path / "cache"
    cold = _run(EXACT, home)  # compiled by the cache, compared with attrs' own
    assert cold["compared"] >= 500
    assert cold["different"] == []
    warm = _run(EXACT, home)  # read from the file, compared with attrs' own
    assert warm["hits"] >= 500
    assert warm["compared"] == cold["compared"]
    assert warm["different"] == []


def test_the_switch_turns_it_off(tmp_path: Path) -> None:
    code = """
import json
import attr._make as make
original = make._compile_and_eval
from crucible.lsp.early_start import load_server
from crucible.runtime import bytecode_cache
load_server()(None)
print(json.dumps({"installed": bytecode_cache.installed() is not None,
                  "patched": make._compile_and_eval is not original,
                  "status": bytecode_cache.snapshot()}))
"""
    found = _run(code, tmp_path / "cache", CRUCIBLE_BYTECODE_CACHE="0")
    assert found == {"installed": False, "patched": False, "status": None}
    assert not (tmp_path / "cache" / "crucible" / "bytecode").exists()


@pytest.mark.parametrize(
    "parameters",
    [
        'script, globs, locs=None, filename="", *, optimize=-1',
        'source, globs, locs=None, filename=""',
        "script, globs, locs, filename",
        "script, globs, *args",
    ],
)
def test_an_unexpected_attrs_is_left_alone(tmp_path: Path, parameters: str) -> None:
    code = f"""
import json
import attr._make as make
def _compile_and_eval({parameters}):
    pass
make._compile_and_eval = _compile_and_eval
from crucible.runtime import bytecode_cache
cache = bytecode_cache.install()
print(json.dumps({{"cache": cache is not None,
                  "patched": make._compile_and_eval is not _compile_and_eval}}))
"""
    assert _run(code, tmp_path / "cache") == {"cache": False, "patched": False}


def test_load_server_installs_it_and_the_factory_saves_it(tmp_path: Path) -> None:
    code = """
import json, threading
from crucible.lsp.early_start import load_server
from crucible.runtime import bytecode_cache
load_server()(None)
for thread in threading.enumerate():
    if thread.name == "crucible-bytecode-save":
        thread.join()
cache = bytecode_cache.installed()
print(json.dumps({**bytecode_cache.snapshot(), "file": cache.file_name}))
"""
    home = tmp_path / "cache"
    cold = _run(code, home)
    assert cold["misses"] > 500 and cold["hits"] == 0
    assert (home / "crucible" / "bytecode" / cold["file"]).is_file()
    warm = _run(code, home)
    assert warm["hits"] == cold["misses"] and warm["misses"] == 0


# -- the file's checks, on BytecodeCache objects (nothing patched) ------------------------


def _saved(directory: Path) -> BytecodeCache:
    cache = BytecodeCache(directory, NAME, 0)
    cache.code(SCRIPT, FILENAME)
    assert cache.save()
    return cache


def _loaded(directory: Path) -> BytecodeCache:
    cache = BytecodeCache(directory, NAME, 0)
    cache.load()
    cache.code(SCRIPT, FILENAME)
    return cache


def test_a_saved_file_is_read_back(tmp_path: Path) -> None:
    _saved(tmp_path / "bc")
    cache = _loaded(tmp_path / "bc")
    assert cache.snapshot() == {"hits": 1, "misses": 0, "uncached": 0}


def test_a_group_or_other_writable_file_is_not_read(tmp_path: Path) -> None:
    for mode in (0o620, 0o602):
        _saved(tmp_path / "bc")
        os.chmod(tmp_path / "bc" / NAME, mode)
        assert _loaded(tmp_path / "bc").snapshot()["hits"] == 0, oct(mode)


def test_a_file_in_a_shared_directory_is_not_read(tmp_path: Path) -> None:
    _saved(tmp_path / "bc")
    os.chmod(tmp_path / "bc", 0o770)
    assert _loaded(tmp_path / "bc").snapshot()["hits"] == 0
    # Saving makes the directory (ours) private again.
    cache = _loaded(tmp_path / "bc")
    assert cache.save()
    assert os.stat(tmp_path / "bc").st_mode & 0o777 == 0o700
    assert _loaded(tmp_path / "bc").snapshot()["hits"] == 1


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    _saved(tmp_path / "elsewhere")
    (tmp_path / "bc").mkdir(mode=0o700)
    (tmp_path / "bc" / NAME).symlink_to(tmp_path / "elsewhere" / NAME)
    assert _loaded(tmp_path / "bc").snapshot()["hits"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_another_users_file_or_directory_is_not_read(tmp_path: Path) -> None:
    _saved(tmp_path / "bc")
    os.chown(tmp_path / "bc" / NAME, 4242, -1)
    assert _loaded(tmp_path / "bc").snapshot()["hits"] == 0
    _saved(tmp_path / "bc2")
    os.chown(tmp_path / "bc2", 4242, -1)
    assert _loaded(tmp_path / "bc2").snapshot()["hits"] == 0
    cache = _loaded(tmp_path / "bc2")
    assert not cache.save()  # nor written into


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "flipped", "empty", "truncated-marshal", "not-code"],
)
def test_a_corrupt_file_is_ignored_and_rewritten(tmp_path: Path, damage: str) -> None:
    directory = tmp_path / "bc"
    _saved(directory)
    path = directory / NAME
    blob = path.read_bytes()
    head = len(bytecode_cache.MAGIC) + bytecode_cache.DIGEST_BYTES
    if damage == "garbage":
        blob = os.urandom(len(blob))
    elif damage == "truncated":
        blob = blob[: len(blob) // 2]
    elif damage == "flipped":
        blob = blob[:-10] + bytes([blob[-10] ^ 0xFF]) + blob[-9:]
    elif damage == "empty":
        blob = b""
    elif damage == "truncated-marshal":  # a digest that matches a cut marshal stream
        payload = blob[head : head + (len(blob) - head) // 2]
        blob = _with_digest(payload)
    else:  # intact marshal, but not a table of code objects
        blob = _with_digest(marshal.dumps({(FILENAME, b"x" * 16): "not code"}))
    path.write_bytes(blob)
    os.chmod(path, 0o600)
    assert parse(blob) is None
    cache = _loaded(directory)
    assert cache.snapshot() == {"hits": 0, "misses": 1, "uncached": 0}
    assert cache.save()
    assert _loaded(directory).snapshot()["hits"] == 1


def _with_digest(payload: bytes) -> bytes:
    import hashlib

    digest = hashlib.blake2b(payload, digest_size=bytecode_cache.DIGEST_BYTES).digest()
    return bytecode_cache.MAGIC + digest + payload


def test_another_versions_file_is_not_read_and_is_removed(tmp_path: Path) -> None:
    directory = tmp_path / "bc"
    other = BytecodeCache(directory, "attrs-25.0.0-cpython-310-marshal4.bin", 0)
    other.code(SCRIPT, FILENAME)
    assert other.save()
    cache = _loaded(directory)
    assert cache.snapshot()["hits"] == 0
    assert cache.save()
    assert sorted(os.listdir(directory)) == [NAME]


def test_nothing_missed_nothing_written(tmp_path: Path) -> None:
    _saved(tmp_path / "bc")
    cache = _loaded(tmp_path / "bc")
    assert not cache.save()


def test_an_unwritable_place_costs_only_the_saving(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cache = BytecodeCache(tmp_path / "file" / "bc", NAME, 0)
    cache.load()
    cache.code(SCRIPT, FILENAME)
    assert cache.save() is False  # an OSError inside, not raised


def test_the_file_holds_only_what_this_load_used(tmp_path: Path) -> None:
    directory = tmp_path / "bc"
    first = BytecodeCache(directory, NAME, 0)
    first.code(SCRIPT, FILENAME)
    first.code("def __repr__(self):\n    return 'P'\n", FILENAME)
    assert first.save()
    second = BytecodeCache(directory, NAME, 0)
    second.load()
    second.code(SCRIPT, FILENAME)  # a hit
    second.code("def __eq__(self, other):\n    return True\n", FILENAME)  # a miss
    assert second.save()
    entries = parse((directory / NAME).read_bytes())
    assert entries is not None and len(entries) == 2
    assert all(isinstance(code, CodeType) for code in entries.values())
    assert encode(entries)[: len(bytecode_cache.MAGIC)] == bytecode_cache.MAGIC


def test_a_hash_of_this_process_is_told_apart() -> None:
    target = "example.Point"
    line = f"        {hash(f'<attrs generated hash {target}>')},"
    script = f"def __hash__(self):\n    return hash((\n{line}\n        self.x,\n    ))\n"
    assert per_process(script, f"<attrs generated methods {target}>")
    assert per_process(script, f"<attrs generated methods {target}-1>")  # linecache's rename
    assert per_process(script, f"<attrs generated __hash__ {target}>")
    assert not per_process(SCRIPT, f"<attrs generated methods {target}>")
    assert not per_process(script, "<string>")


def test_a_forked_child_leaves_the_saving_to_the_process_that_loaded(tmp_path: Path) -> None:
    """The test suite's fork server (and any pre-fork setup) loads once and forks servers:
    they inherit the cache, and must not each write the file."""
    code = """
import json, os
from crucible.runtime import bytecode_cache
cache = bytecode_cache.install()
import lsprotocol.types
pid = os.fork()
if pid == 0:
    os._exit(0 if not cache.pending and not cache.save() else 1)
_, status = os.waitpid(pid, 0)
print(json.dumps({"child_saved": os.waitstatus_to_exitcode(status) != 0,
                  "parent_pending": cache.pending, "parent_saved": cache.save()}))
"""
    found = _run(code, tmp_path / "cache")
    assert found == {"child_saved": False, "parent_pending": True, "parent_saved": True}
