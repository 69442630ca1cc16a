"""The pure parts of code actions: listed actions, the catalog, code extraction, edits, validation,
prompts; and the service's refusals and retry on a scripted provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider

from crucible.actions.answer import extract_code, is_prose
from crucible.actions.catalog import ListingRequest, list_actions
from crucible.actions.edits import apply_edits, fit_to_target, minimal_edits, widen_to_echo
from crucible.actions.listed import Intent, ListedAction, MalformedAction, Problem, digest_of
from crucible.actions.prompt import PromptInput, build_messages, fence_for
from crucible.actions.service import ActionJob, CodeActionService
from crucible.actions.validation import balance_problem, check_edit
from crucible.config.settings import ActionScope, CodeActionsSettings, CustomActionSettings
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.snapshot import DocumentSnapshot
from crucible.providers.errors import ProviderUnavailable
from crucible.resilience.policy import ResiliencePolicy, RetryPolicy
from crucible.resilience.pool import ProviderPool

RADUS = Problem("undefined name 'radus'", (4, 24), (4, 29), "pyflakes", "F821")
TEXT = "import math\n\n\ndef area(radius):\n    return math.pi * radus**2\n\n\nprint(area(2))\n"


def listing(
    start: tuple[int, int],
    end: tuple[int, int],
    problems: tuple[Problem, ...] = (),
    only: tuple[str, ...] | None = None,
    language: str = "python",
) -> ListingRequest:
    starts = [0] + [i + 1 for i, c in enumerate(TEXT) if c == "\n"]
    return ListingRequest(
        uri="file:///w/geometry.py",
        language_id=language,
        version=3,
        text=TEXT,
        line_offset=lambda line: starts[line] if line < len(starts) else len(TEXT),
        start=start,
        end=end,
        problems=problems,
        only=only,
    )


# -- listed actions on the wire ---------------------------------------------------------------


def test_a_listed_action_survives_the_wire_and_bad_data_names_its_field() -> None:
    listed = ListedAction(
        uri="file:///w/a.py",
        version=4,
        intent=Intent.FIX,
        first_line=4,
        last_line=4,
        digest=digest_of("x\n"),
        problems=(RADUS,),
        title="fix it",
    )
    assert ListedAction.from_wire(listed.to_wire()) == listed
    wire = listed.to_wire()
    cases: list[tuple[Any, str]] = [
        (None, "data: expected an object"),
        ({**wire, "crucible": 2}, "not a Crucible code action"),
        ({**wire, "lines": [1]}, "data.lines"),
        ({**wire, "lines": [-1, 2]}, "data.lines"),
        ({**wire, "version": True}, "data.version"),
        ({**wire, "problems": [{}] * 21}, "data.problems"),
        ({**wire, "problems": [{"message": "m", "range": [0, 0, 0, "x"]}]}, "range"),
        ({**wire, "digest": "zz"}, "data.digest"),
        ({**wire, "custom": 99}, "data.custom"),
        ({**wire, "title": "t" * 1000}, "data.title"),
    ]
    for data, message in cases:
        with pytest.raises(MalformedAction, match=message):
            ListedAction.from_wire(data)


# -- the catalog -------------------------------------------------------------------------------


def test_quick_fixes_for_touching_diagnostics_and_fix_all_for_several() -> None:
    far = Problem("unused import", (0, 0), (0, 11))
    other = Problem("line too long", (4, 0), (4, 30))
    offers = list_actions(listing((4, 25), (4, 25), (far, RADUS, other)), CodeActionsSettings())
    assert [(o.title, o.kind, o.problems) for o in offers] == [
        ("Crucible: fix “undefined name 'radus'”", "quickfix", (1,)),
        ("Crucible: fix “line too long”", "quickfix", (2,)),
        ("Crucible: fix all 2 problems here", "quickfix", (1, 2)),
    ]
    assert offers[0].listed.digest == digest_of("    return math.pi * radus**2\n")


def test_rewrites_need_a_selection_and_annotations_a_typed_language() -> None:
    settings = CodeActionsSettings()
    assert list_actions(listing((3, 0), (3, 0)), settings) == ()
    titles = [o.title for o in list_actions(listing((3, 0), (5, 0), language="go"), settings)]
    assert titles == ["Crucible: simplify", "Crucible: add documentation", "Crucible: fix bugs"]
    [offer, *_] = list_actions(listing((3, 0), (5, 0)), settings)
    assert (offer.listed.first_line, offer.listed.last_line) == (3, 4)  # column 0 of 5 excluded


def test_only_filters_by_kind_hierarchy_and_custom_actions_by_scope() -> None:
    settings = CodeActionsSettings(
        custom=(
            CustomActionSettings(title="tests", prompt="{code}", scope=ActionScope.FILE),
            CustomActionSettings(
                title="why", prompt="{code}", kind="quickfix", scope=ActionScope.DIAGNOSTIC
            ),
            CustomActionSettings(title="sel", prompt="{code}", kind="source.crucible"),
        )
    )
    none_selected = list_actions(listing((4, 25), (4, 25)), settings)
    assert [o.title for o in none_selected] == ["Crucible: tests"]
    assert none_selected[0].listed.whole_file
    only_source = list_actions(listing((3, 0), (5, 0), (RADUS,), ("source",)), settings)
    assert [o.title for o in only_source] == ["Crucible: sel"]
    only_fix = list_actions(listing((4, 0), (4, 30), (RADUS,), ("quickfix",)), settings)
    assert [o.title for o in only_fix] == [
        "Crucible: fix “undefined name 'radus'”",
        "Crucible: why",
    ]
    assert only_fix[1].listed.problems == (RADUS,) and only_fix[1].listed.custom == 1


# -- the answer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "reason"),
    [
        ("Here:\n```python\nx = 1\n```\nDone, it works now.", "x = 1", ""),
        ("```\n```\n```js\nf()\n```", "f()", ""),
        ("````md\n```x```\n````", "```x```", ""),
        ("Here is the code:\nx = 1\ny = 2\nThis sets both values.", "x = 1\ny = 2", ""),
        ("I cannot do that.\nSorry about this one.", None, "only prose"),
        ("  \n", None, "empty"),
        ("```python\nx = 1\n", None, "cut off"),
    ],
)
def test_code_is_taken_out_of_the_answer(answer: str, code: str | None, reason: str) -> None:
    found = extract_code(answer)
    assert found.code == code
    assert reason in found.reason


def test_prose_is_told_from_code() -> None:
    assert is_prose("Here is the fixed function:")
    assert not any(
        is_prose(line)
        for line in ("from typing import Any", "for x in items:", "return a + b", "SELECT a FROM b")
    )


# -- edits -------------------------------------------------------------------------------------


def test_the_replacement_takes_the_targets_indentation_line_endings_and_final_newline() -> None:
    target = "\tif ok {\r\n\t\tprint(valeu)\r\n\t}\r\n"
    assert fit_to_target("if ok {\n    print(value)\n}", target, "\r\n") == (
        "\tif ok {\r\n\t\tprint(value)\r\n\t}\r\n"
    )
    spaced = "        return radus\n"
    assert fit_to_target("\n\nreturn radius\n\n", spaced, "\n") == "        return radius\n"
    assert fit_to_target("x = 2", "x = 1", "\n") == "x = 2"  # no final newline: none added


def test_minimal_edits_touch_only_changed_lines() -> None:
    text = "a\nb\nc\nd\n"
    edits = minimal_edits(text, 0, len(text), "a\nB\nc\nd\ne\n")
    assert [(e.start, e.end, e.new_text) for e in edits] == [(2, 4, "B\n"), (8, 8, "e\n")]
    assert apply_edits(text, edits) == "a\nB\nc\nd\ne\n"


def test_an_echo_of_the_surrounding_lines_widens_the_target() -> None:
    start = TEXT.index("    return")
    end = start + len("    return math.pi * radus**2\n")
    code = "def area(radius):\n    return math.pi * radius**2\n\n\nprint(area(2))"
    assert widen_to_echo(TEXT, start, end, code) == (TEXT.index("def"), len(TEXT))
    assert widen_to_echo("if a {\n  x\n}\n", 7, 10, "y\n}") == (7, 10)  # a lone } proves nothing


# -- validation --------------------------------------------------------------------------------


async def test_python_must_still_parse_when_it_parsed_before() -> None:
    broken = await check_edit("python", "x = 1\n", "x = (1\n", "x = 1\n", "x = (1\n")
    assert broken is not None and "line 1" in broken
    assert await check_edit("python", "x = 1\n", "x = 2\n", "x = 1\n", "x = 2\n") is None
    # It did not parse before: the brackets of the target decide.
    assert await check_edit("python", "def (\n", "def (:\n", "def (\n", "def (:\n") is None
    big = "x = 1\n" * 20_000
    assert await check_edit("python", big, big + "(\n", big, big + "(\n") is not None


def test_other_languages_keep_their_brackets_and_quotes_balanced() -> None:
    old = "function f() {\n  return g('a');\n}\n"
    assert balance_problem("javascript", old, old.replace("'a'", "'b'")) is None
    dropped = balance_problem("javascript", old, old.replace("}\n", ""))
    assert dropped is not None and "'{'" in dropped
    quote = balance_problem("javascript", old, old.replace("'a'", "'a"))
    assert quote is not None
    commented = "x = f(1) // don't (\n"
    assert balance_problem("javascript", "x = f(1)\n", commented) is None
    assert balance_problem("rust", "fn f<'a>(x: &'a str) {}", "fn g<'a>(x: &'a str) {}") is None


# -- prompts -----------------------------------------------------------------------------------


def test_the_prompt_carries_file_language_problems_context_and_asks_for_one_block() -> None:
    given = PromptInput(
        intent=Intent.FIX,
        language_id="python",
        path="src/geometry.py",
        target="    return math.pi * radus**2\n",
        before="def area(radius):\n",
        after="\nprint(area(2))\n",
        first_line=4,
        problems=(RADUS,),
    )
    system, user = build_messages(given)
    assert system.role == "system" and "one fenced code block" in system.content
    text = user.content
    expected = (
        "src/geometry.py",
        "python",
        "line 5: undefined name 'radus' [pyflakes F821]",
        "def area(radius):",
        "print(area(2))",
        "lines 5-5",
        "one fenced code block",
    )
    assert all(part in text for part in expected)
    custom = PromptInput(
        intent=Intent.CUSTOM,
        language_id="go",
        path="m.go",
        target="x := 1\n",
        before="",
        after="",
        first_line=0,
        template="Explain {code} in {language} from {file}; keep {braces}",
    )
    assert "Explain x := 1\n in go from m.go; keep {braces}" in build_messages(custom)[1].content
    assert fence_for("a ```` b") == "`````"


# -- the service -------------------------------------------------------------------------------


def make_service(
    provider: ScriptedProvider, time: FakeTime, root: Path | None = None
) -> CodeActionService:
    pool = ProviderPool(
        [(provider, 0)],
        ResiliencePolicy(probes=False, retry=RetryPolicy(budget_min_per_second=100.0)),
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.5,
    )
    service = CodeActionService(CodeActionsSettings(), None)
    service.reconfigure(
        CodeActionsSettings(), pool, privacy=WorkspacePrivacy(root, ("secret/**",)), redact=True
    )
    return service


def job(text: str = TEXT, path: str = "/w/geometry.py", first: int = 4) -> ActionJob:
    start = sum(len(line) for line in text.splitlines(keepends=True)[:first])
    end = start + len(text.splitlines(keepends=True)[first])
    listed = ListedAction(
        uri="file://" + path,
        version=1,
        intent=Intent.FIX,
        first_line=first,
        last_line=first,
        problems=(RADUS,),
    )
    return ActionJob(
        listed, DocumentSnapshot("file://" + path, path, "python", 1, text), start, end
    )


ANSWER = "```python\n    return math.pi * radius**2\n```"


def test_no_action_is_listed_when_off_without_a_chat_provider_or_for_an_excluded_file() -> None:
    time = FakeTime()
    service = make_service(ScriptedProvider("chat", time), time, Path("/w"))
    request = listing((4, 25), (4, 25), (RADUS,))
    assert len(service.list(request, "/w/geometry.py")) == 1
    assert service.list(request, "/w/secret/geometry.py") == ()
    pool = service._pool
    service.reconfigure(CodeActionsSettings(enabled=False), pool, privacy=None, redact=True)
    assert service.list(request, "/w/geometry.py") == ()
    service.reconfigure(CodeActionsSettings(), None, privacy=None, redact=True)
    assert service.list(request, "/w/geometry.py") == ()
    assert service.snapshot()["listed"] == 1


def test_a_custom_action_resolves_only_while_configured_as_listed() -> None:
    long_title = "t" * 300
    settings = CodeActionsSettings(
        custom=(CustomActionSettings(title=long_title, prompt="{code}", scope=ActionScope.FILE),)
    )
    [offer] = list_actions(listing((0, 0), (0, 0)), settings)
    service = CodeActionService(settings, None)
    assert service.custom_template(ListedAction.from_wire(offer.listed.to_wire())) == "{code}"
    service.reconfigure(CodeActionsSettings(), None, privacy=None, redact=True)
    assert service.custom_template(offer.listed) is None


async def test_resolve_returns_minimal_edits_and_counts() -> None:
    time = FakeTime()
    provider = ScriptedProvider("chat", time, Reply((ANSWER[:10], ANSWER[10:])))
    service = make_service(provider, time, Path("/w"))
    result = await service.resolve(job())
    assert result.ok and result.version == 1
    assert apply_edits(TEXT, result.edits) == TEXT.replace("radus", "radius")
    assert provider.endings() == ["completed"]
    assert "geometry.py" in provider.calls[0].request.messages[1].content  # type: ignore[union-attr]
    assert "/w/" not in provider.calls[0].request.messages[1].content  # type: ignore[union-attr]
    counts = service.snapshot()
    assert (counts["resolved"], counts["refused"], counts["errors"]) == (1, 0, 0)


async def test_refusals_make_no_call_for_excluded_files_and_private_keys() -> None:
    time = FakeTime()
    provider = ScriptedProvider("chat", time, Reply((ANSWER,)))
    service = make_service(provider, time, Path("/w"))
    excluded = await service.resolve(job(path="/w/secret/geometry.py"))
    assert "excluded" in excluded.message
    key = "-----BEGIN RSA PRIVATE KEY-----\n"
    keyed = await service.resolve(job(text=TEXT.replace("    return", key + "    return"), first=4))
    assert "private key" in keyed.message
    assert provider.calls == []
    assert service.snapshot()["refused"] == 2


async def test_secrets_are_redacted_and_a_placeholder_never_lands_in_the_file() -> None:
    time = FakeTime()
    secret = 'token = "ghp_' + "a1B2c3D4e5F6g7H8i9J0" * 2 + '"\n'
    text = secret + "x = radus\n"
    provider = ScriptedProvider("chat", time, Reply(('```python\ntoken = "<redacted>"\n```',)))
    service = make_service(provider, time, Path("/w"))
    result = await service.resolve(job(text=text, first=0))
    sent = provider.calls[0].request.messages[1].content  # type: ignore[union-attr]
    assert "ghp_" not in sent and "<redacted>" in sent
    assert not result.ok and "redacted" in result.message


async def test_a_provider_failure_is_a_refusal_and_an_invalid_answer_is_retried_once() -> None:
    time = FakeTime()
    failing = ScriptedProvider(
        "chat", time, Reply((), error=ProviderUnavailable("chat", "connection refused"))
    )
    service = make_service(failing, time)
    result = await time.run(service.resolve(job()))
    assert not result.ok and "failed" in result.message
    assert service.snapshot()["errors"] == 1
    bad = "```python\n    return (math.pi\n```"
    twice_bad = ScriptedProvider("chat", time, Reply((bad,)))
    service = make_service(twice_bad, time)
    result = await service.resolve(job())
    assert len(twice_bad.calls) == 2 and "rejected twice" in result.message
    retry = twice_bad.calls[1].request.messages  # type: ignore[union-attr]
    assert [m.role for m in retry] == ["system", "user", "assistant", "user"]
    assert "does not parse" in retry[-1].content
