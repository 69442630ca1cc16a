"""LSP handlers, one module per method family; ``register_all`` wires them onto a server."""

from __future__ import annotations

from crucible.lsp.handlers import (
    code_action,
    commands,
    documents,
    hover,
    inline_completion,
    lifecycle,
    review,
    status,
)
from crucible.lsp.server import CrucibleLanguageServer


def register_all(server: CrucibleLanguageServer) -> None:
    for module in (
        lifecycle,
        documents,
        inline_completion,
        status,
        commands,
        code_action,
        hover,
        review,
    ):
        module.register(server)
