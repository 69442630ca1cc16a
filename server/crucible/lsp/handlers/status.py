"""crucible/status: the server's health and counters as one JSON object."""

from __future__ import annotations

from typing import Any

from crucible.lsp.server import CrucibleLanguageServer

STATUS = "crucible/status"


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(STATUS)
    def status(ls: CrucibleLanguageServer, params: Any) -> dict[str, Any]:
        return ls.backend.status()
