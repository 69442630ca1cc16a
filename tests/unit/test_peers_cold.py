"""The peers benchmark's cold first suggestion: what a fitting answer is, the client's rule
(ask again after an answer with nothing fitting, one request in flight, until a fit or the
deadline), and how a run's samples read in the table (a miss is infinitely slow)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from benchmarks._peer_cold import WARM, ColdSample, ask_until_fit, cold_document, fits
from benchmarks._peer_lsp import Message
from benchmarks._peer_typists import COMPLETION, INLINE
from benchmarks._snippets import continuation
from benchmarks.peers import Startup, cold_table, rows

TEXT = cold_document("7-crucible")


def inline_answer(insert: str) -> Message:
    return {"id": 1, "result": {"items": [{"insertText": insert}]}}


def completion_answer(new_text: str, start: int) -> Message:
    last = TEXT.count("\n")
    edit_range = {
        "start": {"line": last, "character": start},
        "end": {"line": last, "character": len(TEXT.rsplit("\n", 1)[1])},
    }
    item = {"textEdit": {"range": edit_range, "newText": new_text}}
    return {"id": 1, "result": {"items": [item]}}


def test_the_fake_model_continues_the_cold_document_mid_line() -> None:
    rest = continuation(TEXT)

    assert rest == "fmean(temperatures)"
    assert TEXT.splitlines()[0].endswith("cold start 7-crucible")
    assert fits(inline_answer(rest), TEXT)


def test_a_completion_item_fits_through_its_text_edit() -> None:
    line = TEXT.rsplit("\n", 1)[1]
    word = line.rindex("statistics.")

    assert fits(completion_answer("statistics.fmean(temperatures)", word), TEXT)
    assert not fits(completion_answer("stats.mean()", word), TEXT)


def test_empty_errors_and_suggestions_elsewhere_do_not_fit() -> None:
    assert not fits({"id": 1, "result": {"items": []}}, TEXT)
    assert not fits({"id": 1, "result": None}, TEXT)
    assert not fits({"id": 1, "error": {"code": -32603, "message": "not ready"}}, TEXT)
    assert not fits(inline_answer(""), TEXT)


class ScriptedLsp:
    """Answers each request with the next scripted message after ``delay_s``; None: never."""

    def __init__(self, script: list[Message | None], delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.sent: list[tuple[float, str, Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def request(self, method: str, params: Any) -> asyncio.Future[tuple[float, Message]]:
        self.sent.append((time.perf_counter(), method, params))
        future: asyncio.Future[tuple[float, Message]] = asyncio.get_running_loop().create_future()
        answer = self.script[len(self.sent) - 1] if len(self.sent) <= len(self.script) else None
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if answer is not None:
            asyncio.get_running_loop().call_later(self.delay_s, self._answer, future, answer)
        return future

    def _answer(self, future: asyncio.Future[tuple[float, Message]], answer: Message) -> None:
        self.in_flight -= 1
        future.set_result((time.perf_counter(), answer))

    def check_alive(self) -> None:
        return None


async def test_the_client_asks_again_after_each_answer_with_nothing_fitting() -> None:
    empty: Message = {"id": 1, "result": {"items": []}}
    lsp = ScriptedLsp([empty, empty, inline_answer("fmean(temperatures)")], delay_s=0.01)
    started = time.perf_counter()

    asked = await ask_until_fit(lsp, INLINE, "file:///a.py", TEXT, started + 5, 0.05)  # type: ignore[arg-type]

    assert asked.requests == 3
    assert asked.fit_at is not None and asked.first_answer_at is not None
    assert asked.first_answer_at < asked.fit_at
    assert lsp.most_in_flight == 1  # never a second request while one is unanswered
    times = [at for at, _, _ in lsp.sent]
    # each request goes after the previous answer (0.01 s) and the client's 0.05 s (a lower
    # bound: a sleep never ends early)
    assert all(later - earlier >= 0.049 for earlier, later in itertools.pairwise(times))
    position = lsp.sent[0][2]["position"]
    assert position == {"line": TEXT.count("\n"), "character": len(TEXT.rsplit("\n", 1)[1])}
    assert lsp.sent[0][2]["context"] == {"triggerKind": 2}  # inline: automatic, a keystroke


async def test_a_server_that_never_answers_is_a_miss_at_the_deadline() -> None:
    lsp = ScriptedLsp([None])
    started = time.perf_counter()

    asked = await ask_until_fit(lsp, COMPLETION, "file:///a.py", TEXT, started + 0.2, 0.05)  # type: ignore[arg-type]

    assert asked.fit_at is None and asked.first_answer_at is None
    assert asked.requests == 1
    assert lsp.sent[0][2]["context"] == {"triggerKind": 1}  # completion: invoked


def sample(fit_ms: float | None, requests: int = 1) -> ColdSample:
    return ColdSample(
        init_ms=100.0,
        fit_ms=fit_ms,
        requests=requests,
        first_answer_ms=fit_ms,
        first_contact_ms=None,
        first_call_ms=None if fit_ms is None else fit_ms - 160,
        calls=1,
    )


def test_the_row_shows_median_range_and_ratio_and_a_miss_counts_as_slowest() -> None:
    cold = {
        "crucible": [sample(800.0), sample(1000.0), sample(900.0)],
        "tabby-agent": [sample(400.0), sample(None, requests=40), sample(450.0)],
        WARM: [sample(300.0), sample(320.0), sample(310.0)],
    }
    startups = {"crucible": Startup(init_ms=[100.0], rss_kib=[1024], processes=[1])}

    found = {row.title: row for row in rows(startups, {}, {}, cold)}

    row = found["spawn -> first fitting suggestion, median (min-max)"]
    assert row.cells["crucible"] == "900 ms (800-1000) (1.00x)"
    assert row.cells["tabby-agent"] == "450 ms (400-miss) (0.50x)"
    assert WARM not in row.cells  # the warm route is Crucible again: no peer's column
    assert row.cells["copilot"] == "-"
    shown = cold_table(cold, 150)
    assert "Crucible --shared, 2nd window of a warm daemon" in shown
    assert "(0.34x)" in shown  # 310 / 900
    tabby_line = next(line for line in shown.splitlines() if line.startswith("tabby-agent"))
    assert tabby_line.split()[-1] == "1"  # one miss
    assert "(40)" in tabby_line  # the most requests one run sent
