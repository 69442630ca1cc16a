"""What Crucible answers to ``initialize``, computed without pygls or lsprotocol.

pygls derives the server's capabilities from the registered handlers when ``initialize``
arrives (``ServerCapabilitiesBuilder``); importing pygls and lsprotocol to do so costs ~400 ms,
most of a cold start. ``lsp/early_start.py`` answers ``initialize`` from this module instead,
while the server loads. The answer here must be exactly pygls's for the same client:
``tests/unit/test_capabilities.py`` builds the real server, answers ``initialize`` both ways for
several client capability sets and compares them, so a handler added, removed or given new
options fails that test until ``CAPABILITIES`` says the same.

Of the client's capabilities only ``general.positionEncodings`` changes the answer for
Crucible's handlers (pygls also reads ``willSave``, notebook and file-operation capabilities,
which only matter for handlers Crucible does not register).
"""

from __future__ import annotations

import copy
from typing import Any

import crucible

# pygls's choice: the first of the client's encodings it supports, else UTF-16 (the default the
# LSP specification gives, and what a client that names none must get).
SUPPORTED_POSITION_ENCODINGS = ("utf-8", "utf-16", "utf-32")
DEFAULT_POSITION_ENCODING = "utf-16"

# The capabilities pygls builds from the handlers in ``lsp/handlers/``, minus positionEncoding.
CAPABILITIES: dict[str, Any] = {
    "textDocumentSync": {"openClose": True, "change": 2, "save": {"includeText": False}},
    "completionProvider": {"triggerCharacters": [".", "(", "[", "{", ",", ":", "=", " "]},
    "hoverProvider": True,
    "codeActionProvider": {
        "codeActionKinds": ["quickfix", "refactor", "refactor.rewrite", "source"],
        "resolveProvider": True,
    },
    "executeCommandProvider": {
        "commands": ["crucible.status", "crucible.clearCache", "crucible.applyCodeAction"]
    },
    "inlineCompletionProvider": {},
    "workspace": {
        "workspaceFolders": {"supported": True, "changeNotifications": True},
        "fileOperations": {},
    },
}


def position_encoding(client_capabilities: object) -> str:
    """The position encoding pygls picks for a client with these (raw JSON) capabilities."""
    general = client_capabilities.get("general") if isinstance(client_capabilities, dict) else None
    encodings = general.get("positionEncodings") if isinstance(general, dict) else None
    if isinstance(encodings, list):
        for encoding in encodings:
            if encoding in SUPPORTED_POSITION_ENCODINGS:
                return str(encoding)
    return DEFAULT_POSITION_ENCODING


def _synchronization(client_capabilities: object) -> dict[str, Any]:
    text_document = _member(client_capabilities, "textDocument")
    return _member(text_document, "synchronization")


def _member(value: object, key: str) -> dict[str, Any]:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


def initialize_result(client_capabilities: object) -> dict[str, Any]:
    """The ``initialize`` result, as JSON, for a client with these capabilities."""
    capabilities: dict[str, Any] = {"positionEncoding": position_encoding(client_capabilities)}
    capabilities.update(copy.deepcopy(CAPABILITIES))
    # pygls answers `willSave`/`willSaveWaitUntil` false (no such handler) to a client that
    # states either capability, and leaves them out for one that does not.
    synchronization = _synchronization(client_capabilities)
    for key in ("willSave", "willSaveWaitUntil"):
        if synchronization.get(key) is not None:
            capabilities["textDocumentSync"][key] = False
    return {
        "capabilities": capabilities,
        "serverInfo": {"name": "crucible", "version": crucible.__version__},
    }


def early_capabilities(params: object) -> dict[str, Any] | None:
    """The client capabilities of ``initialize`` params the server would accept, or None
    when the server might refuse them (then ``initialize`` waits for the server). Also the
    shared daemon's thin client's rule (``shared/client.py``), which answers early too."""
    if not isinstance(params, dict):
        return None
    process_id = params.get("processId", False)  # required; null is allowed
    if process_id is not None and (type(process_id) is not int):
        return None
    capabilities = params.get("capabilities")
    return capabilities if isinstance(capabilities, dict) else None
