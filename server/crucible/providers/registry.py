"""Settings -> provider instances: one per ``[[providers]]`` entry, in the order they are tried.

The single place that knows which class speaks which ``kind``, and the single definition of
"the order providers are tried in": by ``priority`` (lower first), then as listed. Building a
provider opens no connection (httpx connects on the first request), so nothing here fails on a
server being down.

Errors: none raised. An unknown ``fim_template`` is rejected by the configuration loader first;
should one get here anyway, it is logged and the provider falls back to ``auto``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from urllib.parse import urlsplit

from crucible.config.settings import ProviderKind, ProviderSettings, Role
from crucible.providers.anthropic import AnthropicProvider
from crucible.providers.base import Provider
from crucible.providers.codestral import CodestralProvider
from crucible.providers.llamacpp import LlamaCppProvider
from crucible.providers.local import LocalProvider
from crucible.providers.ollama import OllamaProvider
from crucible.providers.openai import OpenAIProvider

log = logging.getLogger(__name__)

_CLASSES: dict[ProviderKind, Callable[[ProviderSettings], Provider]] = {
    ProviderKind.OLLAMA: OllamaProvider,
    ProviderKind.OPENAI: OpenAIProvider,
    ProviderKind.LLAMACPP: LlamaCppProvider,
    ProviderKind.ANTHROPIC: AnthropicProvider,
    ProviderKind.CODESTRAL: CodestralProvider,
    ProviderKind.LOCAL: LocalProvider,
}


def create_provider(settings: ProviderSettings) -> Provider:
    """The provider for one ``[[providers]]`` entry, with its own connection pool."""
    cls = _CLASSES[settings.kind]
    try:
        return cls(settings)
    except ValueError as exc:
        log.warning("provider %s: %s; using fim_template = auto", settings.name, exc)
        return cls(replace(settings, fim_template="auto"))


def reuse_key(settings: ProviderSettings) -> ProviderSettings:
    """What in a provider's settings needs a new provider (and a new pool member, with a new
    breaker and connection pool) when it changes: everything but the team limits
    (``team_*``), which no provider reads; the team's budget (team/budget.py) takes new
    limits in place. A configuration change compares these, never the settings as given."""
    return replace(
        settings, team_calls_per_minute=0, team_tokens_per_minute=0, team_tokens_per_month=0
    )


def is_local(settings: ProviderSettings) -> bool:
    """Whether the provider runs on this machine (a loopback address): extra calls to it cost
    the user nothing but idle local compute, unlike a hosted API's bill or a shared server."""
    host = urlsplit(settings.base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def identity(settings: ProviderSettings) -> tuple[str, ...]:
    """What in a provider's settings determines its answers: part of every cache key. Not its
    ``name``, a label of the user's own: teammates who call the same model at the same address
    by different names share their answers in L3 (cache/team.py)."""
    served = (settings.model_path,) if settings.kind is ProviderKind.LOCAL else ()
    return (
        str(settings.kind),
        settings.base_url,
        settings.model,
        settings.fim_template,
        *served,  # the local kind's model is the file it serves
    )


def ordered_for_role(
    providers: Iterable[ProviderSettings], role: Role
) -> tuple[ProviderSettings, ...]:
    """The entries serving ``role``, in the order they are tried."""
    return tuple(s for s in _in_order(providers) if role in s.roles)


def _in_order(providers: Iterable[ProviderSettings]) -> list[ProviderSettings]:
    # sorted() is stable: equal priorities keep the order the user listed them in.
    return sorted(providers, key=lambda s: s.priority)
