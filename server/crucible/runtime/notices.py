"""ProblemBoard: each provider problem reaches the user once, in words they can act on.

A provider that refuses connections fails every keystroke's request; telling the user each
time would be a pop-up per keystroke, and telling them nothing (the old behaviour) leaves them
staring at an editor that never suggests. The board keeps the problems the user has been told
about, one per (provider, kind of problem), and says a problem again only after it cleared (the
provider answered) and came back, or after the configuration changed (the user may have fixed
it, and deserves to hear that they did not).

Which failures are worth a message at once, and which only when the provider's circuit opens:

    at once        connection refused / cannot connect, credentials rejected (401/403), model
                   missing, the model cannot fill in the middle (a fallback is in use), no
                   first byte even after warming (15 s)
    circuit opens  timeouts, 5xx, malformed answers, rate limits: one failure of these is
                   weather, a circuit opening is a problem

Every message starts with "Crucible:", names the provider by its kind and address, says what to
do, and points at ``crucible-lsp doctor``. Messages never carry a key: errors quote the server
with any echoed key masked (``providers/http.py``), and the board adds only the variable's
*name* from ``api_key_env``.

Errors: none raised; ``announce`` must not raise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.providers.errors import (
    AuthError,
    BadResponse,
    FimUnsupported,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from crucible.resilience.errors import NoFirstByte

log = logging.getLogger(__name__)

_DOCTOR = "(crucible-lsp doctor for details)"

_LABELS: dict[ProviderKind, str] = {
    ProviderKind.OLLAMA: "Ollama",
    ProviderKind.OPENAI: "the OpenAI-compatible server",
    ProviderKind.LLAMACPP: "the llama.cpp server",
    ProviderKind.ANTHROPIC: "Anthropic",
    ProviderKind.CODESTRAL: "Codestral",
}

_START_HINTS: dict[ProviderKind, str] = {
    ProviderKind.OLLAMA: "Is `ollama serve` running?",
    ProviderKind.OPENAI: "Is the server running?",
    ProviderKind.LLAMACPP: "Is `llama-server` running?",
    ProviderKind.ANTHROPIC: "Check the network connection.",
    ProviderKind.CODESTRAL: "Check the network connection.",
}


def describe_provider(settings: ProviderSettings) -> str:
    """``Ollama at http://127.0.0.1:11434``: the kind in words and the origin (no path)."""
    parts = urlsplit(settings.base_url)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else settings.base_url
    return f"{_LABELS.get(settings.kind, settings.kind)} at {origin}"


def _failing_as(error: ProviderError) -> str:
    """What a circuit-opening error type means, in words."""
    if isinstance(error, RateLimited):
        return "is rate-limiting requests"
    if isinstance(error, ProviderTimeout):
        return "is not answering in time"
    if isinstance(error, BadResponse):
        return "is sending malformed answers"
    if isinstance(error, ProviderUnavailable):
        return "is answering with server errors"
    return f"is failing ({type(error).__name__})"


def _refused(error: ProviderError) -> bool:
    return isinstance(error, ProviderUnavailable) and error.message.startswith(
        ("connection refused", "cannot connect")
    )


class ProblemBoard:
    """The problems the user has been told about, so each is told once."""

    def __init__(
        self, announce: Callable[[str], None], env: Mapping[str, str] = os.environ
    ) -> None:
        self._announce = announce
        self._env = env
        self._told: dict[tuple[str, str], str] = {}  # (provider, kind) -> the message

    def failed(self, settings: ProviderSettings, error: ProviderError) -> None:
        """A call to ``settings``' provider failed with ``error``: say so if it is news."""
        message = self._immediate(settings, error)
        if message is not None:
            self._tell(settings.name, _kind_of(error), message)

    def circuit_opened(
        self, settings: ProviderSettings, error: ProviderError | None, others: int
    ) -> None:
        """The provider's circuit opened; ``others`` providers can still serve."""
        if error is not None and self._immediate(settings, error) is not None:
            return  # already told, with a better reason
        what = _failing_as(error) if error is not None else "is failing"
        then = (
            "suggestions come from the other providers until it recovers."
            if others
            else "no suggestions until it recovers."
        )
        self._tell(
            settings.name,
            "circuit",
            f"Crucible: {describe_provider(settings)} {what}; {then} {_DOCTOR}",
        )

    def recovered(self, name: str) -> None:
        """The provider answered: whatever was wrong with it may be said again if it returns.
        A fallback in use (FIM unsupported) is not cured by the fallback answering."""
        for key in [k for k in self._told if k[0] == name and k[1] != "fim"]:
            del self._told[key]

    def reset(self) -> None:
        """The configuration changed: every problem still there will be said again."""
        self._told.clear()

    @property
    def current(self) -> list[str]:
        """The messages of the problems not cleared yet, oldest first."""
        return list(self._told.values())

    def _tell(self, name: str, kind: str, message: str) -> None:
        if (name, kind) in self._told:
            return
        self._told[(name, kind)] = message
        log.warning("%s", message)
        self._announce(message)

    def _immediate(self, settings: ProviderSettings, error: ProviderError) -> str | None:
        """The message for an error worth telling at its first occurrence, else None."""
        where = describe_provider(settings)
        if isinstance(error, FimUnsupported):
            return (
                f"Crucible: the model {settings.model!r} on {where} cannot fill in the middle"
                f" ({error.message}), so suggestions only continue the code before the cursor."
                " For suggestions that fit the code after it too, use a code model with"
                " fill-in-the-middle tokens (e.g. a Qwen2.5-Coder base model)."
            )
        if isinstance(error, AuthError):
            return f"Crucible: {where} {self._key_advice(settings, error)} {_DOCTOR}"
        if isinstance(error, ModelNotFound):
            fix = (
                f"Run `ollama pull {settings.model}`, or set `model` to one it has."
                if settings.kind is ProviderKind.OLLAMA
                else "Set `model` to one it serves."
            )
            return f"Crucible: {where} has no model {settings.model!r}. {fix} {_DOCTOR}"
        if isinstance(error, NoFirstByte):
            return (
                f"Crucible: {where} has not started answering a completion ({error.message})."
                f" Is it stuck or overloaded? {_DOCTOR}"
            )
        if _refused(error):
            verb = (
                "refused the connection"
                if error.message.startswith("connection refused")
                else "cannot be reached"
            )
            hint = _START_HINTS.get(settings.kind, "Is the server running?")
            return f"Crucible: {where} {verb}. {hint} {_DOCTOR}"
        return None

    def _key_advice(self, settings: ProviderSettings, error: ProviderError) -> str:
        stop = f"Crucible stops calling {settings.name!r} until its configuration changes."
        variable = settings.api_key_env
        if not variable:
            return (
                f"wants an API key ({error.message}): set api_key_env for {settings.name!r} to"
                f" the NAME of an environment variable holding it. {stop}"
            )
        if not self._env.get(variable):
            return (
                f"wants an API key ({error.message}), and the environment variable {variable}"
                f" (api_key_env) is not set: set it and restart the editor. {stop}"
            )
        return (
            f"rejected the API key in the environment variable {variable} ({error.message}):"
            f" set {variable} to a valid key and restart the editor. {stop}"
        )


def _kind_of(error: ProviderError) -> str:
    if isinstance(error, FimUnsupported):
        return "fim"
    if isinstance(error, AuthError):
        return "auth"
    if isinstance(error, ModelNotFound):
        return "model"
    return "unreachable"


def team_cache_problem(state: str, reason: str, where: str) -> str | None:
    """The one message for the team cache (L3, ``cache.shared_url``) becoming unusable, or None
    for a state that is no problem. ``where`` is the masked URL. Said once per configuration
    (App): suggestions go on without it, so it is news, not an alarm."""
    if state == "missing":
        return (
            "Crucible: cache.shared_url is set, but the redis library is not installed"
            " (pip install 'crucible-lsp[team]'); suggestions go on without the team cache."
        )
    if state == "down":
        return (
            f"Crucible: the team cache (Redis at {where}) is not answering ({reason});"
            " suggestions go on from this machine's cache and the providers, and Crucible"
            f" tries Redis again later. {_DOCTOR}"
        )
    return None
