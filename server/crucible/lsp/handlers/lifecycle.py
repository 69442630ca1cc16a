"""initialize (which starts the backend on the serving loop, and the watch on the editor
process it names), initialized, shutdown and configuration changes. `exit` and the lifecycle
rules (-32002 before initialize, -32600 after shutdown) are the protocol's, in
``lsp/protocol.py``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types
from pygls.uris import to_fs_path

from crucible.lsp.clients import client_traits, code_action_traits
from crucible.lsp.server import CrucibleLanguageServer

logger = logging.getLogger(__name__)

SECTION = "crucible"
# How long a workspace/configuration pull waits for the client: one that never answers must not
# leave a handler (and the request's bookkeeping) waiting for ever, one per settings change.
CONFIGURATION_ANSWER_S = 30


def _workspace_root(params: types.InitializeParams) -> str | None:
    if params.workspace_folders:
        return to_fs_path(params.workspace_folders[0].uri)
    if params.root_uri:
        return to_fs_path(params.root_uri)
    return params.root_path


def _report(server: CrucibleLanguageServer, problems: list[str]) -> None:
    """One message for all configuration problems (each names its key), plus the log."""
    if not problems:
        return
    for problem in problems:
        logger.warning("configuration: %s", problem)
    listed = "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    server.show_message(f"Crucible configuration: {listed}. Using defaults for those keys.")


def _client_pulls_configuration(server: CrucibleLanguageServer) -> bool:
    workspace = server.client_capabilities.workspace
    return bool(workspace and workspace.configuration)


async def _pull_configuration(server: CrucibleLanguageServer) -> None:
    """Ask the client for the ``crucible`` section (VS Code-style pull configuration).

    The answer can be older than a push that arrives before it: Neovim answers the pull
    after its event loop turns, and a plugin's didChangeConfiguration sent meanwhile reaches
    us first. Applied last, the stale answer would undo the newer settings; so it applies
    only if no push (or newer pull) came while it was asked."""
    server.configuration_turn += 1
    turn = server.configuration_turn
    try:
        async with asyncio.timeout(CONFIGURATION_ANSWER_S):
            values = await server.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            )
    except TimeoutError:
        logger.warning(
            "workspace/configuration: no answer in %d s; the settings stay as they were",
            CONFIGURATION_ANSWER_S,
        )
        return
    except Exception as exc:  # a client bug here must not take the server down
        logger.warning("workspace/configuration failed: %s", exc)
        return
    if server.configuration_turn != turn:
        logger.debug(
            "workspace/configuration: newer settings came meanwhile; this answer is dropped"
        )
        return
    if values and values[0]:
        _report(server, server.backend.change_configuration(values[0]))


def _apply_pushed(server: CrucibleLanguageServer, settings: object) -> None:
    """Settings the client sent (didChangeConfiguration): they win over any pull in flight."""
    server.configuration_turn += 1
    _report(server, server.backend.change_configuration(settings))


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(types.INITIALIZE)
    async def initialize(ls: CrucibleLanguageServer, params: types.InitializeParams) -> None:
        ls.client = client_traits(params.client_info, params.capabilities)
        ls.code_action_client = code_action_traits(params.capabilities)
        if params.client_info:  # decides per-client defaults (completion_items): worth a line
            logger.info("client: %s %s", params.client_info.name, params.client_info.version or "")
        ls.pending_problems = ls.backend.initialize(
            _workspace_root(params), params.initialization_options
        )
        # Configured for this workspace: what needs the loop starts now (the disk cache opens
        # in the background), before the answer lets the client send requests.
        await ls.backend.start()
        # LSP: "If the parent process is not alive then the server should exit".
        ls.watch_parent(params.process_id)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: CrucibleLanguageServer, params: types.InitializedParams) -> None:
        _report(ls, ls.pending_problems)
        ls.pending_problems = []
        ls.backend.connect_editor(ls)
        # What start-up built was frozen before serving began (``early_start.
        # settle_startup_objects``): no collection here, in front of the first request.
        if _client_pulls_configuration(ls):
            await _pull_configuration(ls)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: CrucibleLanguageServer, params: types.DidChangeConfigurationParams
    ) -> None:
        settings: Any = params.settings
        if settings:
            _apply_pushed(ls, settings)
        elif _client_pulls_configuration(ls):
            # Pull-model clients send an empty notification meaning "ask me".
            await _pull_configuration(ls)

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: CrucibleLanguageServer, params: None) -> None:
        await ls.backend.aclose()
