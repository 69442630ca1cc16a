"""scheduling/eager.py: a coroutine started at once answers without a loop turn when it
needs no waiting, and otherwise goes on as a task, cancellable where it waits."""

from __future__ import annotations

import asyncio

import pytest

from crucible.scheduling.eager import started


async def test_an_answer_that_needs_no_waiting_is_ready_at_once() -> None:
    steps: list[str] = []

    async def ready() -> int:
        steps.append("ran")
        return 7

    answer = started(ready())
    assert steps == ["ran"] and answer.done() and answer.result() == 7


async def test_a_failure_without_waiting_is_in_the_future() -> None:
    async def fails() -> int:
        raise ValueError("no")

    answer = started(fails())
    assert answer.done()
    with pytest.raises(ValueError, match="no"):
        answer.result()


async def test_one_that_waits_goes_on_where_it_stopped() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> int:
        steps.append("first")
        value = await gate
        await asyncio.sleep(0)
        steps.append("rest")
        return value * 2

    answer = started(waits())
    assert steps == ["first"] and not answer.done()
    gate.set_result(21)
    assert await answer == 42
    assert steps == ["first", "rest"]


async def test_a_cancel_reaches_it_where_it_waits() -> None:
    seen: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    answer = started(waits())
    await asyncio.sleep(0)
    answer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await answer
    assert seen == ["cancelled"] and answer.cancelled()


async def test_a_cancel_it_catches_lets_it_answer() -> None:
    async def shrugs() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "stopped"
        return "slept"

    answer = started(shrugs())
    await asyncio.sleep(0)
    answer.cancel()
    assert await answer == "stopped"
