"""The provider Crucible uses when the user configured none: Ollama, or its own local model.

In order:

1. Ollama, when it answers at its address (``OLLAMA_HOST``, as Ollama itself reads it, else
   ``http://127.0.0.1:11434``);
2. else the ``local`` kind with the catalogue's default model, when the ``local`` extra is
   installed and the model is downloaded (``crucible-lsp models pull``);
3. else, with the extra installed, the model may be downloaded, but only with the user's
   consent (``ask_consent``: the server asks through ``window/showMessageRequest``); nothing is
   ever downloaded silently. "Not now" asks again at the next start; "Don't ask again" is
   remembered (``DECLINED_MARK``, a file in the models directory: deleting it asks again);
4. else Ollama at its address all the same: the status and ``doctor`` say why nothing answers.

``decide`` is the pure rule (tested on every combination); ``choose`` looks at this machine.
``App`` and ``doctor`` both use ``choose``, so they choose alike and say the same reason.
``DefaultProvider`` is the server's side of it: it chooses once the editor is ready, asks,
downloads with the editor's progress bar, and hands the provider to ``App``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from crucible.config.settings import (
    DEFAULT_LOCAL_MODEL,
    ProviderKind,
    ProviderSettings,
    default_base_url,
)
from crucible.local.catalogue import find
from crucible.local.download import DownloadError
from crucible.local.download import download as download_model
from crucible.local.models import catalogue_source, models_dir
from crucible.local.process import extra_installed
from crucible.providers.ollama import OllamaProvider

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 1.5  # Ollama on loopback answers in milliseconds, or not at all
# In the models directory: the user answered "Don't ask again" to the download question.
DECLINED_MARK = ".download-declined"


@dataclass(frozen=True, slots=True)
class DefaultChoice:
    provider: ProviderSettings
    reason: str
    ask_consent: bool = False  # the local model could be downloaded, if the user agrees

    @property
    def kind(self) -> str:
        return str(self.provider.kind)


def unconfigured(providers: Sequence[ProviderSettings]) -> bool:
    """Whether ``providers`` is the schema's default (no ``[[providers]]`` anywhere)."""
    return tuple(providers) == (ProviderSettings(),)


def ollama_address(env: Mapping[str, str] = os.environ) -> str:
    host = env.get("OLLAMA_HOST", "").strip().rstrip("/")
    if not host:
        return default_base_url(ProviderKind.OLLAMA)
    return host if "://" in host else f"http://{host}"


def local_default() -> ProviderSettings:
    return ProviderSettings(
        name="local",
        kind=ProviderKind.LOCAL,
        base_url=default_base_url(ProviderKind.LOCAL),
        model=DEFAULT_LOCAL_MODEL,
    )


def declined_for_good(env: Mapping[str, str] = os.environ) -> bool:
    return (models_dir(env) / DECLINED_MARK).exists()


def remember_declined(env: Mapping[str, str] = os.environ) -> None:
    directory = models_dir(env)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / DECLINED_MARK).touch()


def decide(
    *,
    ollama_url: str,
    ollama_answers: bool,
    extra: bool,
    model_present: bool,
    declined: bool = False,
) -> DefaultChoice:
    ollama = ProviderSettings(base_url=ollama_url)
    if ollama_answers:
        return DefaultChoice(ollama, f"Ollama answers at {ollama_url}")
    if not extra:
        return DefaultChoice(
            ollama,
            f"Ollama does not answer at {ollama_url}, and the local kind is not installed"
            " (pip install 'crucible-lsp[local]' to run a model without Ollama)",
        )
    if model_present:
        return DefaultChoice(
            local_default(),
            f"Ollama does not answer at {ollama_url}; the local model {DEFAULT_LOCAL_MODEL}"
            " is downloaded, so Crucible runs it itself",
        )
    return DefaultChoice(
        ollama,
        f"Ollama does not answer at {ollama_url}, and the local model {DEFAULT_LOCAL_MODEL}"
        f" is not downloaded (crucible-lsp models pull {DEFAULT_LOCAL_MODEL})"
        + ("; you asked not to be asked to download it" if declined else ""),
        ask_consent=not declined,
    )


async def ollama_answers(url: str) -> bool:
    provider = OllamaProvider(ProviderSettings(base_url=url, connect_timeout_ms=500))
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            result = await provider.probe()
    except TimeoutError:
        return False
    finally:
        await provider.aclose()
    # A server that answers but lacks the model is still Ollama answering: the user sees
    # "model not found" with the pull command, better than a second model on the machine.
    return result.ok or result.model_present is False


async def choose(env: Mapping[str, str] = os.environ) -> DefaultChoice:
    url = ollama_address(env)
    return decide(
        ollama_url=url,
        ollama_answers=await ollama_answers(url),
        extra=extra_installed(),
        model_present=catalogue_source(DEFAULT_LOCAL_MODEL, env).present,
        declined=declined_for_good(env),
    )


def consent_question() -> str:
    entry = find(DEFAULT_LOCAL_MODEL)
    assert entry is not None  # a test keeps DEFAULT_LOCAL_MODEL in the catalogue
    return (
        f"Crucible: no model server answers (Ollama is not running). Download {entry.summary}"
        f" ({entry.size / 1e9:.1f} GB, once) and run it on this machine?"
    )


# The answers to the consent question (window/showMessageRequest).
DOWNLOAD, NOT_NOW, NEVER = "Download", "Not now", "Don't ask again"


class ConsentChannel(Protocol):
    """What of the editor the download needs (``lsp/server.py``'s ``EditorChannel`` has it)."""

    async def ask(self, message: str, actions: tuple[str, ...]) -> str | None: ...

    async def begin_progress(self, title: str) -> str | None: ...

    def report_progress(self, token: str, percentage: int, message: str) -> None: ...

    def end_progress(self, token: str, message: str) -> None: ...


class DefaultProvider:
    """The server's default provider when none is configured: chosen once the editor is
    ready (``choose``); ``changed`` is called whenever ``provider`` changes, so that the owner
    puts it in place of the schema's default. A download runs only after a "Download" answer,
    and stops at ``cancel``."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        changed: Callable[[], None],
        announce: Callable[[str], None],
    ) -> None:
        self._env = env
        self._changed = changed
        self._announce = announce
        self.choice: DefaultChoice | None = None  # what was chosen and why, once chosen
        self._cancel = threading.Event()

    @property
    def provider(self) -> ProviderSettings | None:
        """What replaces the schema's default provider; None while that default stands."""
        if self.choice is None or self.choice.provider == ProviderSettings():
            return None
        return self.choice.provider

    async def choose(self, editor: ConsentChannel | None) -> None:
        choice = await choose(self._env)
        self.choice = choice
        logger.info("no provider configured: using %s: %s", choice.kind, choice.reason)
        if self.provider is not None:
            self._changed()
        if not choice.ask_consent or editor is None:
            return
        answer = await editor.ask(consent_question(), (DOWNLOAD, NOT_NOW, NEVER))
        if answer == NEVER:
            try:
                remember_declined(self._env)
            except OSError as exc:  # asked again next time; nothing else lost
                logger.warning("could not remember the declined download: %s", exc)
        if answer != DOWNLOAD:
            self.choice = dataclasses.replace(
                choice,
                reason=f"{choice.reason}; its download was declined (or the editor cannot ask)",
                ask_consent=False,
            )
            return
        if await self._download(editor):
            local = local_default()
            reason = f"the local model {local.model} was downloaded with your consent"
            self.choice = DefaultChoice(local, reason)
            self._changed()

    def cancel(self) -> None:
        """The server is ending: a download in progress stops (its part file stays, to resume)."""
        self._cancel.set()

    async def _download(self, editor: ConsentChannel) -> bool:
        """Download the default model, its progress shown by the editor ($/progress)."""
        source = catalogue_source(DEFAULT_LOCAL_MODEL, self._env)
        token = await editor.begin_progress(f"Crucible: {source.name}")
        loop = asyncio.get_running_loop()
        shown = [-1]

        def progress(done: int, total: int | None) -> None:  # in the download's thread
            percent = done * 100 // total if total else 0
            if token is not None and percent != shown[0]:
                shown[0] = percent
                words = f"{done / 1e6:.0f} of {(total or 0) / 1e6:.0f} MB"
                loop.call_soon_threadsafe(editor.report_progress, token, percent, words)

        try:
            await asyncio.to_thread(download_model, source, progress=progress, cancel=self._cancel)
        except DownloadError as exc:
            logger.warning("%s", exc)
            self._announce(str(exc))
            if token is not None:
                editor.end_progress(token, "failed")
            return False
        logger.info("downloaded %s to %s", source.name, source.path)
        if token is not None:
            editor.end_progress(token, "downloaded")
        return True
