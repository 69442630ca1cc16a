"""What Crucible needs to know about the editor on the other end, and the per-client decisions.

Capabilities say what a client *can* do, not what its user turned on: Neovim 0.12 advertises
``textDocument.inlineCompletion`` whether or not ``vim.lsp.inline_completion`` is enabled, so
"advertised" alone would leave a menu-only Neovim user with an empty menu. ``ClientTraits`` is
read once from ``initialize`` (``clientInfo`` and capabilities); the decisions below are pure
functions of it, so they are unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types

from crucible.config.settings import CompletionItems

# clientInfo.name of Neovim's built-in client (runtime/lua/vim/lsp/client.lua sends
# {name = 'Neovim', version = 'major.minor.patch'}).
NEOVIM = "neovim"


@dataclass(frozen=True)
class ClientTraits:
    """The facts about one client that change what Crucible sends it."""

    name: str = ""  # clientInfo.name, lower-cased; "" when the client did not say
    inline_completion: bool = False  # advertises textDocument.inlineCompletion
    snippets: bool = False  # completionItem.snippetSupport
    markdown: bool = False  # completionItem.documentationFormat includes markdown
    keeps_whitespace: bool = False  # completionItem.insertTextModeSupport has asIs

    @property
    def is_neovim(self) -> bool:
        return self.name == NEOVIM


def client_traits(
    client_info: types.ClientInfo | None, capabilities: types.ClientCapabilities | None
) -> ClientTraits:
    """The traits of a client from its ``initialize`` params."""
    text_document = capabilities.text_document if capabilities else None
    completion = text_document.completion if text_document else None
    item = completion.completion_item if completion else None
    formats = (item.documentation_format or []) if item else []
    modes = item.insert_text_mode_support if item else None
    return ClientTraits(
        name=(client_info.name if client_info else "").strip().lower(),
        inline_completion=bool(text_document and text_document.inline_completion),
        snippets=bool(item and item.snippet_support),
        markdown=types.MarkupKind.Markdown in formats,
        keeps_whitespace=bool(modes and types.InsertTextMode.AsIs in modes.value_set),
    )


def menu_wants_suggestions(setting: CompletionItems, client: ClientTraits) -> bool:
    """Whether textDocument/completion should carry the AI suggestion for this client.

    ``auto``: a client without inline completion gets it (the menu is its only way to see
    one). A client with inline completion does not, since it already shows the suggestion as
    ghost text, on by default (VS Code), and would show it twice; except Neovim, whose inline
    completion is opt-in (``vim.lsp.inline_completion.enable()``) although 0.12 always
    advertises it. A Neovim user who enables both pays once: both requests share one flight
    and one cache key.
    """
    if setting is CompletionItems.ON:
        return True
    if setting is CompletionItems.OFF:
        return False
    return not client.inline_completion or client.is_neovim


def menu_uses_snippet(client: ClientTraits) -> bool:
    """Whether the menu item's text goes out as a snippet rather than plain text.

    Plain text is preferred: every client inserts a plain ``textEdit.newText`` as it is,
    except Neovim's ``vim.lsp.completion`` (0.10+, also behind ``vim.lsp.omnifunc`` from
    0.11), which inserts only the first word (0.10/0.11) or first line (0.12) of a plain
    ``newText`` and replaces the inserted word with the whole text only for snippets, on
    accepting the item. So Neovim gets a snippet when it supports them (0.11+).
    """
    return client.is_neovim and client.snippets


@dataclass(frozen=True)
class CodeActionTraits:
    """What a client can do with a code action (read once, at initialize)."""

    resolves_edits: bool = False  # codeAction.resolveSupport.properties has "edit"
    versioned_edits: bool = False  # workspace.workspaceEdit.documentChanges
    work_done_progress: bool = False  # window.workDoneProgress (server-created progress)


def code_action_traits(capabilities: types.ClientCapabilities | None) -> CodeActionTraits:
    """Whether a client resolves an action's edit lazily (else it gets a command), takes a
    versioned edit, and shows the server's progress."""
    text_document = capabilities.text_document if capabilities else None
    action = text_document.code_action if text_document else None
    resolve = action.resolve_support if action else None
    workspace = capabilities.workspace if capabilities else None
    edit = workspace.workspace_edit if workspace else None
    window = capabilities.window if capabilities else None
    return CodeActionTraits(
        resolves_edits=bool(resolve and "edit" in resolve.properties),
        versioned_edits=bool(edit and edit.document_changes),
        work_done_progress=bool(window and window.work_done_progress),
    )
