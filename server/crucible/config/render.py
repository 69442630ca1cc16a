"""Configuration as TOML text, for ``crucible-lsp doctor``.

``tomllib`` reads TOML but cannot write it, and the view to print is small and regular (the
masked dict of ``loader.describe``: tables of scalars and arrays, and arrays of tables such as
``[[providers]]``), so a small writer is enough. ``None`` has no TOML form: such keys are
left out, which reads as "unset" and parses back as the default.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(view: Mapping[str, Any]) -> str:
    """``view`` as a TOML document: each table's plain keys first (TOML requires it), then its
    sub-tables and arrays of tables in the view's order."""
    lines: list[str] = []
    _table(lines, (), view)
    return "\n".join(lines).strip("\n") + "\n"


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    nested = [k for k, v in table.items() if isinstance(v, Mapping) or _is_table_array(v)]
    for key, value in table.items():
        if key not in nested and value is not None:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key in nested:  # headers, in the view's own order
        value = table[key]
        header = _dotted((*path, key))
        for item in [value] if isinstance(value, Mapping) else value:
            lines.extend(["", f"[{header}]" if item is value else f"[[{header}]]"])
            _table(lines, (*path, key), item)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_key(part) for part in path)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):  # a table inside an array: an inline table
        items = (f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    return _string(str(value))


def _string(text: str) -> str:
    # A JSON string is a valid TOML basic string for everything JSON escapes (TOML has the
    # same escapes, and \uXXXX), and ensure_ascii=False keeps non-ASCII text readable.
    # DEL is the one control character JSON leaves raw and TOML does not allow.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
