"""Cache keys: equal for equal inputs, different when anything that shapes the answer differs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crucible.cache.keys import completion_key
from crucible.context.snapshot import ContextFile
from crucible.providers.base import FimRequest

IDENTITY = [("local", "ollama", "http://127.0.0.1:11434", "qwen2.5-coder:1.5b-base", "auto")]
FIM = FimRequest(
    prefix="def add(a, b):\n    ",
    suffix="\n",
    language_id="python",
    path="/src/math.py",
    extra=(ContextFile("/src/util.py", "def helper(): ..."),),
    max_tokens=64,
    temperature=0.2,
)


def key(identity: object = IDENTITY, fim: FimRequest = FIM, **rule: object) -> str:
    options = {"multiline": True, "max_lines": 16, **rule}
    return completion_key(identity, fim, **options)  # type: ignore[arg-type]


def test_a_key_is_a_stable_hex_digest() -> None:
    assert key() == key()
    assert len(key()) == 32 and int(key(), 16) >= 0
    # A fresh but equal request (not the same object) gives the same key.
    assert key(fim=replace(FIM)) == key()


@pytest.mark.parametrize(
    "changed",
    [
        replace(FIM, prefix=FIM.prefix + "x"),
        replace(FIM, suffix=""),
        replace(FIM, language_id="cython"),
        replace(FIM, path="/src/other.py"),
        replace(FIM, extra=()),
        replace(FIM, extra=(ContextFile("/src/util.py", "def helper(): pass"),)),
        replace(FIM, max_tokens=65),
        replace(FIM, temperature=0.3),
        replace(FIM, stop=("\n",)),
    ],
)
def test_every_field_of_the_request_is_in_the_key(changed: FimRequest) -> None:
    assert key(fim=changed) != key()


def test_provider_identity_and_stop_rule_are_in_the_key() -> None:
    other_model = [(*IDENTITY[0][:3], "starcoder2:3b", "auto")]
    other_template = [(*IDENTITY[0][:4], "qwen")]
    failover = [*IDENTITY, ("cloud", "openai", "https://api.example.com/v1", "gpt", "auto")]
    keys = {
        key(),
        key(identity=other_model),
        key(identity=other_template),
        key(identity=failover),
        key(multiline=False),
        key(max_lines=4),
    }
    assert len(keys) == 6


def test_field_boundaries_cannot_collide() -> None:
    # "ab" + "c" and "a" + "bc" are different requests.
    left = replace(FIM, prefix="ab", suffix="c")
    right = replace(FIM, prefix="a", suffix="bc")
    assert key(fim=left) != key(fim=right)


def test_text_that_is_not_valid_unicode_still_gets_a_key() -> None:
    broken = replace(FIM, prefix="\ud800 lone surrogate")
    assert key(fim=broken) != key()
