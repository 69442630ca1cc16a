"""Typed provider errors; httpx errors are translated into these once, in ``http.py``.

::

    ProviderError                    (crucible.errors.CrucibleError)
    ├── ProviderTimeout              connect, first byte or deadline passed
    ├── ProviderUnavailable          connection refused/reset, 5xx
    ├── RateLimited                  429; retry_after in seconds when the server said
    │                                (Retry-After, else a gateway's x-ratelimit-reset-*)
    ├── AuthError                    401, 403
    ├── ModelNotFound                404 for the model or route
    ├── BadRequest                   other 4xx: the request will not succeed as sent
    │   └── FimUnsupported           the model cannot fill in the middle (no FIM tokens)
    └── BadResponse                  malformed JSON, broken or truncated stream
"""

from __future__ import annotations

from crucible.errors import CrucibleError


class ProviderError(CrucibleError):
    """A provider could not give an answer."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class ProviderTimeout(ProviderError):
    pass


class ProviderUnavailable(ProviderError):
    pass


class RateLimited(ProviderError):
    """``window``: the gateway's spent quota ("requests", "tokens") when its rate-limit
    headers, not Retry-After, gave ``retry_after``."""

    def __init__(
        self,
        provider: str,
        message: str,
        retry_after: float | None = None,
        window: str | None = None,
    ) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after
        self.window = window


class AuthError(ProviderError):
    pass


class ModelNotFound(ProviderError):
    pass


class BadRequest(ProviderError):
    pass


class BadResponse(ProviderError):
    pass


class FimUnsupported(BadRequest):
    """The model has no fill-in-the-middle tokens (llama.cpp's ``/infill`` answers 501, Ollama
    "does not support insert"). Providers that can fall back to a prefix-only completion report
    it through ``on_notice`` and carry on; it is raised only where no fallback exists."""
