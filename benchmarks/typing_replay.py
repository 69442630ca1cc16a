"""Typing replay: what a fast typist's keystroke storm costs, Crucible against two baselines.

A client types realistic code bursts (20-60 ms between keys, pauses between bursts, one burst of
exactly 40 keys at 30 ms) and asks for an inline completion on every keystroke, against the
loopback fake provider (Ollama wire format) with ``--latency-ms`` of prompt processing and
``--slots`` parallel slots, like a local llama.cpp / Ollama server. The same bursts, with the same
key timing, are typed into three systems in the same run, against the same provider:

- **crucible**: the real server over LSP, asked on every keystroke (no client-side debounce:
  the most an editor can send it);
- **good-client**, the fair baseline: a plugin talking straight to the provider, no Crucible,
  with a fixed ``--client-debounce-ms`` (150) debounce and cancel-previous: the question it
  answers is "what does Crucible change for someone who could run a good plugin instead?";
- **naive**, the worst case: straight to the provider on every keystroke, no debounce, no
  cancellation: "what does Crucible protect a provider from when nothing in front of it
  debounces?". Not what a good client costs.

Per burst and system: upstream calls; requests answered out of requests sent; p50 and p95 time
from the last keystroke to the first answer whose suggestion fits the final text (it extends what
the user has typed by then); stale suggestions (answers that arrived not fitting the text on
screen at that moment). Targets from the issue are judged from the figures and printed.

Run from the repository root::

    python -m benchmarks.typing_replay [--quick] [--repeat 5] [--latency-ms 150] [--slots 2]
                                       [--debounce-ms 150] [--client-debounce-ms 150]
                                       [--json PATH]

The exit status is non-zero only when the run itself breaks (the server crashes or cannot start);
poor figures are figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lsprotocol import types
from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

from benchmarks import _figures
from benchmarks._figures import Figures, Sample
from benchmarks._lsp_client import CrucibleSession, ServerExited, crucible_session, end_position
from benchmarks._snippets import BURSTS, QUICK_BURSTS, Burst, continuation, header
from benchmarks._typists import Answer, CrucibleTypist, GoodClientTypist, NaiveTypist, Typist

MODEL = "qwen2.5-coder:1.5b-base"
MAX_TOKENS = 160  # Crucible's default completion.max_tokens; the naive server asks for as many


def _reply(record: RecordedRequest) -> str:
    body = record.body if isinstance(record.body, dict) else {}
    prompt = body.get("prompt")
    return continuation(prompt if isinstance(prompt, str) else "")


def _fresh(fake: FakeProvider, latency_ms: int) -> None:
    """Forget the previous burst's requests (its figures are taken); keep the latency on."""
    fake.reset()
    fake.inject(Fault(latency_ms=latency_ms))


@dataclass(frozen=True)
class Typed:
    """A burst as it was typed: one answer per keystroke (None: none by the deadline)."""

    answers: list[Answer | None]
    final: str  # the document after the last keystroke
    last: float  # time.perf_counter() of the last keystroke
    screen: list[tuple[float, str]]  # (time of each keystroke, the document after it)

    def on_screen(self, at: float) -> str:
        """The document as the user saw it at ``at`` (after every keystroke sent by then)."""
        return next((text for sent, text in reversed(self.screen) if sent <= at), "")


async def _type_burst(
    typist: Typist, burst: Burst, uri: str, text: str, gaps: Sequence[float], deadline_s: float
) -> Typed:
    """Type the burst on schedule, asking on every keystroke, then wait for the answers."""
    typist.open(uri, burst.snippet.language_id, text)
    keystrokes = []
    screen = []
    due = time.perf_counter()
    for number, char in enumerate(burst.typed):
        keystrokes.append(typist.type(uri, number + 2, text, char))
        text += char
        screen.append((keystrokes[-1].at, text))
        if number < len(gaps):
            # Sleep to an absolute schedule, so the loop's own overhead does not stretch the gaps.
            due += gaps[number]
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
    await asyncio.wait([k.answered for k in keystrokes], timeout=deadline_s)
    answers = [k.answered.result() if k.answered.done() else None for k in keystrokes]
    await typist.abandon()
    typist.close(uri)
    return Typed(answers, text, keystrokes[-1].at, screen)


def _fit(answer: Answer, final: str) -> bool:
    """Whether a suggestion in ``answer`` extends ``final``, the text the user ended up with."""
    return any(p.startswith(final) and len(p) > len(final) for p in answer.proposals)


def _sample(typed: Typed, calls: Sequence[RecordedRequest], max_concurrent: int) -> Sample:
    withdrawn = sum(a is not None and a.withdrawn for a in typed.answers)
    answered = [a for a in typed.answers if a is not None and not a.withdrawn]
    # Any answer counts, even one to an older keystroke: what it proposes may fit the final text.
    fitting = [a.arrived for a in answered if a.arrived >= typed.last and _fit(a, typed.final)]
    # A suggestion is stale when it no longer fits what the user sees as it arrives: a client
    # that shows what arrives shows something wrong, or must know to drop it.
    stale = [a for a in answered if a.proposals and not _fit(a, typed.on_screen(a.arrived))]
    own = typed.answers[-1]
    after_last = [r.received_at for r in calls if r.received_at >= typed.last]
    return Sample(
        sent=len(typed.answers) - withdrawn,
        answered=len(answered),
        errors=sum(a.error is not None for a in answered),
        latency_ms=(min(fitting) - typed.last) * 1000 if fitting else None,
        own_ms=(own.arrived - typed.last) * 1000 if own and _fit(own, typed.final) else None,
        calls=len(calls),
        abandoned=sum(r.disconnected for r in calls),
        max_concurrent=max_concurrent,
        stale=len(stale),
        withdrawn=withdrawn,
        start_ms=(min(after_last) - typed.last) * 1000 if after_last else None,
        before_last=len(calls) - len(after_last),
    )


async def replay(
    typist: Typist,
    fake: FakeProvider,
    burst: Burst,
    where: tuple[int, int],
    gaps: Sequence[float],
    settings: argparse.Namespace,
) -> Sample:
    """One burst against one system, then the pause; its :class:`Sample`."""
    index, repetition = where
    _fresh(fake, settings.latency_ms)
    uri = f"file:///bench/{typist.name}/burst{index}-r{repetition}.{burst.snippet.extension}"
    text = header(burst.snippet, index, repetition) + burst.snippet.text[: burst.start]
    typed = await _type_burst(typist, burst, uri, text, gaps, settings.deadline_s)
    # The pause belongs to the burst: calls a server makes after answering still count.
    await asyncio.sleep(settings.pause_ms / 1000)
    return _sample(typed, fake.generation_requests(), fake.max_concurrent_seen)


def _initialization_options(fake: FakeProvider, settings: argparse.Namespace) -> dict[str, Any]:
    completion: dict[str, Any] = {"debounce_ms": settings.debounce_ms, "max_tokens": MAX_TOKENS}
    if settings.debounce_mode:
        completion["debounce_mode"] = settings.debounce_mode
    provider = {"name": "bench", "kind": "ollama", "base_url": fake.base_url, "model": MODEL}
    # Prefetch (on by default for a local provider) would add a call after each answer, which
    # is cache_replay's subject; this benchmark measures what the keystrokes themselves cost.
    return {"providers": [provider], "completion": completion, "cache": {"prefetch": "off"}}


async def _warm_up(crucible: CrucibleSession, naive: NaiveTypist) -> None:
    """One request each before measuring: process start-up and connection set-up are not typing."""
    uri, text = "file:///bench/warm-up.py", "def warm_up():\n    "
    crucible.open(uri, "python", text)
    invoked = types.InlineCompletionTriggerKind.Invoked
    answer = crucible.inline_completion(uri, end_position(text), invoked)
    await asyncio.wait_for(asyncio.wrap_future(answer), 10)
    crucible.close(uri)
    await asyncio.wait_for(naive.type(uri, 2, text, "r").answered, 10)


async def run(settings: argparse.Namespace) -> dict[str, Any]:
    """The whole replay; figures as a JSON-ready dict."""
    bursts = QUICK_BURSTS if settings.quick else BURSTS
    samples: dict[tuple[str, str], list[Sample]] = {}
    fake = FakeProvider(model=MODEL, reply=_reply, chunk_size=8, slots=settings.slots)
    async with AsyncExitStack() as stack:
        stack.enter_context(fake)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crucible-bench-")))
        options = _initialization_options(fake, settings)
        session = await stack.enter_async_context(crucible_session(workdir, options))
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=fake.base_url, limits=limits, timeout=None, trust_env=False)
        )
        naive = NaiveTypist(http, MODEL, MAX_TOKENS)
        good = GoodClientTypist(http, MODEL, MAX_TOKENS, settings.client_debounce_ms / 1000)
        typists: list[Typist] = [CrucibleTypist(session), good, naive]
        await _warm_up(session, naive)
        for repetition in range(settings.repeat):
            for index, burst in enumerate(bursts):
                gaps = burst.gaps(random.Random(f"{settings.seed}/{index}/{repetition}"))
                # Rotate who goes first, so no system always follows another's pause.
                shift = repetition % len(typists)
                for typist in typists[shift:] + typists[:shift]:
                    sample = await replay(typist, fake, burst, (index, repetition), gaps, settings)
                    samples.setdefault((burst.name, typist.name), []).append(sample)
                    session.check_alive()
        status = await session.status()
        messages = list(session.messages)
    return _report(settings, bursts, samples, status, messages)


def _report(
    settings: argparse.Namespace,
    bursts: Sequence[Burst],
    samples: dict[tuple[str, str], list[Sample]],
    status: Any,
    messages: list[str],
) -> dict[str, Any]:
    """Print the table, summary and targets; return everything as JSON-ready data."""
    rows: list[tuple[str, dict[str, Figures]]] = [
        (b.name, {s: _figures.summarize(samples[b.name, s]) for s in _figures.SYSTEMS})
        for b in bursts
    ]
    total = {
        s: _figures.summarize([x for b in bursts for x in samples[b.name, s]])
        for s in _figures.SYSTEMS
    }
    rows.append(("all bursts", total))
    yardstick = next(
        (figures["crucible"] for name, figures in rows if name == "40 keys @ 30 ms"), None
    )
    budget = settings.debounce_ms + settings.latency_ms + 10
    budget_text = (
        f"debounce {settings.debounce_ms} + latency {settings.latency_ms} + 10 = {budget} ms"
    )
    found = _figures.targets(
        total["crucible"],
        yardstick,
        [figures["crucible"] for name, figures in rows if name != "all bursts"],
        budget_ms=budget,
        budget_text=budget_text,
    )

    print(
        f"Typing replay: provider latency {settings.latency_ms} ms, {settings.slots} slots, "
        f"debounce {settings.debounce_ms} ms ({settings.debounce_mode or 'server default mode'}), "
        f"{settings.repeat} repetition(s), seed {settings.seed}\n"
        "Systems: crucible = the server over LSP, asked on every keystroke; good-client = a plugin"
        f" straight to the provider, {settings.client_debounce_ms} ms debounce + cancel-previous"
        " (the fair baseline); naive = straight to the provider on every keystroke, no debounce,"
        " no cancel (the worst case)\n"
    )
    print(_figures.table(rows))
    print()
    print("\n".join(_figures.summary(total)))
    print("Targets (crucible):")
    print("\n".join(_figures.target_lines(found)))
    for message in messages:
        print(f"server said: {message}")
    return {
        "settings": {k: v for k, v in vars(settings).items() if k != "json"},
        "bursts": {name: {s: _figures.as_json(f) for s, f in by.items()} for name, by in rows},
        "samples": {f"{b} / {s}": [vars(x) for x in xs] for (b, s), xs in samples.items()},
        "targets": [vars(t) for t in found],
        "server_status": status if isinstance(status, dict) else None,
        "server_messages": messages,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.typing_replay", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="2 bursts, 1 repetition: proves it runs (CI)")
    add("--repeat", type=int, default=5, help="repetitions of each burst (default 5)")
    add("--latency-ms", type=int, default=150, help="provider prompt processing (default 150)")
    add("--slots", type=int, default=2, help="provider parallel slots (default 2)")
    add("--debounce-ms", type=int, default=150, help="completion.debounce_ms (default 150)")
    add("--debounce-mode", choices=["fixed", "adaptive"], help="completion.debounce_mode")
    add(
        "--client-debounce-ms",
        type=int,
        default=150,
        help="the good client's fixed debounce (default 150)",
    )
    add("--pause-ms", type=int, default=800, help="pause after each burst (default 800)")
    add("--deadline-s", type=float, default=10.0, help="wait for answers after a burst (10)")
    add("--seed", type=int, default=7, help="seed of the key-timing jitter")
    add("--json", type=Path, help="also write the figures here")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    if settings.quick:
        settings.repeat, settings.pause_ms = 1, min(settings.pause_ms, 300)
    try:
        figures = asyncio.run(run(settings))
    except (ServerExited, OSError, TimeoutError) as exc:
        print(f"typing replay broke: {exc}", file=sys.stderr)
        return 2
    if settings.json:
        settings.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
