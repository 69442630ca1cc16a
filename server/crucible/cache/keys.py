"""Cache keys: one digest of everything that determines a completion answer.

A key hashes the provider identity (kind, model, address, FIM template of every provider
that may answer), the whole FIM request (prefix and suffix windows, language, path, other-file
context, max_tokens, temperature, stop) and the stop-rule parameters (multi-line, max_lines).
Changing any of them, by editing or by reconfiguring, gives a different key, so a cache never
answers with what another model or template would have said.

Keys are hex strings, usable both as L1 dictionary keys and as L2 primary keys. Other kinds
of answers (hover explanations: text) have keys of their own, ``text_key``: the kind's name, a
colon, then a digest; a completion key is hex alone, so the two can never collide. ``KEY_VERSION``
is part of the hashed material: changing how keys are built invalidates old disk entries
instead of misreading them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

KEY_VERSION = 1


def completion_key(
    identity: Sequence[Any], request: Any, *, multiline: bool, max_lines: int
) -> str:
    """The key of one completion: ``identity`` is a JSON-able description of the providers,
    ``request`` a ``FimRequest`` (any frozen dataclass of JSON-able fields and tuples of such
    dataclasses)."""
    material = [KEY_VERSION, list(identity), _plain(request), multiline, max_lines]
    encoded = json.dumps(material, ensure_ascii=False, separators=(",", ":"), default=_plain)
    return hashlib.blake2b(encoded.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _plain(value: Any) -> Any:
    """Dataclasses (slots included) as lists of their field values, in field order."""
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is None:
        if isinstance(value, tuple):
            return [_plain(item) for item in value]
        return value
    return [type(value).__name__, *(_plain(getattr(value, name)) for name in fields)]


def text_key(kind: str, material: Any) -> str:
    """The key of a text answer of ``kind`` (``"hover"``), from JSON-able ``material`` (every
    input of the answer); namespaced by ``kind`` so it never equals a completion key."""
    encoded = json.dumps(
        [KEY_VERSION, kind, material], ensure_ascii=False, separators=(",", ":"), default=_plain
    )
    digest = hashlib.blake2b(encoded.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{kind}:{digest.hexdigest()}"
