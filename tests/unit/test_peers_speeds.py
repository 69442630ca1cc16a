"""The peers benchmark's typing-speed mode: its bursts can be fitted, and calls for text the
user has not typed (prefetch) are told apart from calls for keystrokes."""

from __future__ import annotations

from benchmarks._snippets import header
from benchmarks.peers import SPEEDS, ahead_calls, speed_bursts
from tests.fakes.records import RecordedRequest


def call(prompt: str) -> RecordedRequest:
    return RecordedRequest("POST", "/api/generate", {}, {"prompt": prompt}, 0.0)


def test_every_speed_types_every_anchor_and_each_burst_ends_mid_line() -> None:
    bursts = speed_bursts(quick=False)
    assert len(bursts) == 3 * len(SPEEDS)
    for burst in bursts:
        burst.check()  # raises if nothing is left to suggest
        assert burst.name.split(":", 1)[0] in {label for label, _, _ in SPEEDS}
    assert len(speed_bursts(quick=True)) == len(SPEEDS)


def test_a_prompt_past_the_typed_text_is_a_call_ahead() -> None:
    burst = speed_bursts(quick=True)[0]
    top = header(burst.snippet, 0, 0)
    typed_end = burst.start + burst.keys
    keystroke = call(top + burst.snippet.text[: typed_end - 3])
    final = call(top + burst.snippet.text[:typed_end])
    prefetch = call(top + burst.snippet.text[: typed_end + 12])
    tabby = RecordedRequest(
        "POST", "/v1/completions", {}, {"segments": {"prefix": prefetch.body["prompt"]}}, 0.0
    )
    assert ahead_calls([keystroke, final, prefetch, tabby], burst) == 2
