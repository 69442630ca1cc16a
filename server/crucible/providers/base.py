"""The Provider protocol and the request/response value types every wire format shares.

A provider turns one request into a stream of text chunks. The caller owns the stream: it
reads until it has enough and then closes the iterator (``aclose``), which closes the HTTP
response so the provider stops generating too. Errors arrive as ``ProviderError`` subclasses
(``providers/errors.py``); services never see httpx.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from crucible.context.snapshot import ContextFile


@dataclass(frozen=True, slots=True, kw_only=True)
class FimRequest:
    """Fill in the middle: the text before and after the cursor."""

    prefix: str
    suffix: str
    language_id: str
    path: str
    extra: tuple[ContextFile, ...] = ()
    max_tokens: int = 128
    temperature: float = 0.2
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 512
    temperature: float = 0.2
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a cheap health request found (``crucible-lsp doctor``).

    ``model_present``: whether the server's model listing has the configured model; ``None``
    when the probe got no listing (an error) or the server lists none (llama.cpp's health).
    """

    ok: bool
    detail: str
    model_present: bool | None = None


@dataclass(frozen=True, slots=True)
class QuotaPause:
    """The provider's gateway said a quota window is spent: no call is worth making for
    ``seconds`` (``providers/rate_limits.py``). ``window``: "requests" or "tokens"."""

    seconds: float
    window: str


@runtime_checkable
class QuotaReporter(Protocol):
    """A provider that reads its gateway's rate-limit headers (every HTTP provider). The pool
    asks it before choosing and after each call, and parks it while its quota is spent."""

    def spent_quota(self) -> QuotaPause | None:
        """The pause the last answer asked for, counted down to now; None when none."""
        ...


class Provider(Protocol):
    """One LLM endpoint speaking one wire format."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        """Stream the middle, chunk by chunk. Close the iterator to stop generation."""
        ...

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        """Stream an assistant answer, chunk by chunk."""
        ...

    async def probe(self) -> ProbeResult:
        """A cheap request telling whether the endpoint answers and knows the model."""
        ...

    async def aclose(self) -> None:
        """Close the connection pool."""
        ...
