"""Team: the team's side of one configuration, built from Settings and kept across changes.

It owns what a team's Crucibles share through the team's Redis, for one ``App``:

- ``link``, the ``RedisLink`` to ``[cache] shared_url`` (None without one): one per target
  (url, password variable, namespace), leased from the shared daemon when there is one, kept
  across unrelated changes and replaced (the old one given back) when the target changes. Its
  problem (Redis not answering, the library missing) is told once per link, and not at all
  while a team budget is in force: the budget's own notice of the outage is the one message;
- ``budget``, the ``TeamBudget`` of the providers with team limits (None without any):
  rebuilt when which providers have limits, on which API, the link or the wait allowed for
  it (``shared_timeout_ms``) change; new limits of the same providers are applied to it in
  place, so its meters and counts go on.

What reads them is wired by ``App``: L3 (``cache/team.py``) is built on ``link`` with the
cache, and the pools are handed ``budget``. A new link loads the redis library (off the loop)
and a new budget its script, in the background and in that order, never on the way to an
answer.

Its life: ``apply(settings)`` on every configuration, before the cache and the pools (which
read ``link`` and ``budget``), then ``aclose()``. The App's own hooks are injected (``lease``
and ``give_back`` for the daemon's sharing, ``spawn``, ``announce``, the problem's wording),
so this module imports nothing above the team's primitives.

Errors: none raised; the link and the budget report their own (``redis_link.py``,
``budget.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from crucible.config.settings import Settings
from crucible.team.budget import TeamBudget, TeamLimits, budget_identity
from crucible.team.redis_link import LinkState, RedisLink, TeamRedis

__all__ = ["Team"]

# Runs a coroutine in the App's background work, under a name (``App.spawn``).
Spawn = Callable[[Coroutine[Any, Any, None], str], None]
# The link's problem in words for the user, or None when its state is no problem
# (``runtime/notices.py`` ``team_cache_problem``: state, reason, masked url).
Wording = Callable[[str, str, str], str | None]


class Team:
    """The team's link and budget for one App; see the module docstring."""

    def __init__(
        self,
        *,
        lease: Callable[[TeamRedis], RedisLink],
        give_back: Callable[[RedisLink], Coroutine[Any, Any, None] | None],
        spawn: Spawn,
        announce: Callable[[str], None],
        wording: Wording,
    ) -> None:
        self._lease = lease  # a link to a target: the daemon's shared one, or a new one
        self._give_back = give_back  # the link is no longer used: what closes it, if anything
        self._spawn = spawn
        self._announce = announce
        self._wording = wording
        self.link: RedisLink | None = None
        self.budget: TeamBudget | None = None
        self._budget_key: tuple[Any, ...] | None = None
        self._told = False  # the link's problem was told (once per link)

    def apply(self, settings: Settings) -> None:
        """The link ``[cache]`` names and the budget of the providers with team limits, as
        ``settings`` want them (the module docstring says what is kept)."""
        target = TeamRedis.from_settings(settings.cache)
        old = self.link
        new_link = (old.target if old is not None else None) != (target if target.url else None)
        if new_link:
            self.link = self._open(target) if target.url else None
            if old is not None:
                self._close_later(old)
        budgeted = tuple(s for s in settings.providers if TeamLimits.of(s).any)
        apis = tuple((s.name, budget_identity(s)) for s in budgeted)
        key = (apis, self.link, settings.cache.shared_timeout_ms)
        if key == self._budget_key:  # the same link too (a new one is a new key)
            if self.budget is not None:
                self.budget.update_limits(budgeted)
            return
        self._budget_key = key
        self.budget = (
            TeamBudget(
                budgeted,
                self.link,
                budget_s=settings.cache.shared_timeout_ms / 1000,
                notify=self._announce,
            )
            if budgeted
            else None
        )
        link = self.link if new_link else None
        if link is not None or self.budget is not None:
            self._spawn(_ready(link, self.budget), "ready the team's redis")

    def status(self) -> dict[str, Any]:
        """``crucible/status`` ``team_redis``: the link as the budget (and L3) see it."""
        return self.link.status() if self.link is not None else {"state": "off"}

    def budget_status(self, provider: str) -> dict[str, Any]:
        """``crucible/status`` ``providers[i].team_budget``: its share of the team's limits."""
        return self.budget.status(provider) if self.budget is not None else {"state": "off"}

    async def aclose(self) -> None:
        """Give the link back (closed, unless the daemon's other sessions still use it)."""
        link, self.link = self.link, None
        if link is not None:
            link.remove_listener(self._link_changed)
            closing = self._give_back(link)
            if closing is not None:
                await closing

    def _open(self, target: TeamRedis) -> RedisLink:
        """The link to ``target``. The redis library is imported by ``warm`` (``_ready``), in
        the background."""
        link = self._lease(target)
        link.add_listener(self._link_changed)
        self._told = False
        return link

    def _close_later(self, link: RedisLink) -> None:
        link.remove_listener(self._link_changed)
        closing = self._give_back(link)
        if closing is not None:
            self._spawn(closing, "close the old team redis link")

    def _link_changed(self, state: LinkState, reason: str) -> None:
        """The team's Redis went down (or the library is missing): said once per link; the
        log has every change (``RedisLink``) and ``crucible/status`` the state now. With a
        team budget in force, the budget's own notice of the outage is the one message."""
        link = self.link
        if link is None or self._told or self.budget is not None:
            return
        message = self._wording(str(state), reason, link.status()["url"])
        if message is not None:
            self._told = True
            self._announce(message)


async def _ready(link: RedisLink | None, budget: TeamBudget | None) -> None:
    """A new link loads its library (off the loop), then a new budget loads its script:
    in this order, so the script finds the client made."""
    if link is not None:
        await link.warm()
    if budget is not None:
        await budget.prepare()
