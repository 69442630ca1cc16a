"""Ghost text as a user sees it: drawn from the provider's answer, accepted whole, by word or
by line, dismissed, typed through, and never shown for text it was not computed for."""

from __future__ import annotations

import random
import time

from nvim_harness import Editor, fits, line_length_answer, prompt_line, settings_for
from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

SOURCE = "import os\n\n"


def start(editor: Editor, fake: FakeProvider, **completion: object) -> None:
    editor.setup(settings=settings_for(fake, **completion))
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    # The server answers initialize while it loads (lsp/early_start.py); its first status
    # comes once it serves: the typing the tests time starts against a loaded server.
    editor.wait(
        lambda: editor.lua("return require('crucible.client').status(0) ~= nil"),
        20,
        "the server's first status",
    )


def test_ghost_text_is_the_providers_answer_and_tab_inserts_exactly_it(
    editor: Editor, fake: FakeProvider
) -> None:
    start(editor, fake)
    editor.input("Godef add(a, b):<CR>")
    shown = editor.wait_ghost()
    assert shown["ghost"] == "return a + b"
    assert shown["at"] == [shown["row"], shown["col"]] == [3, 4]
    assert shown["mode"] == "i"
    # Coloured in a 256-colour terminal without 'termguicolors' (the headless default):
    # Comment's colour when Comment has one there (0.7's colorscheme), else a grey of its own
    # (0.10+'s default colorscheme gives Comment a GUI colour only).
    effective = "vim.fn.synIDtrans(vim.fn.hlID('CrucibleSuggestion'))"
    assert not editor.lua("return vim.o.termguicolors")
    assert editor.lua(f"return vim.fn.synIDattr({effective}, 'fg', 'cterm')") != ""
    comment_has_cterm = editor.lua(
        "return vim.fn.synIDattr(vim.fn.synIDtrans(vim.fn.hlID('Comment')), 'fg', 'cterm')"
    )
    if comment_has_cterm:
        assert editor.lua(f"return vim.fn.synIDattr({effective}, 'name')") == "Comment"
    # With 'termguicolors' it is Comment, on every version.
    editor.lua("vim.o.termguicolors = true")
    assert editor.lua(f"return vim.fn.synIDattr({effective}, 'name')") == "Comment"

    editor.input("<Tab>")
    editor.wait(lambda: editor.snapshot()["line"] == "    return a + b", what="accepted text")
    after = editor.snapshot()
    assert after["lines"] == ["import os", "", "def add(a, b):", "    return a + b"]
    assert after["col"] == len("    return a + b")  # the cursor ends after the insertion
    assert after["mode"] == "i"


def test_keys_typed_while_the_server_starts_get_a_suggestion(
    editor: Editor, fake: FakeProvider
) -> None:
    editor.setup(settings=settings_for(fake))
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.input("Godef add(a, b):<CR>")  # at once: the server is still starting
    assert editor.wait_ghost()["ghost"] == "return a + b"  # with no further keystroke


def test_multi_line_ghost_text_and_accept_line(editor: Editor, fake: FakeProvider) -> None:
    fake.reply = "if a > b:\n        return a\n    return b"
    start(editor, fake)
    editor.input("Godef biggest(a, b):<CR>")
    shown = editor.wait_ghost()
    assert shown["ghost"] == "if a > b:\n        return a\n    return b"
    calls = len(fake.generation_requests())

    editor.input("<M-l>")  # accept line: the first line only, the rest stays visible
    editor.wait(lambda: editor.snapshot()["line"] == "    if a > b:", what="first line accepted")
    rest = editor.wait_ghost()
    assert rest["ghost"] == "\n        return a\n    return b"

    editor.input("<Tab>")
    editor.wait(lambda: editor.snapshot()["line"] == "    return b", what="all accepted")
    assert editor.snapshot()["lines"][2:] == [
        "def biggest(a, b):",
        "    if a > b:",
        "        return a",
        "    return b",
    ]
    assert len(fake.generation_requests()) <= calls + 1  # at most the next suggestion's call


def test_accept_word_inserts_one_word_and_keeps_the_rest(
    editor: Editor, fake: FakeProvider
) -> None:
    start(editor, fake)
    editor.input("Godef add(a, b):<CR>")
    editor.wait_ghost()
    calls = len(fake.generation_requests())

    editor.input("<M-w>")
    editor.wait(lambda: editor.snapshot()["line"] == "    return", what="one word accepted")
    shown = editor.snapshot()
    assert shown["ghost"] == " a + b"
    editor.input("<M-w>")
    editor.wait(lambda: editor.snapshot()["line"] == "    return a", what="a second word")
    assert editor.snapshot()["ghost"] == " + b"
    time.sleep(0.3)
    assert len(fake.generation_requests()) == calls  # the rest needed no provider call


def test_dismiss_clears_and_nothing_comes_back_until_typing(
    editor: Editor, fake: FakeProvider
) -> None:
    start(editor, fake)
    editor.input("Godef add(a, b):<CR>")
    editor.wait_ghost()
    calls = len(fake.generation_requests())
    editor.input("<C-]>")
    editor.settle()
    assert editor.snapshot()["ghost"] is None
    time.sleep(0.4)
    assert editor.snapshot()["ghost"] is None
    assert len(fake.generation_requests()) == calls
    # Tab with nothing shown is Tab: it indents (expandtab, shiftwidth 4).
    editor.input("<Tab>")
    editor.wait(lambda: editor.snapshot()["line"] == "        ", what="Tab to indent")


def test_typing_a_matching_character_keeps_the_rest_without_a_provider_call(
    editor: Editor, fake: FakeProvider
) -> None:
    start(editor, fake)
    editor.input("Godef add(a, b):<CR>")
    editor.wait_ghost()
    calls = len(fake.generation_requests())
    for typed, rest in (("r", "eturn a + b"), ("e", "turn a + b"), ("t", "urn a + b")):
        editor.input(typed)
        # The first snapshot in which the character is in the buffer already shows the rest.
        shown = editor.wait(
            lambda typed=typed: (s := editor.snapshot())["before"].endswith(typed) and s,
            what=f"{typed!r} typed",
        )
        assert shown["ghost"] == rest
    time.sleep(0.4)
    assert len(fake.generation_requests()) == calls


def test_typing_a_character_that_does_not_match_clears_it_at_once(
    editor: Editor, fake: FakeProvider
) -> None:
    start(editor, fake)
    editor.input("Godef add(a, b):<CR>")
    editor.wait_ghost()
    fake.inject(Fault(latency_ms=400), times=None)  # the next answer comes late
    editor.input("x")
    shown = editor.wait(
        lambda: (s := editor.snapshot())["before"] == "    x" and s, what="'x' typed"
    )
    assert shown["ghost"] is None
    assert shown["marks"] == 0


def test_slow_provider_and_slow_typing_never_show_text_that_does_not_fit(
    editor: Editor, fake: FakeProvider
) -> None:
    """The provider answers each request with the length of the line it was asked about
    (``line_length_answer``), 300 ms late; the user types a character every 60-200 ms,
    pausing 250-600 ms now and then (so that answers arrive while they type). Any ghost text
    on screen must fit the line as it is now (``fits``: the answer for it, or the rest of one
    the user typed through): one that arrives for a line typed past is never drawn."""

    def answer(request: RecordedRequest) -> str:
        return line_length_answer(prompt_line(request.body))

    fake.reply = answer
    fake.inject(Fault(latency_ms=300), times=None)
    start(editor, fake)
    editor.input("Go")
    text = "total = price(a, b) + tax"
    rng = random.Random(13)
    samples = stale = shown = 0
    for char in text:
        editor.input(char)
        pause = rng.uniform(0.25, 0.6) if rng.random() < 0.3 else rng.uniform(0.06, 0.2)
        until = time.monotonic() + pause
        while time.monotonic() < until:
            s = editor.snapshot()
            samples += 1
            if s["ghost"] is not None:
                shown += 1
                if not fits(s["before"], s["ghost"]):
                    stale += 1
            time.sleep(0.005)
    final = editor.wait_ghost(5)
    assert final["ghost"] == line_length_answer(text)
    assert samples >= 200, samples
    assert stale == 0, f"{stale} of {samples} samples showed a suggestion for other text"
    assert shown > 0  # some suggestions did arrive while typing (the check saw them)


def test_next_and_previous_cycle_through_alternatives(editor: Editor, fake: FakeProvider) -> None:
    """The suggestion shown while typing, then the user cycles: the first next asks again
    explicitly (the server samples alternatives only then), later ones cycle locally."""

    def answer(request: RecordedRequest) -> str:
        sampled = (request.body.get("options") or {}).get("temperature", 0) > 0.5
        return "return b + a" if sampled else "return a + b"

    fake.reply = answer
    start(editor, fake, alternatives=2)
    editor.input("Godef add(a, b):<CR>")
    assert editor.wait_ghost()["ghost"] == "return a + b"
    editor.input("<M-]>")
    editor.wait(lambda: editor.snapshot()["ghost"] == "return b + a", what="the alternative")
    calls = len(fake.generation_requests())
    editor.input("<M-[>")
    editor.wait(lambda: editor.snapshot()["ghost"] == "return a + b", what="the first again")
    editor.input("<M-]>")
    editor.wait(lambda: editor.snapshot()["ghost"] == "return b + a", what="the alternative")
    assert len(fake.generation_requests()) == calls  # cycling itself asks nothing
    editor.input("<Tab>")
    editor.wait(lambda: editor.snapshot()["line"] == "    return b + a", what="accepted")


def test_manual_trigger_without_auto_trigger(editor: Editor, fake: FakeProvider) -> None:
    editor.setup(settings=settings_for(fake), auto_trigger=False)
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    editor.input("Godef add(a, b):<CR>")
    editor.settle()
    time.sleep(0.3)
    assert editor.snapshot()["ghost"] is None
    assert fake.generation_requests() == []
    editor.input("<M-\\>")
    assert editor.wait_ghost()["ghost"] == "return a + b"


def test_leaving_insert_mode_clears(editor: Editor, fake: FakeProvider) -> None:
    start(editor, fake)
    editor.input("Godef add(a, b):<CR>")
    editor.wait_ghost()
    editor.input("<Esc>")
    editor.wait(lambda: editor.snapshot()["mode"] == "n", what="normal mode")
    assert editor.snapshot()["marks"] == 0


def test_the_builtin_renderer_on_0_12(editor: Editor, fake: FakeProvider) -> None:
    """renderer = 'builtin' hands the drawing to vim.lsp.inline_completion (0.12+); Tab
    accepts through it. Before 0.12 the option falls back to the plugin's own."""
    editor.setup(settings=settings_for(fake), renderer="builtin")
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    editor.input("Godef add(a, b):<CR>")
    if editor.major_minor < (0, 12):
        assert editor.wait_ghost()["ghost"] == "return a + b"
    else:
        shown = editor.wait(
            lambda: (
                (s := editor.snapshot("nvim.lsp.inline_completion", "ComplHint"))["ghost"] and s
            ),
            what="the built-in's ghost text",
        )
        assert shown["ghost"] == "return a + b"
        assert editor.snapshot()["marks"] == 0  # the plugin draws nothing itself
    editor.input("<Tab>")
    editor.wait(lambda: editor.snapshot()["line"] == "    return a + b", what="accepted")
