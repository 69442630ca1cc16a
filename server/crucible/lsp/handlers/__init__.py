"""LSP handlers, one module per method family; ``register_all`` wires them onto a server."""

from __future__ import annotations

from crucible.lsp.handlers import (
    code_action,
    commands,
    documents,
    inline_completion,
    lifecycle,
    status,
)
from crucible.lsp.server import CrucibleLanguageServer


def register_all(server: CrucibleLanguageServer) -> None:
    for module in (lifecycle, documents, inline_completion, status, commands, code_action):
        module.register(server)
