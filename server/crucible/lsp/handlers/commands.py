"""workspace/executeCommand: ``crucible.<verb>`` commands (listed in executeCommandProvider)."""

from __future__ import annotations

from typing import Any

from crucible.lsp.server import CrucibleLanguageServer


def register(server: CrucibleLanguageServer) -> None:
    @server.command("crucible.status")
    def status(ls: CrucibleLanguageServer, *args: Any) -> dict[str, Any]:
        return ls.backend.status()
