"""``HttpProvider``: the base every wire format's provider extends, and its requests.

Every request of every format goes out through ``HttpProvider._open``, so every one carries
``_headers()``, the one place a format says how it authenticates (Anthropic's ``x-api-key``
overrides it). On top of it:

- ``_stream_text``: a streamed answer. POST the body, check the status, frame the body
  (``providers/streams.py``: SSE, NDJSON), yield the text each object holds. ``_events`` is
  the same without the text, for a caller that reads the objects itself (the micro-batched
  ``completions`` call, which splits one stream between its callers).
- ``_get_object``: one JSON object (a model listing, a health answer).
- ``_probe_models``: the probe of a server that lists its models (``providers/listing.py``).
- ``_fim_or_prefix_only``: fill in the middle, or continue the prefix once the server says the
  model cannot.

A format adjusts these through small overrides: ``_headers``, ``_check_status`` (Ollama's
"does not support insert" is a 400 that means ``FimUnsupported``) and ``_probe_failed`` (the
hint for a missing key or a wrong ``base_url``).

Errors are those of ``providers/http.py`` (transport, timeout, status, JSON bodies) and
``providers/streams.py`` (a broken or truncated stream), raised as they come; a probe reports
its failed request as a ``ProbeResult`` instead.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeAlias

import httpx

from crucible.config.settings import ProviderSettings
from crucible.providers.base import ProbeResult, QuotaPause
from crucible.providers.errors import FimUnsupported, ProviderError
from crucible.providers.http import (
    auth_headers,
    check_status,
    close_idle_connections,
    decode_object,
    make_client,
    map_errors,
    read_body,
)
from crucible.providers.listing import ModelListing
from crucible.providers.rate_limits import reports_quota, spent_quota

log = logging.getLogger(__name__)

# Two answers whose resets fall within this of each other name the same reset: a gateway writes
# the wait from its own now, often in whole seconds ("6m0s"), and each answer's travel time
# shifts it a little.
SAME_RESET_S = 1.0
# The framing of a streamed body (``providers/streams.py``): the response in, its objects out.
Frames: TypeAlias = Callable[[str, httpx.Response], AsyncGenerator[dict[str, Any], None]]
# Picks the answer's text out of one streamed object ("" for objects without any).
TextOf: TypeAlias = Callable[[str, dict[str, Any]], str]


class HttpProvider:
    """What every HTTP provider shares: its settings, one connection pool (closed by
    ``aclose`` only when the provider created it), and its requests (module docstring).

    ``async with client.stream`` ties each HTTP response to the generator reading it: closing
    the generator (early stop, cancellation) closes the connection, and the server stops
    generating for it.
    """

    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._client = client or make_client(settings)
        self._owns_client = client is None
        # Told of a degradation the provider works around instead of failing (a model that
        # cannot fill in the middle); set by the composition root.
        self.on_notice: Callable[[ProviderError], None] | None = None
        self._fim_supported = True  # until the server says the model cannot fill in the middle
        # Where the key named by ``api_key_env`` is read: the process's environment, or in the
        # shared daemon the session's (set by the composition root, before the first request).
        self.env: Mapping[str, str] = os.environ
        # The gateway's last word on the quota: spent until this monotonic time, which window.
        self._quota_until = 0.0
        self._quota_window = ""

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def model(self) -> str:
        return self._settings.model

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def release_idle_connections(self) -> None:
        """Close the idle keep-alive connections of this provider's pool (memory is short);
        streams in flight go on, and the next request opens a connection anew."""
        closed = await close_idle_connections(self._client)
        if closed:
            log.debug("%s: closed %d idle connections", self.name, closed)

    def spent_quota(self) -> QuotaPause | None:
        """``QuotaReporter``: the pause the gateway's last answer asked for, from now."""
        left = self._quota_until - time.monotonic()
        return QuotaPause(left, self._quota_window) if left > 0 else None

    def _note_quota(self, response: httpx.Response) -> None:
        """Every answer that says how much quota is left replaces what the last one said; an
        answer that says nothing of it (a model listing) leaves it. A refusal (429) is not
        read here: its pause travels with its ``RateLimited``."""
        if not response.is_success or not reports_quota(response.headers):
            return
        pause = spent_quota(response.headers, time.time())
        if pause is None:
            self._quota_until = 0.0
            return
        now = time.monotonic()
        until = now + pause.seconds
        # INFO when the quota becomes spent, or an answer names another reset (the window
        # rolled over, or another window is now the longest wait); every answer in between
        # says the same again, and goes to DEBUG.
        news = (
            self._quota_until <= now
            or pause.window != self._quota_window
            or abs(until - self._quota_until) > SAME_RESET_S
        )
        self._quota_until, self._quota_window = until, pause.window
        log.log(
            logging.INFO if news else logging.DEBUG,
            "%s: the gateway's %s quota is spent; resets in %.1f s",
            self.name,
            pause.window,
            pause.seconds,
        )

    def _headers(self) -> dict[str, str]:
        """Headers every request carries: ``Authorization: Bearer`` when a key is configured.
        Formats that authenticate otherwise (Anthropic's ``x-api-key``) override this."""
        return auth_headers(self._settings, self.env)

    async def _check_status(
        self, response: httpx.Response, error_types: Mapping[str, type[ProviderError]] | None
    ) -> None:
        """``check_status``; formats whose server says in words what its status does not
        (Ollama's "does not support insert") override this."""
        await check_status(self.name, response, error_types=error_types)

    @asynccontextmanager
    async def _open(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """The one way a request goes out: with ``_headers()``, its response streamed (never
        buffered whole), httpx's exceptions mapped while it is open. The status is unchecked."""
        async with (
            map_errors(self.name),
            self._client.stream(method, path, json=body, headers=self._headers()) as response,
        ):
            self._note_quota(response)
            yield response

    async def _events(
        self,
        path: str,
        body: dict[str, Any],
        frames: Frames,
        *,
        error_types: Mapping[str, type[ProviderError]] | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """POST ``body`` and yield each object ``frames`` reads from the streamed answer."""
        async with self._open("POST", path, body) as response:
            await self._check_status(response, error_types)
            async with aclosing(frames(self.name, response)) as objects:
                async for obj in objects:
                    yield obj

    async def _stream_text(
        self,
        path: str,
        body: dict[str, Any],
        frames: Frames,
        text_of: TextOf,
        *,
        error_types: Mapping[str, type[ProviderError]] | None = None,
    ) -> AsyncGenerator[str, None]:
        """POST ``body`` and yield the text ``text_of`` finds in each streamed object."""
        events = self._events(path, body, frames, error_types=error_types)
        async with aclosing(events):
            async for event in events:
                text = text_of(self.name, event)
                if text:
                    yield text

    async def _get_object(self, path: str) -> dict[str, Any]:
        """GET ``path`` and decode its JSON object (at most ``BODY_LIMIT`` bytes)."""
        async with self._open("GET", path) as response:
            await check_status(self.name, response)
            return decode_object(self.name, await read_body(self.name, response))

    async def _probe_models(self, listing: ModelListing) -> ProbeResult:
        """The model-listing probe (``providers/listing.py``)."""
        try:
            answer = await self._get_object(listing.path)
        except ProviderError as exc:
            return self._probe_failed(exc)
        return listing.verdict(answer, self.model)

    def _probe_failed(self, error: ProviderError) -> ProbeResult:
        """What a probe whose request failed reports; formats with a hint for some errors (a
        missing key, a ``base_url`` with or without ``/v1``) override this."""
        return ProbeResult(False, error.message)

    async def _fim_or_prefix_only(
        self,
        fim: Callable[[], AsyncGenerator[str, None]],
        prefix_only: Callable[[], AsyncGenerator[str, None]],
    ) -> AsyncGenerator[str, None]:
        """Stream ``fim()``; if the model turns out to have no FIM tokens (``FimUnsupported``,
        which comes with the status, before any text), say so once and use ``prefix_only()``
        from then on: a continuation of the code before the cursor is worse than a fill, but
        far better than no suggestion at all."""
        if self._fim_supported:
            try:
                async with aclosing(fim()) as stream:
                    async for chunk in stream:
                        yield chunk
                return
            except FimUnsupported as exc:
                self._fim_supported = False
                self._notice(exc)
        async with aclosing(prefix_only()) as stream:
            async for chunk in stream:
                yield chunk

    def _notice(self, error: ProviderError) -> None:
        log.warning("%s", error)
        if self.on_notice is not None:
            self.on_notice(error)
