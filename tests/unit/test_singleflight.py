"""SingleFlight (scheduling/singleflight.py): seats, abandonment, the job a flight shares."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from crucible.scheduling.singleflight import SingleFlight


@dataclass
class Progress:
    produced: str = ""


async def test_every_seat_gets_the_one_result_and_the_job_is_shared_while_it_runs() -> None:
    flights: SingleFlight[str, str, Progress] = SingleFlight()
    release = asyncio.Event()
    progress = Progress()

    async def work() -> str:
        progress.produced = "half"
        await release.wait()
        return "whole"

    flight = flights.start("k", work(), progress)
    first, second = asyncio.ensure_future(flight.wait()), asyncio.ensure_future(flight.wait())
    await asyncio.sleep(0)
    looked_up = flights.get("k")
    assert looked_up is flight and looked_up.job.produced == "half"
    assert flights.running() and not flight.done
    release.set()
    assert await asyncio.gather(first, second) == ["whole", "whole"]
    await asyncio.sleep(0)
    assert flights.get("k") is None and len(flights) == 0 and not flights.running()


async def test_the_last_seat_leaving_cancels_the_flight_and_nobody_can_join_it() -> None:
    flights: SingleFlight[str, str, None] = SingleFlight()

    async def forever() -> str:
        await asyncio.Event().wait()
        return "never"

    flight = flights.start("k", forever(), None)
    one, two = flight.join(), flight.join()
    one.leave()
    one.leave()  # idempotent: it does not give up the other seat
    await asyncio.sleep(0)
    assert not flight.task.cancelled() and flights.get("k") is flight
    two.leave()
    assert flights.get("k") is None  # at once, before the task has even seen the cancel
    with pytest.raises(asyncio.CancelledError):
        await flight.task


async def test_an_error_reaches_every_seat() -> None:
    flights: SingleFlight[str, str, None] = SingleFlight()

    async def failing() -> str:
        await asyncio.sleep(0)
        raise ValueError("provider down")

    flight = flights.start("k", failing(), None)
    results = await asyncio.gather(flight.wait(), flight.wait(), return_exceptions=True)
    assert [type(result) for result in results] == [ValueError, ValueError]
