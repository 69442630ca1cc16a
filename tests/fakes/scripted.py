"""ScriptedProvider: an in-process Provider whose every call follows a script, on fake time.

For unit tests of the resilience package: no sockets, no real sleeping. Each call to
``stream_fim`` / ``stream_chat`` plays the next :class:`Reply` of the script (the last one
repeats): wait ``first_byte`` fake seconds, yield the chunks ``gap`` seconds apart, then raise
``error``, or hang until the stream is closed, or end. The provider records when each call
started, how each stream ended (completed, closed by ``aclose``, cancelled mid-await) and how
many streams are open, so tests can assert that the pool closed what it opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from crucible.providers.base import ChatRequest, FimRequest, ProbeResult
from crucible.providers.errors import ProviderError
from tests.fakes.clock import FakeTime


@dataclass(frozen=True)
class Reply:
    chunks: tuple[str, ...] = ("ok",)
    first_byte: float = 0.0
    gap: float = 0.0
    error: ProviderError | None = None
    hang: bool = False  # after the chunks: wait until closed (an Event nobody sets)


@dataclass
class Call:
    request: FimRequest | ChatRequest
    started: float
    ended: str = "open"  # completed | raised | closed (aclose at a yield) | cancelled


class ScriptedProvider:
    def __init__(
        self,
        name: str,
        time: FakeTime,
        script: Reply | Sequence[Reply] = Reply(),
        *,
        model: str = "model-x",
        probe_ok: bool | Sequence[bool] = True,
    ) -> None:
        self._name = name
        self._model = model
        self._time = time
        self.script = [script] if isinstance(script, Reply) else list(script)
        self.probe_script = [probe_ok] if isinstance(probe_ok, bool) else list(probe_ok)
        self.calls: list[Call] = []
        self.probes: list[float] = []
        self.open_streams = 0
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._model

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        return self._play(request)

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        return self._play(request)

    async def probe(self) -> ProbeResult:
        self.probes.append(self._time.now)
        ok = self.probe_script[min(len(self.probes), len(self.probe_script)) - 1]
        return ProbeResult(ok, "ok" if ok else "down")

    async def aclose(self) -> None:
        self.closed = True

    def endings(self) -> list[str]:
        return [call.ended for call in self.calls]

    async def _play(self, request: FimRequest | ChatRequest) -> AsyncGenerator[str, None]:
        reply = self.script[min(len(self.calls), len(self.script) - 1)]
        call = Call(request, self._time.now)
        self.calls.append(call)
        self.open_streams += 1
        try:
            if reply.first_byte:
                await self._time.sleep(reply.first_byte)
            for index, chunk in enumerate(reply.chunks):
                if index and reply.gap:
                    await self._time.sleep(reply.gap)
                yield chunk
            if reply.hang:
                await asyncio.Event().wait()
            if reply.error is not None:
                call.ended = "raised"
                raise reply.error
            call.ended = "completed"
        except GeneratorExit:
            call.ended = "closed"
            raise
        except asyncio.CancelledError:
            call.ended = "cancelled"
            raise
        finally:
            self.open_streams -= 1
