"""The chat prompt of a code action: the target, its surroundings, the diagnostics, the task.

The model sees the file's name (relative to the workspace), its language, the code before and
after the target (``code_actions.context_lines`` each side, secrets redacted as in every
prompt), the target itself between fences, the diagnostics, and what to do; it is asked for
the target's replacement in one fenced code block and nothing else. A custom action's template
fills the placeholders ``{code}``, ``{language}``, ``{file}``, ``{diagnostics}``, ``{before}``
and ``{after}`` (other braces are left as they are, so templates may show code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crucible.actions.listed import Intent, Problem
from crucible.providers.base import ChatMessage

SYSTEM = (
    "You are an expert programmer editing code in the user's editor. You are given a file's"
    " target code and the code around it. Reply with the complete replacement for the target"
    " code only, in exactly one fenced code block, with no explanation. Keep the target's"
    " indentation style, do not repeat the code before or after it, and change only what the"
    " task needs."
)

_DOC_IDIOMS = {
    "python": "docstrings (PEP 257)",
    "javascript": "JSDoc comments",
    "javascriptreact": "JSDoc comments",
    "typescript": "TSDoc comments",
    "typescriptreact": "TSDoc comments",
    "java": "Javadoc comments",
    "kotlin": "KDoc comments",
    "rust": "/// doc comments",
    "go": "Go doc comments (// Name ... before each declaration)",
    "c": "Doxygen comments",
    "cpp": "Doxygen comments",
    "csharp": "XML documentation comments (///)",
    "ruby": "YARD comments",
    "php": "PHPDoc comments",
    "lua": "LuaDoc comments (---)",
    "elixir": "@doc and @moduledoc attributes",
}
_TYPE_IDIOMS = {
    "python": "type hints (PEP 484) on parameters and return values",
    "typescript": "TypeScript type annotations instead of implicit any",
    "typescriptreact": "TypeScript type annotations instead of implicit any",
    "php": "parameter, return and property type declarations",
}
_PLACEHOLDER = re.compile(r"\{(code|language|file|diagnostics|before|after)\}")


@dataclass(frozen=True, slots=True)
class PromptInput:
    intent: Intent
    language_id: str
    path: str  # as the model may see it (privacy.prompt_path)
    target: str  # redacted
    before: str  # redacted
    after: str  # redacted
    first_line: int  # 0-based, for "lines 3-5"
    problems: tuple[Problem, ...] = ()
    template: str = ""  # a custom action's prompt


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _block(text: str, language: str) -> str:
    fence = fence_for(text)
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"


def task_of(intent: Intent, language_id: str, problems: tuple[Problem, ...]) -> str:
    if intent is Intent.FIX:
        return f"Fix this problem: {problems[0].label() if problems else 'the reported problem'}."
    if intent is Intent.FIX_ALL:
        return "Fix all of these problems:\n" + "\n".join(f"- {p.label()}" for p in problems)
    if intent is Intent.SIMPLIFY:
        return "Simplify the target code without changing what it does."
    if intent is Intent.DOCUMENT:
        idiom = _DOC_IDIOMS.get(language_id, "the language's usual documentation comments")
        return f"Add documentation to the target code, as {idiom}; do not change the code."
    if intent is Intent.ANNOTATE:
        idiom = _TYPE_IDIOMS.get(language_id, "type annotations")
        return f"Add {idiom} to the target code; do not change what it does."
    return "Find and fix bugs in the target code. If it has none, return it unchanged."


def build_messages(given: PromptInput) -> tuple[ChatMessage, ...]:
    lines = given.target.count("\n") + (0 if given.target.endswith("\n") else 1)
    last = given.first_line + max(lines, 1)
    diagnostics = "\n".join(f"- {p.label()}" for p in given.problems) or "(none)"
    language = given.language_id
    if given.intent is Intent.CUSTOM:
        values = {
            "code": given.target,
            "language": language,
            "file": given.path,
            "diagnostics": diagnostics,
            "before": given.before,
            "after": given.after,
        }
        task = _PLACEHOLDER.sub(lambda m: values[m.group(1)], given.template)
    else:
        task = task_of(given.intent, language, given.problems)
    parts = [f"File: {given.path} (language: {language})"]
    if given.problems:
        parts.append(f"Problems reported by the editor:\n{diagnostics}")
    if given.before.strip():
        parts.append(f"Code before the target:\n{_block(given.before, language)}")
    parts.append(
        f"Target code (lines {given.first_line + 1}-{last}), to be replaced:\n"
        + _block(given.target, language)
    )
    if given.after.strip():
        parts.append(f"Code after the target:\n{_block(given.after, language)}")
    parts.append(f"Task: {task}")
    parts.append("Reply with the replacement for the target code in one fenced code block.")
    return (ChatMessage("system", SYSTEM), ChatMessage("user", "\n\n".join(parts)))


def retry_messages(
    messages: tuple[ChatMessage, ...], answer: str, problem: str
) -> tuple[ChatMessage, ...]:
    """The conversation again, with the rejected answer and why it was rejected."""
    return (
        *messages,
        ChatMessage("assistant", answer),
        ChatMessage(
            "user",
            f"That replacement cannot be used: {problem}. Reply again with the corrected"
            " replacement for the target code in one fenced code block.",
        ),
    )
