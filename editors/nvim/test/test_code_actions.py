"""Crucible's AI features on another tool's diagnostic, as a user meets them in Neovim:
`vim.lsp.buf.code_action()` offers "Crucible: fix …" and applies the model's fix,
`vim.lsp.buf.hover()` shows the model's explanation (and a second hover asks the model nothing).

The diagnostic is set with `vim.diagnostic.set` in a namespace of its own, which is what every
other language server's (and nvim-lint's) diagnostics are to Neovim: the plugin sees exactly
what it sees in use, with no second server process to start and wait for."""

from __future__ import annotations

from typing import Any

import pytest
from nvim_harness import Editor, settings_for
from tests.fakes.provider import FakeProvider, RecordedRequest

BUGGY = "import math\n\n\ndef area(radius):\n    return math.pi * radus**2\n\n\nprint(area(2))\n"
FIXED = BUGGY.replace("radus**2", "radius**2")
# The model's fix repeats the function's first line: the server keeps only the changed line.
FIX = "Here is the fix:\n```python\ndef area(radius):\n    return math.pi * radius**2\n```\n"
EXPLANATION = "The name radus is not defined here: it is a typo for the parameter radius."


def chat_system(request: RecordedRequest) -> str:
    if request.path != "/api/chat" or not isinstance(request.body, dict):
        return ""
    messages = request.body.get("messages") or [{}]
    return str(messages[0].get("content", ""))


def is_fix(request: RecordedRequest) -> bool:
    return "editing code" in chat_system(request)


def is_explanation(request: RecordedRequest) -> bool:
    return "explaining a compiler or linter diagnostic" in chat_system(request)


def answer(request: RecordedRequest) -> str:
    if is_fix(request):
        return FIX
    if is_explanation(request):
        return EXPLANATION
    return "pass"


def requests(fake: FakeProvider, which: Any) -> list[RecordedRequest]:
    return [r for r in fake.requests if which(r)]


SET_DIAGNOSTIC = """
local ns = vim.api.nvim_create_namespace('pyflakes_lsp')
vim.diagnostic.set(ns, 0, {
  { lnum = 4, col = 24, end_lnum = 4, end_col = 29, severity = vim.diagnostic.severity.ERROR,
    message = "undefined name 'radus'", source = 'pyflakes' },
})
vim.api.nvim_win_set_cursor(0, { 5, 26 })
"""


# A client that does not resolve code actions' edits (as if Neovim did not announce
# resolveSupport): the server must take the command path.
NO_RESOLVE = """
local make = vim.lsp.protocol.make_client_capabilities
vim.lsp.protocol.make_client_capabilities = function()
  local caps = make()
  caps.textDocument.codeAction.resolveSupport = nil
  return caps
end
"""


@pytest.fixture(params=["resolve", "command"])
def path(request: pytest.FixtureRequest) -> str:
    chosen: str = request.param
    return chosen


@pytest.fixture
def buggy(fake: FakeProvider, editor: Editor, request: pytest.FixtureRequest) -> Editor:
    # `fake` first: it is torn down after the editor's closing check of the LSP log, so the
    # server's background calls (the hover prefetch of the forwarded error) never meet a
    # closed port and log a warning there.
    if "path" in request.fixturenames and request.getfixturevalue("path") == "command":
        editor.lua(NO_RESOLVE)
    fake.reply = answer
    settings = settings_for(fake)
    settings["code_actions"] = {"timeout_ms": 10_000}
    settings["hover"] = {"timeout_ms": 10_000}
    editor.lua("require('vim.lsp.log').set_level('debug')")  # the log shows what was sent
    editor.setup(settings=settings, diagnostics={"forward": True, "debounce_ms": 50})
    editor.edit(editor.workspace / "geometry.py", BUGGY)
    editor.wait_attached()
    editor.lua(SET_DIAGNOSTIC)
    return editor


def sent(editor: Editor, method: str) -> list[str]:
    return [line for line in editor.lsp_log().splitlines() if "rpc.send" in line and method in line]


def test_code_action_offers_and_applies_crucibles_fix(
    buggy: Editor, fake: FakeProvider, path: str
) -> None:
    editor = buggy
    # What users of dressing.nvim or telescope-ui-select do: vim.ui.select replaced. This one
    # records the titles offered and picks Crucible's fix.
    editor.lua(
        """
        _G.offered = nil
        _G.edits = {}
        local apply = vim.lsp.util.apply_workspace_edit
        vim.lsp.util.apply_workspace_edit = function(edit, ...)
          table.insert(_G.edits, vim.deepcopy(edit))  -- Neovim marks the edits it applies
          return apply(edit, ...)
        end
        vim.ui.select = function(items, opts, on_choice)
          _G.offered = {}
          local pick = nil
          for i, item in ipairs(items) do
            local title = opts.format_item and opts.format_item(item) or tostring(item)
            table.insert(_G.offered, title)
            if not pick and title:find('Crucible: fix', 1, true) then pick = i end
          end
          on_choice(pick and items[pick] or nil, pick)
        end
        vim.lsp.buf.code_action()
        """
    )
    offered = editor.wait(lambda: editor.lua("return _G.offered"), 10, "the code actions")
    assert any("Crucible: fix" in t and "radus" in t for t in offered), offered
    editor.wait(
        lambda: editor.nvim.current.buffer[:] == FIXED.splitlines(),
        15,
        "the fix in the buffer",
    )
    # Exactly the model's fix, as one edit of the one line it changes (0-based 4, up to the
    # start of the next), although the model repeated the line before: marks, folds and undo
    # history elsewhere are untouched. Neither Neovim announces workspaceEdit.documentChanges,
    # so the edit comes as `changes` (the server dropped it had the buffer changed meanwhile).
    [edit] = editor.lua("return _G.edits")
    assert "documentChanges" not in edit
    [(uri, edits)] = edit["changes"].items()
    assert uri == editor.lua("return vim.uri_from_bufnr(0)")
    assert edits == [
        {
            "range": {"start": {"line": 4, "character": 0}, "end": {"line": 5, "character": 0}},
            "newText": "    return math.pi * radius**2\n",
        }
    ]
    assert len(requests(fake, is_fix)) == 1
    # Both Neovims announce resolveSupport for "edit" (0.7.2 included), so the server lists
    # the action without an edit nor a command and computes it in codeAction/resolve. Without
    # it (NO_RESOLVE), the action carries the crucible.applyCodeAction command and the server
    # applies the edit with workspace/applyEdit.
    resolves = editor.lua(
        "local c = require('crucible.client').get(0)"
        " local r = c.config.capabilities.textDocument.codeAction.resolveSupport"
        " return r ~= nil and vim.tbl_contains(r.properties, 'edit')"
    )
    assert resolves == (path == "resolve")
    # Neovim sends codeAction/resolve on either path (for any action without an edit, the
    # server having resolveProvider); on the command path the server leaves it to the command.
    assert len(sent(editor, '"codeAction/resolve"')) == 1
    assert len(sent(editor, "workspace/executeCommand")) == (0 if resolves else 1)
    assert "ask again" not in editor.messages()  # no refusal after the fix
    status = editor.lua(
        "return require('crucible.compat').request_sync("
        "require('crucible.client').get(0), 'crucible/status', {}, 5000, 0).result"
    )
    counts = status["code_actions"]
    # One edit computed; "applied" counts the ones the server applied (the command path).
    assert (counts["resolved"], counts["applied"]) == ((1, 0) if resolves else (1, 1)), counts


HOVER_LINES = """
for _, win in ipairs(vim.api.nvim_list_wins()) do
  if vim.api.nvim_win_get_config(win).relative ~= '' then
    return vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(win), 0, -1, false)
  end
end
return {}
"""

CLOSE_FLOATS = """
for _, win in ipairs(vim.api.nvim_list_wins()) do
  if vim.api.nvim_win_get_config(win).relative ~= '' then vim.api.nvim_win_close(win, true) end
end
"""


def hover(editor: Editor) -> str:
    editor.lua(CLOSE_FLOATS)
    editor.lua("vim.lsp.buf.hover()")
    shown: str = editor.wait(
        lambda: (text := "\n".join(editor.lua(HOVER_LINES))) and "radus" in text and text,
        15,
        "the hover window",
    )
    return shown


def test_hover_explains_the_diagnostic_once(buggy: Editor, fake: FakeProvider) -> None:
    editor = buggy
    editor.wait(lambda: sent(editor, "crucible/didChangeDiagnostics"), 5, "the forwarded list")
    first = hover(editor)
    assert "undefined name 'radus'" in first, first
    assert EXPLANATION in first, first
    assert len(requests(fake, is_explanation)) == 1
    second = hover(editor)
    assert EXPLANATION in second, second
    assert len(requests(fake, is_explanation)) == 1  # the second hover asked the model nothing
    assert not requests(fake, is_fix)
