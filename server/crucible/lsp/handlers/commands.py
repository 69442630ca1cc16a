"""workspace/executeCommand: ``crucible.<verb>`` commands (listed in executeCommandProvider)."""

from __future__ import annotations

from typing import Any

from crucible.lsp.server import CrucibleLanguageServer


def register(server: CrucibleLanguageServer) -> None:
    @server.command("crucible.status")
    def status(ls: CrucibleLanguageServer, *args: Any) -> dict[str, Any]:
        return ls.backend.status()

    @server.command("crucible.clearCache")
    async def clear_cache(ls: CrucibleLanguageServer, *args: Any) -> dict[str, int]:
        """Empty every cache level (memory, type-through, disk); returns what each held (and,
        in the shared daemon, ``shared_with``: how many other windows used that cache)."""
        return await ls.backend.clear_cache()
