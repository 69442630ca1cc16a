"""A loopback LLM provider for tests and benchmarks: a real HTTP/1.1 server on 127.0.0.1.

It speaks the wire formats of Ollama (``/api/...``), OpenAI-compatible servers (``/v1/...``),
the llama.cpp server (``/completion``, ``/infill``), Anthropic's Messages API (``/v1/messages``),
Mistral's Codestral FIM (``/v1/fim/completions``) and the Tabby server (``/v1/completions`` with
``segments``, ``/v1/health``, what tabby-agent uses) closely enough that Crucible's httpx
providers cannot tell it from the real thing, and it can misbehave on demand (:class:`Fault`):
latency, slow streams, HTTP errors with ``Retry-After``, a gateway's rate-limit headers
(``Fault.headers``), truncated or malformed streams, error events mid-stream, hangs.
Like a local llama.cpp / Ollama server with N parallel slots, it can generate for at most
``slots`` requests at a time (:mod:`tests.fakes.slots`): the others wait in FIFO order, a request
whose client leaves while queued is never generated, and ``Fault.latency_ms`` (prompt processing)
starts once a slot is held. ``max_concurrent_seen`` is the most generations it ran at once.
Every request is recorded (:class:`RecordedRequest`), including how its response ended, so a test
can assert that the language server closed a stream early. ``chunks_sent`` and ``completed`` are
updated before the bytes leave, so a client that has read a whole response finds the record
final; ``disconnected`` is noticed by the server after the client leaves: wait for it
(:meth:`FakeProvider.wait_for`, :meth:`FakeProvider.wait_for_async`).

The server runs in a daemon thread with its own event loop, so the same object serves sync tests,
asyncio tests, a language server in another process, and benchmarks::

    with FakeProvider(reply="return 42") as fake:
        fake.inject(Fault(latency_ms=50), times=1)
        ...  # point a client at fake.base_url
        assert fake.wait_for(lambda f: f.generation_requests()[-1].completed)

Generation requests answer ``reply`` (or ``reply(request)``), cut at the first stop sequence of
the request, then at its token limit when that is shorter (4 characters per token: ``max_tokens``
/ ``num_predict`` / ``n_predict`` of N keeps at most 4·N characters, finish reason ``length``),
streamed in ``chunk_size``-character pieces. The model is checked on the Ollama and ``/v1``
routes (a body naming no model gets the first of ``models``); llama.cpp's native routes accept
any model, as llama.cpp does. With ``require_api_key`` the ``/v1`` routes want that key: as
``x-api-key`` from Anthropic clients (told apart by the ``anthropic-version`` header the API
requires), as ``Authorization: Bearer`` from the others.

Modules: ``http_server`` (HTTP/1.1 plumbing and the thread), ``formats`` (the wire formats),
``records`` (faults and records), ``responder`` (routing, faults, streaming), this one (the API).

Standalone: ``python -m tests.fakes.provider --port 0 [--latency-ms N] [--chunk-delay-ms N]
[--reply TEXT] [--slots N]`` prints ``listening on http://127.0.0.1:PORT`` and serves until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Callable
from types import TracebackType

from tests.fakes.formats import ENDPOINTS
from tests.fakes.http_server import LoopbackServer
from tests.fakes.records import Fault, FaultQueue, RecordedRequest, Reply
from tests.fakes.responder import Responder
from tests.fakes.slots import SlotGate

__all__ = ["FakeProvider", "Fault", "RecordedRequest"]


class FakeProvider:
    """A fake Ollama / OpenAI-compatible / llama.cpp / Anthropic / Codestral server; see the
    module docstring."""

    def __init__(
        self,
        *,
        model: str = "test-model",
        reply: Reply = "pass",
        chunk_size: int = 4,
        require_api_key: str | None = None,
        port: int = 0,
        slots: int | None = None,
    ) -> None:
        self.reply: Reply = reply
        self.chunk_size = chunk_size
        self.models: list[str] = [model]
        self.require_api_key = require_api_key
        # False: a model without fill-in-the-middle tokens (llama.cpp's /infill answers 501,
        # an Ollama generate with a suffix answers 400 "does not support insert").
        self.fim_supported = True
        # Bytes of a model listing or health answer that never ends (no line break, streamed in
        # 64 KiB chunks): a server whose non-streamed answer is huge. None: the normal answer.
        self.info_flood_bytes: int | None = None
        # Appended to by the server thread; list.append and list.clear are atomic.
        self.requests: list[RecordedRequest] = []
        self._faults = FaultQueue()
        self._slots = _checked_slots(slots)
        # Used only on the server's loop; reads the limit afresh, so `slots` may change anytime.
        self._gate = SlotGate(lambda: self._slots)
        self._server = LoopbackServer(Responder(self, self._faults, self._gate), port=port)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Bind 127.0.0.1 (``port``, 0 by default: a free one) and serve; idempotent."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then join the server thread."""
        self._server.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._server.running:
            raise RuntimeError("FakeProvider is not started")
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        """TCP connections from clients open now, as the server sees them."""
        return self._server.open_connections

    @property
    def slots(self) -> int | None:
        """Most generation requests served at once (None: no limit); the rest wait, FIFO."""
        return self._slots

    @slots.setter
    def slots(self, value: int | None) -> None:
        self._slots = _checked_slots(value)
        # A raised limit admits queued requests now rather than at the next release.
        self._server.call_soon(self._gate.grant)

    @property
    def generating(self) -> int:
        """How many generation requests hold a slot right now (a response's last bytes may
        reach the client a moment before its slot is released)."""
        return self._gate.active

    @property
    def max_concurrent_seen(self) -> int:
        """The most generation requests ever served at once (since start or :meth:`reset`)."""
        return self._gate.max_active

    # -- faults and records ----------------------------------------------------------------

    def inject(self, fault: Fault, times: int | None = None) -> None:
        """Apply ``fault`` to the next ``times`` generation requests (None: until cleared).

        Faults queue up: the next one starts when the previous one is used up, so a fault
        injected after one with ``times=None`` never applies.
        """
        self._faults.push(fault, times)

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset(self) -> None:
        """Forget every request, fault and ``max_concurrent_seen`` (the settings stay)."""
        self._faults.clear()
        self.requests.clear()
        # From the test's thread: one int assignment, so it takes effect at once; a request
        # admitted at that very moment may be counted before or after it.
        self._gate.reset_max()

    def generation_requests(self) -> list[RecordedRequest]:
        """Only the POSTs to a generation route, in arrival order."""
        return [r for r in list(self.requests) if r.method == "POST" and r.path in ENDPOINTS]

    def wait_for(self, predicate: Callable[[FakeProvider], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    async def wait_for_async(
        self,
        predicate: Callable[[FakeProvider], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the same signature as wait_for, on purpose
    ) -> bool:
        """:meth:`wait_for` for asyncio tests: sleeps without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True


def _checked_slots(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ValueError("slots must be at least 1, or None for no limit")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.provider",
        description=(
            "Serve a fake Ollama / OpenAI-compatible / llama.cpp / Anthropic / Codestral"
            " provider on 127.0.0.1."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--model", default="test-model")
    parser.add_argument("--reply", default="pass", help="text every generation request gets")
    parser.add_argument("--chunk-size", type=int, default=4, help="characters per stream chunk")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")
    parser.add_argument("--chunk-delay-ms", type=int, default=0, help="delay between chunks")
    parser.add_argument(
        "--api-key", help="require this key on /v1 routes (Bearer; x-api-key for Anthropic)"
    )
    parser.add_argument(
        "--slots", type=int, default=None, help="serve at most N generations at once (FIFO queue)"
    )
    args = parser.parse_args(argv)

    # Block the signals before the server thread starts (it inherits the mask), so that only
    # sigwait below receives them and shutdown always runs in the main thread.
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    fake = FakeProvider(
        model=args.model,
        reply=args.reply,
        chunk_size=args.chunk_size,
        require_api_key=args.api_key,
        port=args.port,
        slots=args.slots,
    ).start()
    try:
        if args.latency_ms or args.chunk_delay_ms:
            fake.inject(Fault(latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms))
        print(f"listening on {fake.base_url}", flush=True)
        signal.sigwait(signals)
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
