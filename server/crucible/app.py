"""The composition root: builds every component from Settings and wires them together.

``App`` is the LSP layer's ``Backend``. It owns the configuration sources (files, the editor's
initializationOptions, its later settings) and rebuilds what a change affects: providers whose
settings did not change keep their connection pools; the others are replaced and the old ones
closed in the background.

Its life has three steps, in this order: ``App()`` (no event loop needed: the process builds
it before the loop exists), ``initialize`` (the workspace and the editor's options, applied
as a configuration change), then ``await start()`` on the loop that serves, which opens the
disk cache in the background and from then on runs background work (closing what a change
replaced) on that loop. Before ``start`` nothing that needs a loop is attempted: what a change
replaced waits, unclosed and unused, and is closed at ``start`` (or by ``aclose`` if the App
never started). ``aclose`` ends it.

In the shared daemon (``shared/daemon.py``) each session has its own ``App`` (its documents,
configuration, workspace trust, status and editor), built with ``shared=``: then the caches,
the providers and the memory supervisor come from the daemon's ``SharedResources``, leased
and given back instead of built and closed, and API keys are read from the session's ``env``
(the editor's environment, sent by the thin client). Without it (plain ``--stdio``) nothing
changes: the App builds and owns all of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import crucible
from crucible.actions.service import CodeActionService
from crucible.cache.disk import FILE_NAME, DiskCache
from crucible.cache.team import TeamCache
from crucible.cache.tiered import TieredCache
from crucible.completion.service import CompletionService
from crucible.config.loader import LoadResult, load_settings
from crucible.config.paths import default_cache_dir
from crucible.config.settings import (
    CacheSettings,
    Prefetch,
    PrivacySettings,
    ProviderKind,
    ProviderSettings,
    Role,
    Settings,
)
from crucible.context.diagnostics import DiagnosticsStore
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.recent import RecentDocuments
from crucible.hover.service import HoverService
from crucible.lsp import fast_lane
from crucible.lsp.handlers import register_all
from crucible.lsp.server import CrucibleLanguageServer, EditorChannel
from crucible.providers.base import Provider
from crucible.providers.default_choice import (
    DefaultChoice,
    DefaultProvider,
    unconfigured,
)
from crucible.providers.errors import ProviderError
from crucible.providers.http_provider import HttpProvider
from crucible.providers.local import LocalProvider
from crucible.providers.openai import OpenAIProvider
from crucible.providers.registry import (
    create_provider,
    identity,
    is_local,
    ordered_for_role,
    reuse_key,
)
from crucible.resilience.breaker import BreakerState, Transition
from crucible.resilience.member import Health, Member, MemberSnapshot
from crucible.resilience.policy import policy_for
from crucible.resilience.pool import ProviderPool
from crucible.review.service import ReviewService
from crucible.runtime import bytecode_cache
from crucible.runtime.memory import (
    MemoryBudget,
    MemoryRelief,
    MemorySupervisor,
    fix_mmap_threshold,
)
from crucible.runtime.notices import ProblemBoard, team_cache_problem
from crucible.runtime.otlp_target import TelemetryExport
from crucible.runtime.status_feed import ProviderHealth, StatusFeed, overall
from crucible.runtime.tasks import BackgroundTasks
from crucible.runtime.telemetry import Telemetry
from crucible.shared.resources import SharedResources
from crucible.team.composition import Team
from crucible.team.redis_link import RedisLink, TeamRedis

logger = logging.getLogger(__name__)


_NO_CACHE: dict[str, Any] = {
    "enabled": False,
    "hits": 0,
    "misses": 0,
    "type_through_hits": 0,
    "levels": {
        "l1": {"entries": 0, "bytes": 0},
        "l2": {"entries": 0, "bytes": 0},
        "l3": {"enabled": False, "state": "off", "hits": 0},
    },
}


class App:
    """Settings -> components; the LSP layer reaches everything through this object."""

    def __init__(
        self,
        *,
        config_path: Path | None = None,
        env: Mapping[str, str] = os.environ,
        shared: SharedResources | None = None,
    ):
        self._config_path = config_path
        self._env = env
        self._shared = shared
        self._workspace_root: Path | None = None
        self._init_options: object = None
        self._client_settings: object = None
        self.telemetry = Telemetry()
        # Background work, on the loop ``start`` found; before it, the work waits here.
        self._tasks: BackgroundTasks | None = None
        self._unstarted: list[tuple[Coroutine[Any, Any, None], str]] = []
        self._providers: dict[ProviderSettings, Provider] = {}
        self.cache: TieredCache | None = None
        self._cache_settings: CacheSettings | None = None
        # One failover pool per role (completion, chat), rebuilt only when its members or
        # policy change, so circuit state and latency history survive unrelated changes.
        # A provider serving both roles is in both pools, with a breaker in each: its
        # /api/generate and /api/chat can fail apart (a model without a chat template).
        self._pools: dict[Role, ProviderPool] = {}
        self._pool_keys: dict[Role, tuple[Any, ...]] = {}
        # Exclusions for this workspace (built-in, [privacy] exclude, .crucibleignore),
        # rebuilt when the root or the configured list changes.
        self._privacy: WorkspacePrivacy | None = None
        self._privacy_key: tuple[Path | None, PrivacySettings] | None = None
        self._retired: Counter[str] = Counter()  # calls and failures of replaced pools
        # What the user is told: each provider problem once (window/showMessage), and the
        # overall state on every change (crucible/didChangeStatus). Both wait for the editor.
        self._editor: EditorChannel | None = None
        self._unsent: list[str] = []  # problems found before the editor could be told
        # The workspace keys refused by the last load, as last told: said once, not on every
        # configuration change, and again only when what is refused changes.
        self._workspace_notice: str | None = None
        self.problems = ProblemBoard(self._announce, env)
        self._last_errors: dict[str, ProviderError] = {}  # per provider, for circuit messages
        self._active: dict[Role, int] = {}  # requests a user waits on, per role's pool
        self._soonest_reset: float | None = None  # read by _status_payload, for the feed
        self.status_feed = StatusFeed(self._status_payload, wake_in=self._next_reset)
        # The team's Redis ([cache] shared_url): L3 (cache/team.py) is built on its link, and
        # the providers' team limits are counted there (the pools ask its budget before each
        # call). The link is leased from the daemon when there is one (team/composition.py).
        self.team = Team(
            lease=self._lease_team_link,
            give_back=self._give_back_team_link,
            spawn=self.spawn,
            announce=self._announce,
            wording=team_cache_problem,
        )
        self.settings = Settings()
        self.completion = CompletionService(self.settings.completion, None, self.telemetry)
        # Diagnostics other tools reported, and their explanations on hover.
        self.hover = HoverService(self.settings.hover, DiagnosticsStore())
        self.review = ReviewService(self.settings.review)  # on save, off by default
        self.code_actions = CodeActionService(self.settings.code_actions, None)
        # Open documents, most recently opened/edited first: neighbour candidates.
        self.recent = RecentDocuments()
        # The memory budget ([memory]): samples RSS on the loop once started, and asks the
        # components (through ``_Relief``) to shed what they can rebuild.
        self.relief: MemoryRelief = _Relief(self)
        self._supervisor: MemorySupervisor | None = None  # its own, without the daemon
        self.memory: MemoryBudget
        if shared is not None:
            shared.join(self)
            # The daemon's budget: this session's [memory] and share (shared/budget.py).
            self.memory = shared.memory_for(self)
        else:
            self._supervisor = self.memory = MemorySupervisor(
                self.settings.memory,
                self.relief,
                components=self.memory_components,
                activity=self.telemetry.requests_total,
            )
        self._supervising: asyncio.Task[None] | None = None
        # [telemetry]: the OpenTelemetry export, when a target is configured (off by default;
        # runtime/otlp_target.py decides without importing OpenTelemetry).
        self.telemetry_export = TelemetryExport(
            self._env,
            status=self.status,
            spawn=self.spawn,
            announce=self._announce,
            version=crucible.__version__,
        )
        # With no provider configured: what was chosen and why (providers/default_choice.py),
        # and the provider that replaces the schema's default when it is not Ollama's.
        self.default_provider = DefaultProvider(
            env, changed=self._default_changed, announce=self._announce
        )
        self._apply(self._load())

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._tasks is not None

    async def start(self) -> None:
        """Start what needs the event loop, on the running one (after ``initialize``): open
        the disk cache in the background, and close what configurations applied so far
        replaced. Later calls do nothing."""
        if self._tasks is not None:
            return
        self._tasks = BackgroundTasks(asyncio.get_running_loop())
        fix_mmap_threshold()  # large texts freed go back to the system (runtime/memory.py)
        if self._supervisor is not None:
            self._supervising = self._tasks.spawn(self._supervisor.run(), name="memory supervisor")
        elif self._shared is not None:
            self._shared.start()  # the daemon's supervisor, once
        if self.cache is not None:
            self.cache.start()
        waiting, self._unstarted = self._unstarted, []
        for work, name in waiting:
            self._tasks.spawn(work, name=name)

    # -- configuration ---------------------------------------------------------------------

    def initialize(self, workspace_root: str | None, init_options: object) -> list[str]:
        self._workspace_root = Path(workspace_root) if workspace_root else None
        self._init_options = init_options
        return self._apply(self._load())

    def change_configuration(self, client_settings: object) -> list[str]:
        self._client_settings = client_settings
        return self._apply(self._load())

    def _load(self) -> LoadResult:
        result = load_settings(
            workspace_root=self._workspace_root,
            config_path=self._config_path,
            initialization_options=self._init_options,
            client_settings=self._client_settings,
            env=self._env,
        )
        chosen = self.default_provider.provider
        if chosen is None or not unconfigured(result.settings.providers):
            return result
        return dataclasses.replace(
            result, settings=dataclasses.replace(result.settings, providers=(chosen,))
        )

    # -- the default provider --------------------------------------------------------------

    @property
    def default_choice(self) -> DefaultChoice | None:
        return self.default_provider.choice

    async def _choose_default(self) -> None:
        """No provider configured: Ollama if it answers, else the local model (downloaded
        only with the user's consent). Runs once, after ``initialized``."""
        await self.default_provider.choose(self._editor)

    def _default_changed(self) -> None:
        errors = self._apply(self._load())
        if errors:
            logger.warning("configuration: %s", "; ".join(errors))

    def _apply(self, result: LoadResult) -> list[str]:
        self.settings = result.settings
        if result.workspace_notice != self._workspace_notice:
            self._workspace_notice = result.workspace_notice
            if result.workspace_notice is not None:
                logger.warning("configuration: %s", result.workspace_notice)
                self._announce(result.workspace_notice)
        # The user may have fixed what was wrong: problems still there are said again, and
        # providers whose key was rejected may be called again.
        self.problems.reset()
        self._last_errors.clear()
        wanted = result.settings.providers
        # Keyed by what needs a new provider when it changes: a new team limit does not.
        kept = [reuse_key(s) for s in wanted]
        stale = [p for key, p in self._providers.items() if key not in kept]
        self._providers = {key: self._providers.get(key) or self._create(key) for key in kept}
        for provider in stale:
            self._close_later(provider)
        completion_settings = ordered_for_role(wanted, Role.COMPLETION)
        self.team.apply(result.settings)
        for role in Role:
            self._apply_pool(role, ordered_for_role(wanted, role), result.settings)
        self._apply_cache(result.settings.cache)
        self.completion.reconfigure(
            result.settings.completion,
            self.pool(Role.COMPLETION),
            cache=self.cache,
            identity=[identity(s) for s in completion_settings],
            prefetch=_prefetch_on(result.settings.cache.prefetch, completion_settings),
            # A local server's prompt cache is worth a superseded prompt's few seconds; a
            # hosted API's capacity is not ours to spend.
            warm_prompts=all(is_local(s) for s in completion_settings),
            privacy=self._workspace_privacy(result.settings.privacy),
            redact=result.settings.privacy.redact,
        )
        self._apply_chat_features(result.settings)
        self.memory.reconfigure(result.settings.memory)
        self.telemetry_export.apply(result.settings.telemetry)
        for pool in self._pools.values():
            pool.enable_all()
        logger.info(
            "configuration applied: completion providers %s",
            [s.name for s in completion_settings] or "none",
        )
        self.status_feed.changed()
        return [str(error) for error in result.errors]

    def _apply_chat_features(self, settings: Settings) -> None:
        """Code actions, hover and review: the features the chat pool serves."""
        chat = ordered_for_role(settings.providers, Role.CHAT)
        self.hover.reconfigure(
            settings.hover,
            self.pool(Role.CHAT),
            cache=self.cache,
            identity=[identity(s) for s in chat],
            prefetch=_prefetch_on(settings.hover.prefetch, chat),
            privacy=self._workspace_privacy(settings.privacy),
            redact=settings.privacy.redact,
            busy=lambda: self._active.get(Role.COMPLETION, 0) > 0,
        )
        self.review.reconfigure(
            settings.review,
            self.pool(Role.CHAT),
            cache=self.cache,
            identity=[identity(s) for s in chat],
            privacy=self._workspace_privacy(settings.privacy),
            redact=settings.privacy.redact,
        )
        self.code_actions.reconfigure(
            settings.code_actions,
            self.pool(Role.CHAT),
            privacy=self._workspace_privacy(settings.privacy),
            redact=settings.privacy.redact,
        )

    def _workspace_privacy(self, settings: PrivacySettings) -> WorkspacePrivacy:
        key = (self._workspace_root, settings)
        if self._privacy is None or key != self._privacy_key:
            self._privacy = WorkspacePrivacy(self._workspace_root, settings.exclude)
            self._privacy_key = key
        return self._privacy

    def pool(self, role: Role) -> ProviderPool | None:
        """The failover pool of the providers serving ``role``; None when none does."""
        return self._pools.get(role)

    def cancel_warming(self) -> int:
        """Cancel provider attempts left warming in every pool (memory pressure)."""
        return sum(pool.cancel_warming() for pool in self._pools.values())

    def _apply_pool(
        self, role: Role, members: tuple[ProviderSettings, ...], settings: Settings
    ) -> None:
        policy = policy_for(settings) if members else None
        # Not the team budget nor the team limits: a new budget is handed to the pool as it
        # stands, so its breakers, latencies and parks survive a change of limits.
        key = (tuple(reuse_key(s) for s in members), policy)
        if key == self._pool_keys.get(role):
            if (kept := self._pools.get(role)) is not None:
                kept.use_budget(self.team.budget)
            return
        old = self._pools.pop(role, None)
        self._pool_keys[role] = key
        if members:
            pool = ProviderPool(
                [(self._providers[reuse_key(s)], s.priority) for s in members],
                policy,
                owns_providers=False,  # shared with the next pool; closed by _apply / aclose
                on_queued=lambda seconds: self.telemetry.stage("queue", seconds * 1000),
                on_outcome=self._on_outcome,
                on_activity=functools.partial(self._on_activity, role),
                # Each provider's own connection pool caps its concurrency, not the smallest.
                max_connections={s.name: s.max_connections for s in members},
                budget=self.team.budget,
            )
            pool.add_listener(functools.partial(self._on_transition, pool))
            self._pools[role] = pool
        if old is not None:
            for member in old.snapshot():
                self._retired["calls"] += member.calls
                self._retired["errors"] += member.failures
            self.spawn(old.aclose(), "close the old provider pool")

    def _apply_cache(self, settings: CacheSettings) -> None:
        """Rebuild the cache when its settings changed (answers are kept on disk, and keys
        carry everything else that changes an answer); open it once started (``start``
        opens one built before)."""
        if settings != self._cache_settings:
            old, self.cache = self.cache, self._lease_cache(settings)
            self._cache_settings = settings
            if old is not None:
                self._release_cache(old)
            # A cache built under memory pressure starts with the budget the supervisor set.
            if self.cache is not None and self.memory.cache_fraction < 1.0:
                budget = settings.memory_mb * self.memory.cache_fraction * (1 << 20)
                self.cache.set_memory_budget(int(budget))  # empty: nothing to evict
        if self.cache is not None and self.started:
            self.cache.start()  # once: later calls find it started

    def _lease_team_link(self, target: TeamRedis) -> RedisLink:
        """The link to ``target``: the daemon's shared one (same target and password), else a
        new one (``Team``'s ``lease``)."""
        if self._shared is not None:
            return self._shared.redis_link(target, self._env, holder=self)
        return RedisLink(target, self._env)

    def _give_back_team_link(self, link: RedisLink) -> Coroutine[Any, Any, None] | None:
        """``Team``'s ``give_back``: to the daemon (its last holder's release closes it), else
        the closing to run."""
        if self._shared is not None:
            self._shared.release(link, self)
            return None
        return link.aclose()

    def _lease_cache(self, settings: CacheSettings) -> TieredCache | None:
        """The cache ``settings`` ask for: the daemon's shared one for them, else a new one."""
        if not settings.enabled:
            return None
        path = self._disk_path(settings)
        if self._shared is None:
            return self._build_cache(settings, path)
        # Shared with the sessions configured alike and using the same link (the same team
        # Redis with the same password).
        return self._shared.cache(
            (settings, path, self.team.link),
            lambda: self._build_cache(settings, path),
            holder=self,
        )

    def _release_cache(self, cache: TieredCache) -> None:
        if self._shared is None:
            self.spawn(cache.aclose(), "close the old cache")
        else:
            self._shared.release(cache, self)

    def _disk_path(self, settings: CacheSettings) -> Path | None:
        if not settings.disk:
            return None
        if settings.disk_path:
            return Path(settings.disk_path).expanduser()
        return default_cache_dir(self._env) / FILE_NAME

    def _build_cache(self, settings: CacheSettings, path: Path | None) -> TieredCache:
        disk = None
        if path is not None:
            disk = DiskCache(
                path,
                max_bytes=int(settings.disk_mb * 1024 * 1024),
                ttl_s=settings.disk_ttl_hours * 3600,
            )
        team = None
        if self.team.link is not None:
            team = TeamCache(
                self.team.link,
                timeout_s=settings.shared_timeout_ms / 1000,
                ttl_s=settings.shared_ttl_s,
                max_bytes=int(settings.shared_max_mb * 1024 * 1024),
            )
        return TieredCache(
            memory_bytes=int(settings.memory_mb * 1024 * 1024),
            ttl_s=settings.ttl_s,
            disk=disk,
            team=team,
        )

    async def clear_cache(self) -> dict[str, int]:
        """``crucible.clearCache``: this user's levels emptied; L3 is the team's, kept
        (``l3_kept``). In the shared daemon, for every window using this cache
        (``SharedResources.clear_cache`` says how many)."""
        if self.cache is None:
            return {"l1": 0, "type_through": 0, "l2": 0}
        if self._shared is not None:
            return await self._shared.clear_cache(self.cache, self)
        return await self.cache.clear()

    def _create(self, settings: ProviderSettings) -> Provider:
        if self._shared is not None:  # notices and batches reach every session holding it
            return self._shared.provider(
                settings, self._env, lambda: create_provider(settings), holder=self
            )
        provider = create_provider(settings)
        if isinstance(provider, HttpProvider | LocalProvider):
            # A degradation the provider works around (a model without FIM tokens): the
            # answer still comes, but the user should know why it is worse.
            provider.on_notice = lambda error: self._provider_failed(settings.name, error)
        if isinstance(provider, OpenAIProvider):
            # Counted here, not on the provider: a configuration change replaces providers,
            # but the server's counters live as long as the server.
            provider.on_batch = self.count_batch
        return provider

    def count_batch(self, waits_ms: tuple[float, ...]) -> None:
        """A batched call's queue waits (a provider's ``on_batch``, or the shared daemon's)."""
        for waited in waits_ms:
            self.telemetry.stage("queue", waited)
        if len(waits_ms) > 1:
            self.telemetry.mark("batched", len(waits_ms))

    def _close_later(self, provider: Provider) -> None:
        if self._shared is not None:
            self._shared.release(provider, self)
        else:
            self.spawn(provider.aclose(), f"close {provider.name}")

    # The shared daemon's view of this session (``shared/resources.py`` ``SessionBackend``).

    def provider_notice(self, name: str, error: ProviderError) -> None:
        self._provider_failed(name, error)

    def requests_total(self) -> int:
        return self.telemetry.requests_total()

    def providers(self) -> list[Provider]:
        """The providers of the configuration in force."""
        return list(self._providers.values())

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` in the background; before ``start``, once started."""
        if self._tasks is None:
            self._unstarted.append((work, name))
        else:
            self._tasks.spawn(work, name=name)

    # -- what the user is told -------------------------------------------------------------

    def connect_editor(self, editor: EditorChannel) -> None:
        """The editor is ready for messages and notifications (after ``initialized``)."""
        self._editor = editor
        unsent, self._unsent = self._unsent, []
        for message in unsent:
            editor.show_warning(message)
        self.status_feed.connect(editor.send_status)
        if unconfigured(self.settings.providers) and self.default_choice is None:
            self.spawn(self._choose_default(), "choose the default provider")

    def _announce(self, message: str) -> None:
        if self._editor is not None:
            self._editor.show_warning(message)
        elif len(self._unsent) < 10:  # bounded: one per provider problem at start-up
            self._unsent.append(message)

    def _provider_settings(self, name: str) -> ProviderSettings | None:
        return next((s for s in self.settings.providers if s.name == name), None)

    def _provider_failed(self, name: str, error: ProviderError) -> None:
        settings = self._provider_settings(name)
        if settings is not None:
            self._last_errors[name] = error
            self.problems.failed(settings, error)

    def _on_outcome(self, member: Member, error: ProviderError | None) -> None:
        if error is None:
            self.problems.recovered(member.name)
        else:
            self._provider_failed(member.name, error)
        self.status_feed.changed()

    def _on_activity(self, role: Role, active: int) -> None:
        """Busy while a user waits on any role's pool (a completion, a code action)."""
        self._active[role] = active
        self.status_feed.changed()

    def _on_transition(self, pool: ProviderPool, change: Transition) -> None:
        if change.to_state is BreakerState.OPEN:
            settings = self._provider_settings(change.name)
            if settings is not None:
                others = sum(
                    1
                    for m in pool.snapshot()
                    if m.name != change.name and m.health in (Health.READY, Health.SLOW)
                )
                self.problems.circuit_opened(settings, self._last_errors.get(change.name), others)
        self.status_feed.changed()

    def _members(self) -> dict[str, MemberSnapshot]:
        """Each provider as its pools see it: the completion pool's view where it serves
        completions (the role users feel on every keystroke), else the chat pool's."""
        members: dict[str, MemberSnapshot] = {}
        for role in (Role.CHAT, Role.COMPLETION):
            pool = self._pools.get(role)
            members.update((m.name, m) for m in (pool.snapshot() if pool is not None else ()))
        return members

    def _status_payload(self) -> dict[str, Any]:
        members = self._members()
        self._soonest_reset = min(
            (m.parked_remaining_s for m in members.values() if m.health is Health.RATE_LIMITED),
            default=None,
        )
        return overall(
            enabled=self.settings.completion.enabled,
            providers=[
                ProviderHealth(
                    s.name,
                    m.health if m is not None else Health.READY,
                    # Only completion providers decide the state (a chat-only one does not).
                    m is not None and Role.COMPLETION in s.roles,
                    m.parked_remaining_s if m is not None else 0.0,
                )
                for s in self.settings.providers
                for m in [members.get(s.name)]
            ],
            busy=any(self._active.values()),
            problems=self.problems.current,
        )

    def _next_reset(self) -> float | None:
        """Seconds until the soonest rate limit resets (the status changes then), or None:
        as the status feed's last ``_status_payload`` read it, just before it asks."""
        return self._soonest_reset

    # -- status and lifetime ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        telemetry = self.telemetry.snapshot()
        members = self._members()
        return {
            "version": crucible.__version__,
            # What crucible/didChangeStatus last said, as of now.
            "status": self._status_payload(),
            **telemetry,
            "scheduling": self.completion.scheduling_snapshot(),
            "prefetch": self.completion.prefetch_snapshot(),
            "privacy": self.completion.privacy_snapshot(),
            "cache": self.cache.stats() if self.cache is not None else _NO_CACHE,
            "hover": self.hover.snapshot(),
            "review": self.review.snapshot(),
            "upstream": self._upstream(),
            # The team's Redis ([cache] shared_url) as the budget (and L3) see it.
            "team_redis": self.team.status(),
            "code_actions": self.code_actions.snapshot(),
            "providers": [
                {
                    "name": s.name,
                    "kind": str(s.kind),
                    # A local model_path serves that file, not the catalogue model named by model.
                    "model": (
                        Path(s.model_path).name
                        if s.kind is ProviderKind.LOCAL and s.model_path
                        else s.model
                    ),
                    "roles": [str(r) for r in s.roles],
                    **_member_status(members.get(s.name)),
                    # Its share of the team's limits ([[providers]] team_*), as last known.
                    "team_budget": self.team.budget_status(s.name),
                    # The local kind's own llama.cpp server: state, pid, start-up time, RSS.
                    **(
                        {"managed": provider.status()}
                        if isinstance(provider := self._providers.get(reuse_key(s)), LocalProvider)
                        else {}
                    ),
                }
                for s in self.settings.providers
            ],
            "memory": {**self.memory.snapshot(), "background_tasks": self._background_tasks()},
            # With no provider configured: which default, and why.
            "default_provider": (
                {"kind": self.default_choice.kind, "reason": self.default_choice.reason}
                if self.default_choice is not None
                else None
            ),
            # The OpenTelemetry export: where to (host only), and how it is doing.
            "telemetry_export": self.telemetry_export.record.snapshot(),
            # Served by the shared daemon: which process, and how many windows it serves.
            **({"shared": self._shared.snapshot()} if self._shared is not None else {}),
            # This process's start: attrs' generated methods read from the bytecode cache
            # (hits) or compiled (misses, uncached); None when the cache is off.
            "startup": {"bytecode_cache": bytecode_cache.snapshot()},
        }

    def _background_tasks(self) -> int:
        """Owned background work in flight: prefetches (completions, hover), the team cache's
        writer (L3) and the App's own (closing what a change replaced, the supervisor)."""
        owned = len(self._tasks) if self._tasks is not None else 0
        cache = self.cache.background_tasks() if self.cache is not None else 0
        return owned + cache + self.completion.background_tasks() + self.hover.background_tasks()

    def memory_components(self) -> dict[str, int]:
        """Bytes held per component, each as the component estimates it (crucible/status
        ``memory.components``; the supervisor names the largest when it warns)."""
        cache = self.cache.memory_bytes() if self.cache is not None else {}
        return {
            "documents": self._editor.documents_bytes() if self._editor is not None else 0,
            "l1": cache.get("l1", 0),
            "type_through": cache.get("type_through", 0),
            "diagnostics": self.hover.store.memory_bytes(),
            "review": self.review.memory_bytes(),
            "telemetry": self.telemetry.memory_bytes(),
            "pools": sum(pool.memory_bytes() for pool in self._pools.values()),
        }

    def _upstream(self) -> dict[str, int]:
        """Provider calls (attempts: a failover is two) and failed ones, since start-up,
        of every role."""
        live = [m for pool in self._pools.values() for m in pool.snapshot()]
        return {
            "calls": self._retired["calls"] + sum(m.calls for m in live),
            "errors": self._retired["errors"] + sum(m.failures for m in live),
        }

    async def aclose(self) -> None:
        self.default_provider.cancel()
        await self.telemetry_export.aclose(started=self.started)
        if self._supervising is not None:
            self._supervising.cancel()
        self.status_feed.close()
        self._editor = None
        await self.completion.aclose()
        await self.hover.aclose()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
        providers = list(self._providers.values())
        self._providers = {}
        if self._shared is not None:  # given back: the last session's release closes them
            for provider in providers:
                self._shared.release(provider, self)
            if self.cache is not None:
                self._shared.release(self.cache, self)
                self.cache = None
            await self.team.aclose()
            self._shared.leave(self)
        else:
            for provider in providers:
                await provider.aclose()
            if self.cache is not None:
                await self.cache.aclose()
            await self.team.aclose()
        waiting, self._unstarted = self._unstarted, []  # never started: close them now
        await asyncio.gather(*(work for work, _ in waiting), return_exceptions=True)
        if self._tasks is not None:
            await self._tasks.aclose()


class _Relief:
    """The memory supervisor's requests (``runtime/memory.py`` ``MemoryRelief``), carried out
    on whatever components the App has now (a configuration change may have replaced them)."""

    def __init__(self, app: App) -> None:
        self._app = app

    def limit_cache(self, fraction: float) -> Awaitable[None] | None:
        cache, settings = self._app.cache, self._app.settings.cache
        if cache is None:
            return None
        if fraction >= 1.0:
            cache.restore_memory_budget()
            return None
        return cache.shrink_memory(int(settings.memory_mb * fraction * (1 << 20)))

    def drop_idle_state(self, idle_s: float) -> None:
        self._app.completion.drop_idle(idle_s)
        self._app.recent.drop_idle(idle_s)  # neighbour candidates; back on their next edit

    def pause_background(self, paused: bool) -> None:
        self._app.completion.pause_prefetch(paused)
        self._app.hover.pause_prefetch(paused)

    def cancel_background(self) -> None:
        self._app.completion.cancel_background()
        self._app.hover.cancel_background()
        self._app.cancel_warming()

    def clear_cache(self) -> None:
        if self._app.cache is not None:
            self._app.cache.clear_memory()

    def release_connections(self) -> Awaitable[None] | None:
        providers = [p for p in self._app.providers() if isinstance(p, HttpProvider)]
        if not providers:
            return None
        return _release_all(providers)

    def tell_user(self, message: str) -> None:
        self._app._announce(message)


async def _release_all(providers: Sequence[HttpProvider]) -> None:
    await asyncio.gather(*(provider.release_idle_connections() for provider in providers))


def _prefetch_on(setting: Prefetch, providers: tuple[ProviderSettings, ...]) -> bool:
    """Whether background work (prefetch) is on: ``auto`` means only when every provider it
    would use is local, since a local server's idle time is free and a hosted API's is billed."""
    if setting is Prefetch.AUTO:
        return bool(providers) and all(is_local(s) for s in providers)
    return setting is Prefetch.ON


def _member_status(member: MemberSnapshot | None) -> dict[str, Any]:
    """A provider's health for crucible/status; one serving no pool (a role nothing uses yet)
    has made no calls and its circuit is closed."""
    if member is None:
        return {
            "state": "closed",
            "health": str(Health.READY),
            "calls": 0,
            "failures": 0,
            "last_error": None,
        }
    return {
        "state": member.state,
        "health": str(member.health),
        "disabled": member.disabled,
        "warming": member.warming,
        "calls": member.calls,
        "failures": member.failures,
        "last_error": member.last_error,
        "latency_ms": member.latency_percentiles(),
        "first_byte_ms": member.first_byte_percentiles(),
        "trips": member.trips,
        "consecutive_failures": member.consecutive_failures,
        "failure_rate": round(member.failure_rate, 3),
        "calls_in_window": member.calls_in_window,
        "cooldown_remaining_s": round(member.cooldown_remaining_s, 3),
        "parked_remaining_s": round(member.parked_remaining_s, 3),
        "parked_reason": member.parked_reason,
        "concurrency_limit": member.concurrency_limit,
        "first_byte_baseline_ms": member.first_byte_baseline_ms,
        "in_flight": member.in_flight,
        "queued": member.queued,
    }


def build_server(app: App) -> CrucibleLanguageServer:
    server = CrucibleLanguageServer(app)
    register_all(server)
    fast_lane.install(server)
    return server
