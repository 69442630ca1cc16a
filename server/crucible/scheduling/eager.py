"""Start a coroutine at once: when it needs no waiting, its answer costs no loop turn.

``asyncio.ensure_future`` runs a coroutine's first step on the next turn of the loop, and
whoever awaits the task resumes one turn after it ends: two turns, a task and its callbacks
for an answer that was ready at once. A keystroke typed through a suggestion is such an
answer (``CompletionService.complete``: the rest of the suggestion, from memory), and those
turns were a sizeable part of its cost (``docs/architecture.md``, "The transport").
Python 3.12's eager tasks do this; this is the same for 3.11.

``started(coro)`` runs the first step now, in the caller's context: a coroutine that returns
(or raises) without waiting gives a Future already done; one that waits goes on as a task
from where it stopped, cancellable as any task (a cancel is thrown into it where it waits).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def started(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """``coro`` with its first step already run (module docstring)."""
    loop = asyncio.get_running_loop()
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        answer: asyncio.Future[T] = loop.create_future()
        answer.set_result(done.value)
        return answer
    except Exception as exc:  # handed to whoever reads the future, as a task does
        failed: asyncio.Future[T] = loop.create_future()
        failed.set_exception(exc)
        return failed
    return asyncio.ensure_future(_rest(coro, waiting_on))


async def _rest(coro: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    result: T = await _resumed(coro, waiting_on)
    return result


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, T], waiting_on: Any) -> Generator[Any, Any, T]:
    """Go on with ``coro``, which has yielded ``waiting_on`` to its task: hand that to the
    task running us, and pass back what it sends or throws, as ``await`` would have."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:  # we are closed (never run to the end): so is coro
            coro.close()
            raise
        except BaseException as exc:  # a cancel (or any throw) goes where coro waits
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                waiting_on = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
