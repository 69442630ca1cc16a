"""How big the managed llama.cpp server is run: threads from the cores, context from memory.

Pure functions of what the machine has, so tests give them any machine. The choices:

- threads: llama.cpp's token generation is bound by memory bandwidth and scales with physical
  cores, not hyper-threads; half the logical CPUs is about the physical cores on common
  laptops. The editor and Crucible keep a core: with fewer than 4 CPUs, one less than all.
  At most 8: past that, a 0.5-1.5 B model gains little and the machine is taken from the user.
- context: the KV cache of Qwen2.5-Coder 1.5B is ~28 KiB per token in f16 (28 layers x 2 KV
  heads x 128 dims x 2 (K and V) x 2 bytes), so 8192 tokens cost ~230 MB; the 2 slots share
  it, 4096 tokens each, enough for Crucible's default window (prefix, suffix and neighbours).
  Smaller machines get less: 4096 from 4 GiB of memory, 2048 below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PARALLEL = 2  # slots: a keystroke's request and a prefetch (or a hedge) run side by side
_GIB = 1024**3


@dataclass(frozen=True, slots=True)
class ServerSize:
    threads: int
    ctx_size: int  # total, shared by the PARALLEL slots
    parallel: int = PARALLEL


def machine_cpus() -> int:
    """CPUs this process may run on (its affinity), else all of them."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return os.cpu_count() or 1


def machine_memory_bytes() -> int | None:
    """Physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def auto_threads(cpus: int) -> int:
    if cpus < 4:
        return max(1, cpus - 1)
    return min(8, cpus // 2)


def auto_ctx_size(memory_bytes: int | None) -> int:
    if memory_bytes is None or memory_bytes >= 8 * _GIB:
        return 8192
    return 4096 if memory_bytes >= 4 * _GIB else 2048


def server_size(threads: int, ctx_size: int, *, cpus: int, memory_bytes: int | None) -> ServerSize:
    """The configured ``threads`` / ``ctx_size`` (0: choose) made concrete for this machine."""
    return ServerSize(
        threads=threads or auto_threads(cpus),
        ctx_size=ctx_size or auto_ctx_size(memory_bytes),
    )
