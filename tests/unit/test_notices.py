"""ProblemBoard and the status feed: what the user is told, once, and the state an editor's
status bar shows, rate-limited. Pure logic with an injected clock; the end-to-end behaviour is
in tests/e2e/test_user_feedback.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.providers.errors import (
    AuthError,
    BadResponse,
    FimUnsupported,
    ModelNotFound,
    ProviderUnavailable,
)
from crucible.resilience.errors import FirstByteTimeout
from crucible.resilience.member import Health
from crucible.runtime.notices import ProblemBoard
from crucible.runtime.status_feed import ProviderHealth, StatusFeed, overall

OLLAMA = ProviderSettings(name="local", kind=ProviderKind.OLLAMA, base_url="http://127.0.0.1:11434")
HOSTED = ProviderSettings(
    name="hosted",
    kind=ProviderKind.OPENAI,
    base_url="https://api.example.com/v1",
    model="coder",
    api_key_env="EXAMPLE_KEY",
)
REFUSED = ProviderUnavailable("local", "connection refused (http://127.0.0.1:11434)")


def board(env: dict[str, str] | None = None) -> tuple[ProblemBoard, list[str]]:
    told: list[str] = []
    return ProblemBoard(told.append, env or {}), told


def test_a_refused_connection_is_told_once_with_what_to_do() -> None:
    problems, told = board()
    for _ in range(20):  # one per keystroke
        problems.failed(OLLAMA, REFUSED)
    assert told == [
        "Crucible: Ollama at http://127.0.0.1:11434 refused the connection. Is `ollama serve`"
        " running? (crucible-lsp doctor for details)"
    ]


def test_a_problem_is_told_again_only_after_it_cleared_or_the_configuration_changed() -> None:
    problems, told = board()
    problems.failed(OLLAMA, REFUSED)
    problems.failed(OLLAMA, REFUSED)
    problems.recovered("local")
    problems.failed(OLLAMA, REFUSED)
    assert len(told) == 2
    problems.reset()
    problems.failed(OLLAMA, REFUSED)
    assert len(told) == 3


def test_transient_errors_wait_for_the_circuit_to_open() -> None:
    problems, told = board()
    for error in (
        FirstByteTimeout("local", "no first byte"),
        BadResponse("local", "x"),
        ProviderUnavailable("local", "HTTP 503: overloaded"),
    ):
        problems.failed(OLLAMA, error)
    assert told == []
    problems.circuit_opened(OLLAMA, ProviderUnavailable("local", "HTTP 503"), others=1)
    problems.circuit_opened(OLLAMA, ProviderUnavailable("local", "HTTP 503"), others=1)
    assert told == [
        "Crucible: Ollama at http://127.0.0.1:11434 is answering with server errors; suggestions"
        " come from the other providers until it recovers. (crucible-lsp doctor for details)"
    ]


def test_a_rejected_key_names_the_variable_never_the_key() -> None:
    secret = "sk-live-abcdef0123456789"
    problems, told = board({"EXAMPLE_KEY": secret})
    problems.failed(HOSTED, AuthError("hosted", "HTTP 401: Incorrect API key provided: sk-***"))
    assert len(told) == 1
    assert "rejected the API key in the environment variable EXAMPLE_KEY" in told[0]
    assert "stops calling 'hosted' until its configuration changes" in told[0]
    assert secret not in told[0] and secret[:6] not in told[0]


def test_a_missing_key_says_which_variable_to_set() -> None:
    problems, told = board({})
    problems.failed(HOSTED, AuthError("hosted", "HTTP 401: Unauthorized"))
    assert "the environment variable EXAMPLE_KEY (api_key_env) is not set" in told[0]
    unnamed = ProviderSettings(name="bare", kind=ProviderKind.OPENAI, base_url="https://x.io/v1")
    problems.failed(unnamed, AuthError("bare", "HTTP 401"))
    assert "set api_key_env for 'bare'" in told[1]


def test_a_missing_model_and_a_model_without_fim_say_what_to_do() -> None:
    problems, told = board()
    problems.failed(OLLAMA, ModelNotFound("local", "HTTP 404: model not found"))
    problems.failed(OLLAMA, FimUnsupported("local", "HTTP 400: does not support insert"))
    assert "Run `ollama pull qwen2.5-coder:1.5b-base`" in told[0]
    assert "cannot fill in the middle" in told[1]
    problems.recovered("local")  # the fallback answering does not cure the model
    problems.failed(OLLAMA, FimUnsupported("local", "again"))
    assert len(told) == 2


def health(*pairs: tuple[str, Health]) -> list[ProviderHealth]:
    return [ProviderHealth(name, state, True) for name, state in pairs]


def test_the_overall_state_rules() -> None:
    ready = health(("a", Health.READY), ("b", Health.READY))
    assert overall(enabled=True, providers=ready, busy=False, problems=[])["state"] == "ready"
    assert overall(enabled=True, providers=ready, busy=True, problems=[])["state"] == "busy"
    assert overall(enabled=False, providers=ready, busy=True, problems=[])["state"] == "disabled"
    assert overall(enabled=True, providers=[], busy=False, problems=[])["state"] == "disabled"
    half = health(("a", Health.OFFLINE), ("b", Health.SLOW))
    degraded = overall(enabled=True, providers=half, busy=False, problems=["Crucible: a is down"])
    assert (degraded["state"], degraded["message"]) == ("degraded", "Crucible: a is down")
    down = health(("a", Health.FAILING), ("b", Health.DISABLED))
    assert overall(enabled=True, providers=down, busy=True, problems=[])["state"] == "offline"
    slow = overall(enabled=True, providers=health(("a", Health.SLOW)), busy=False, problems=[])
    assert slow["state"] == "ready" and "a slow" in slow["message"]
    assert slow["providers"] == [{"name": "a", "state": "slow"}]
    chat_only = [*health(("a", Health.READY)), ProviderHealth("c", Health.READY, False)]
    assert overall(enabled=True, providers=chat_only, busy=False, problems=[])["state"] == "ready"


def test_a_rate_limited_provider_is_waited_for_not_failing() -> None:
    wall = 1_700_000_000.0  # resets at wall + 42 s, shown as the local time of day
    at = time.strftime("%H:%M:%S", time.localtime(wall + 42))
    parked = ProviderHealth("gateway", Health.RATE_LIMITED, True, resets_in_s=42.0)
    fallback = ProviderHealth("local", Health.READY, True)
    # Another serves meanwhile: degraded, in the rate limit's words, not a problem's.
    degraded = overall(
        enabled=True, providers=[parked, fallback], busy=False, problems=["old"], wall_now=wall
    )
    assert degraded["state"] == "degraded"
    assert degraded["message"] == (
        f"Crucible: waiting for gateway's rate limit (resets at {at}); local serves meanwhile"
    )
    assert degraded["providers"][0] == {"name": "gateway", "state": "rate_limited"}
    # Nobody else: offline (no suggestions now), still in its words.
    alone = overall(enabled=True, providers=[parked], busy=False, problems=[], wall_now=wall)
    assert alone == {
        "state": "offline",
        "message": f"Crucible: waiting for gateway's rate limit (resets at {at})",
        "providers": [{"name": "gateway", "state": "rate_limited"}],
    }
    # Something actually failing as well: the failing words win.
    broken = ProviderHealth("other", Health.FAILING, True)
    mixed = overall(enabled=True, providers=[parked, broken, fallback], busy=False, problems=[])
    assert mixed["message"].startswith("Crucible: some providers are failing")


async def test_the_feed_looks_again_when_a_rate_limit_resets() -> None:
    reset = {"in": 0.05}  # seconds until the wait ends, as the App reads its members
    state = {"state": "degraded"}
    sent: list[str] = []
    feed = StatusFeed(lambda: dict(state), wake_in=lambda: reset["in"])
    feed.connect(lambda payload: sent.append(payload["state"]))
    state["state"], reset["in"] = "ready", None  # the reset passed: nothing else happens
    await asyncio.sleep(0.3)
    assert sent == ["degraded", "ready"]  # told without a request to trigger it
    feed.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_feed_sends_changes_only_and_at_most_one_per_interval() -> None:
    state: dict[str, Any] = {"state": "ready"}
    sent: list[str] = []
    clock = Clock()
    feed = StatusFeed(lambda: dict(state), min_interval=0.05, clock=clock)
    feed.changed()  # not connected: nothing
    feed.connect(lambda payload: sent.append(payload["state"]))
    assert sent == ["ready"]
    feed.changed()
    await asyncio.sleep(0.1)
    assert sent == ["ready"]  # unchanged: nothing sent
    clock.now = 1.0
    state["state"] = "busy"
    feed.changed()
    assert sent == ["ready", "busy"]
    # Busy and back within the interval: coalesced into nothing at all.
    state["state"] = "ready"
    feed.changed()
    state["state"] = "busy"
    feed.changed()
    await asyncio.sleep(0.1)
    assert sent == ["ready", "busy"]
    clock.now = 2.0
    state["state"] = "offline"
    feed.changed()
    assert sent == ["ready", "busy", "offline"]
    state["state"] = "ready"
    feed.changed()  # within the interval of the last send: deferred
    assert sent[-1] == "offline"
    await asyncio.sleep(0.1)
    assert sent == ["ready", "busy", "offline", "ready"]
    feed.close()


def test_no_first_byte_even_after_warming_is_told_at_once() -> None:
    from crucible.resilience.errors import NoFirstByte

    problems, told = board()
    problems.failed(OLLAMA, NoFirstByte("local", "no first byte within 15 s"))
    assert told == [
        "Crucible: Ollama at http://127.0.0.1:11434 has not started answering a completion (no"
        " first byte within 15 s). Is it stuck or overloaded? (crucible-lsp doctor for details)"
    ]
