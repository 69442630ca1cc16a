"""In-process cost of the cache's lookups, in microseconds per call.

Measured on the real objects the server builds (``TieredCache`` without a disk level, its
``MemoryCache``, ``completion_key`` over a real ``FimRequest``), with a plain ``dict.get`` over
the same keys as the baseline. Each figure is the best of a few rounds of many calls, so it
includes the Python call itself but not the noise of one slow round.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from crucible.cache.keys import completion_key
from crucible.cache.memory import MemoryCache
from crucible.cache.tiered import TieredCache
from crucible.completion.suggestion import Suggestion
from crucible.providers.base import FimRequest

_IDENTITY = [["bench", "ollama", "qwen2.5-coder:1.5b-base", "http://127.0.0.1:11434", "native"]]
_LINE = "    total = compute(values[index], weights[index]) + offset  # keep the running sum\n"
_ROUNDS = 5


def _window(chars: int, seed: int) -> str:
    """About ``chars`` characters of code, made distinct by ``seed``."""
    text = f"# file {seed}\n" + _LINE * (chars // len(_LINE) + 1)
    return text[:chars]


def _request(prefix_chars: int, suffix_chars: int, seed: int) -> FimRequest:
    return FimRequest(
        prefix=_window(prefix_chars, seed),
        suffix=_window(suffix_chars, -seed),
        language_id="python",
        path=f"/bench/file{seed}.py",
        max_tokens=160,
    )


def _per_call_us(calls: Callable[[], int]) -> float:
    """Best of ``_ROUNDS`` rounds; ``calls`` runs one round and returns how many calls it made."""
    best = float("inf")
    for _ in range(_ROUNDS):
        started = time.perf_counter_ns()
        count = calls()
        best = min(best, (time.perf_counter_ns() - started) / count / 1000)
    return best


def _key_cost(requests: Sequence[FimRequest]) -> float:
    def round_() -> int:
        for request in requests:
            completion_key(_IDENTITY, request, multiline=False, max_lines=16)
        return len(requests)

    return _per_call_us(round_)


def measure(*, quick: bool) -> dict[str, float]:
    """Microseconds per call, by what was called."""
    entries = 2_000 if quick else 20_000
    key_samples = 200 if quick else 2_000
    rng = random.Random(7)
    figures: dict[str, float] = {}

    figures["completion_key, 6000+2000-char window"] = _key_cost(
        [_request(6000, 2000, n) for n in range(key_samples)]
    )
    figures["completion_key, 600+200-char window"] = _key_cost(
        [_request(600, 200, n) for n in range(key_samples)]
    )

    keys = [f"{rng.getrandbits(128):032x}" for _ in range(entries)]
    absent = [f"{rng.getrandbits(128):032x}" for _ in range(entries)]
    answers = [Suggestion(f"suggestion number {n} = compute(values)", 0) for n in range(entries)]
    order = keys[:]
    rng.shuffle(order)

    tiered = TieredCache(memory_bytes=32 * 1024 * 1024, ttl_s=3600, disk=None)
    memory: MemoryCache[Suggestion] = MemoryCache(
        32 * 1024 * 1024, 3600, size_of=lambda key, answer: len(key) + len(answer.text) + 256
    )
    plain: dict[str, Suggestion] = {}
    for key, answer in zip(keys, answers, strict=True):
        tiered.store(key, answer)
        memory.put(key, answer)
        plain[key] = answer

    def lookups(get: Callable[[str], object], wanted: Sequence[str]) -> Callable[[], int]:
        def round_() -> int:
            for key in wanted:
                get(key)
            return len(wanted)

        return round_

    figures["dict.get (baseline), hit"] = _per_call_us(lookups(plain.get, order))
    figures["MemoryCache.get, hit"] = _per_call_us(lookups(memory.get, order))
    figures["TieredCache.in_memory, hit"] = _per_call_us(lookups(tiered.in_memory, order))
    figures["TieredCache.in_memory, miss"] = _per_call_us(lookups(tiered.in_memory, absent))

    # Type-through: one shown suggestion, looked up while typing through it (6000-char prefix).
    before, after = _window(6000, 1), _window(2000, 2)
    suggestion = "by_station: dict[str, list[float]] = {}"
    tiered.shown("file:///bench/t.py", len(before), before, after, Suggestion(suggestion))
    texts = [before + suggestion[:typed] + after for typed in range(1, len(suggestion))]

    def type_through() -> int:
        for _ in range(passes):
            for typed, text in enumerate(texts, start=1):
                tiered.type_through("file:///bench/t.py", text, len(before) + typed, after)
        return passes * len(texts)

    passes = 5 if quick else 50

    figures["TieredCache.type_through, hit, 6000+2000-char window"] = _per_call_us(type_through)
    return figures
