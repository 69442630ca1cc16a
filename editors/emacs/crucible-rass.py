"""A preset for the ``rass`` LSP multiplexer (PyPI: rassumfrassum): Crucible beside another server.

``rass crucible-rass.py -- pylsp -- crucible-lsp --stdio`` runs both servers behind one stdio
connection, which is what eglot (one server per major mode) needs. The first server listed
stays the primary: rass sends it every request it has no rule for (hover, signature help,
rename...), merges completion menus and code actions from both, and routes each
``workspace/executeCommand`` to the server that listed the command. Left to that default,
``textDocument/inlineCompletion`` and ``crucible/status`` would go to the primary too, which
does not know them, and ``crucible/didChangeDiagnostics`` to every server. This logic sends
them to Crucible only: the server whose ``executeCommandProvider`` lists ``crucible.status``
(an inline completion without Crucible goes to any server that offers it). It also keeps
Crucible's settings (``initializationOptions.crucible``) away from the other servers.

crucible.el passes this file's path to rass; nothing needs installing besides
``pip install rassumfrassum``.
"""

from __future__ import annotations

from typing import Any

from rassumfrassum.frassum import LspLogic, Server


def _is_crucible(server: Server) -> bool:
    commands = (server.caps.get("executeCommandProvider") or {}).get("commands") or []
    return "crucible.status" in commands


class CrucibleLogic(LspLogic):
    """rass's routing, with Crucible's own methods sent to Crucible alone."""

    async def on_client_request(self, method: str, params: Any, servers: list[Server]) -> Any:
        if method.startswith("crucible/"):
            return [s for s in servers if _is_crucible(s)]
        if method == "textDocument/inlineCompletion":
            crucible = [s for s in servers if _is_crucible(s)]
            offering = [s for s in servers if s.caps.get("inlineCompletionProvider") is not None]
            return (crucible or offering)[:1]
        return await super().on_client_request(method, params, servers)

    async def on_client_notification(self, method: str, params: Any) -> None:
        if method.startswith("crucible/"):
            for server in self.servers.values():
                if _is_crucible(server):
                    await self.notify_server(server, method, params)
            return
        await super().on_client_notification(method, params)

    def process_request(self, method: str, params: Any, server: Server) -> Any:
        params = super().process_request(method, params, server)
        options = params.get("initializationOptions") if method == "initialize" else None
        if isinstance(options, dict) and "crucible" in options and "crucible" not in server.name:
            options = {k: v for k, v in options.items() if k != "crucible"}
            params = {**params, "initializationOptions": options}
        return params


def servers() -> list[list[str]]:
    """No servers of its own: they follow ``--`` on rass's command line."""
    return []


def logic_class() -> type[LspLogic]:
    return CrucibleLogic
