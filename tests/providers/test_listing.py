"""The model-listing probe's verdicts, from listings as dicts (no server)."""

from __future__ import annotations

from crucible.providers.base import ProbeResult
from crucible.providers.listing import ModelListing
from crucible.providers.ollama import _LISTING as OLLAMA

OPENAI = ModelListing(path="models", answers_any_name=True)
MISTRAL = ModelListing(path="models")


def listing(*names: str, **aliases: list[str]) -> dict[str, object]:
    return {"data": [{"id": n, **({"aliases": aliases[n]} if n in aliases else {})} for n in names]}


def test_a_listed_model_is_present() -> None:
    assert MISTRAL.verdict(listing("a", "b"), "b") == ProbeResult(
        True, "ok: model b available", True
    )


def test_an_alias_counts_as_listed() -> None:
    answer = listing("codestral-2508", **{"codestral-2508": ["codestral-latest"]})
    assert MISTRAL.verdict(answer, "codestral-latest") == ProbeResult(
        True, "ok: model codestral-latest available (as codestral-2508)", True
    )


def test_an_unlisted_model_quotes_at_most_ten_names() -> None:
    names = [f"m{i}" for i in range(12)]
    result = MISTRAL.verdict(listing(*names), "x")
    assert result == ProbeResult(
        False, f"model x not found (has: {', '.join(names[:10])}, …)", False
    )


def test_a_server_of_one_model_answers_to_any_name() -> None:
    result = OPENAI.verdict(listing("tiny.gguf"), "qwen")
    assert result == ProbeResult(
        True, "ok: server answers, but model qwen is not listed (has: tiny.gguf)", False
    )


def test_no_list_no_names_and_malformed_entries_list_no_models() -> None:
    for answer in ({}, {"data": "x"}, {"data": []}, {"data": [1, {"id": 2}, {"name": "n"}]}):
        assert OPENAI.verdict(answer, "m") == ProbeResult(False, "the server lists no models")


def test_ollama_names_compare_without_the_latest_tag() -> None:
    answer = {"models": [{"name": "qwen:latest"}, {"name": "llama3:8b"}]}
    assert OLLAMA.verdict(answer, "qwen").model_present is True
    assert OLLAMA.verdict(answer, "llama3") == ProbeResult(
        False, "model llama3 not found (have: qwen:latest, llama3:8b)", False
    )
