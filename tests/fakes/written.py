"""A transport writer that keeps what the server wrote: each frame's bytes and its JSON body,
for unit tests that drive a server's protocol without a process (``protocol.set_writer``)."""

from __future__ import annotations

import json
from typing import Any


class Written:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.raw: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.raw.append(data)
        self.messages.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))

    def close(self) -> None:
        pass
