"""Early stop: realistic model streams fed chunk by chunk must stop at the right line.

Each stream case gives the generated text, ``stop_at`` (the part of it read when the rule says
stop) and the accepted text. Every case is fed in chunks of several sizes, so chunks split
lines, newlines and CRLF pairs anywhere; the rule must stop in the chunk that completes the
deciding line and accept the same text whatever the chunking.
"""

from __future__ import annotations

import math

import pytest

from crucible.completion.stopping import (
    CHARS_PER_TOKEN,
    StopRule,
    char_limit,
    opens_block,
    scan_brackets,
    suffix_overlap,
    wants_multiline,
)
from crucible.config.settings import Multiline
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow, cut_window

CURSOR = "‸"
CHUNK_SIZES = [1, 2, 3, 7, 16, 1000]


def window(source: str) -> ContextWindow:
    offset = source.index(CURSOR)
    snapshot = DocumentSnapshot("file:///s", "/s", "text", 1, source.replace(CURSOR, ""))
    return cut_window(snapshot, offset, max_prefix=6000, max_suffix=2000)


def feed_all(rule: StopRule, generated: str, size: int) -> int | None:
    """Feed ``generated`` in chunks of ``size``; how many chars were read when it said stop."""
    for start in range(0, len(generated), size):
        if rule.feed(generated[start : start + size]):
            return min(start + size, len(generated))
    return None


MULTILINE = [
    pytest.param(
        "def add(a, b):‸\n",
        "\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
        "\n    return a + b\n\n\ndef sub(a, b):\n",
        "\n    return a + b",
        id="python-body-after-def-ends-at-dedent",
    ),
    pytest.param(
        "def area(w, h):\n    ‸\n",
        "if w < 0 or h < 0:\n        raise ValueError(w, h)\n    return w * h\n\n"
        "print(area(2, 3))\n",
        "if w < 0 or h < 0:\n        raise ValueError(w, h)\n    return w * h\n\n"
        "print(area(2, 3))\n",
        "if w < 0 or h < 0:\n        raise ValueError(w, h)\n    return w * h",
        id="python-empty-body-line-keeps-block-level",
    ),
    pytest.param(
        "import sys\n\n‸",
        "def main() -> int:\n    print(sys.argv)\n\n    return 0\n\n\nif __name__ == '__main__':\n",
        "def main() -> int:\n    print(sys.argv)\n\n    return 0\n\n\n",
        "def main() -> int:\n    print(sys.argv)\n\n    return 0",
        id="python-top-level-two-blank-lines",
    ),
    pytest.param(
        "‸\n",
        "import os\nimport sys\n\nclass Config:\n    pass\n",
        "import os\nimport sys\n\nclass Config:\n",
        "import os\nimport sys",
        id="python-top-level-blank-then-next-definition",
    ),
    pytest.param(
        "result = compute(\n    a,\n    ‸\n)\n",
        "b,\n)\nprint(result)\n",
        "b,\n)\n",
        "b,\n)",
        id="python-call-arguments-close-the-call",
    ),
    pytest.param(
        "function greet(name) {‸}\n",
        "\n  const msg = `Hello, ${name}`;\n  return msg;\n}\n\nfunction other() {\n",
        "\n  const msg = `Hello, ${name}`;\n  return msg;\n}\n",
        "\n  const msg = `Hello, ${name}`;\n  return msg;\n}",
        id="js-auto-closed-brace-kept-for-replacement",
    ),
    pytest.param(
        "items.forEach((item) => {‸});\n",
        "\n  console.log(item);\n});\n\nconsole.log('done');\n",
        "\n  console.log(item);\n});\n",
        "\n  console.log(item);\n});",
        id="js-callback-closes-brace-and-paren",
    ),
    pytest.param(
        "function face() {\n  ‸\n}\n",
        "const smile = ':)';\n  return smile;\n}\nface();\n",
        "const smile = ':)';\n  return smile;\n}\n",
        "const smile = ':)';\n  return smile;\n}",
        id="js-bracket-inside-string-ignored",
    ),
    pytest.param(
        "call(function () {‸}\n",
        "\n  return 1;\n});\n",
        "\n  return 1;\n});\n",
        "\n  return 1;",
        id="js-bare-closer-the-line-already-holds-excluded",
    ),
    pytest.param(
        "func main() {‸\n",
        '\n\tfmt.Println("hi (there")\n}\n\nfunc helper() {\n',
        '\n\tfmt.Println("hi (there")\n}\n',
        '\n\tfmt.Println("hi (there")\n}',
        id="go-function-body-with-closer",
    ),
    pytest.param(
        "func sum(xs []int) int {\n\t‸\n",
        "total := 0\n\tfor _, x := range xs {\n\t\ttotal += x\n\t}\n\treturn total\n}\n\n"
        "func main() {\n",
        "total := 0\n\tfor _, x := range xs {\n\t\ttotal += x\n\t}\n\treturn total\n}\n",
        "total := 0\n\tfor _, x := range xs {\n\t\ttotal += x\n\t}\n\treturn total\n}",
        id="go-tabs-inner-block-does-not-stop",
    ),
    pytest.param(
        "fn abs(x: i32) -> i32 {\n    if x > 0 {‸\n",
        "\n        x\n    } else {\n        -x\n    }\n}\n",
        "\n        x\n    } else {\n",
        "\n        x",
        id="rust-else-branch-ends-the-if-block",
    ),
    pytest.param(
        "impl Parser {‸\n",
        "\n    fn rest<'a>(&self, input: &'a str) -> &'a str {\n        &input[1..]\n    }\n}\n"
        "\nimpl Other {\n",
        "\n    fn rest<'a>(&self, input: &'a str) -> &'a str {\n        &input[1..]\n    }\n}\n",
        "\n    fn rest<'a>(&self, input: &'a str) -> &'a str {\n        &input[1..]\n    }\n}",
        id="rust-lifetimes-are-not-strings",
    ),
    pytest.param(
        "int main(void) {‸\n",
        '\n    printf("%d\\n", 42);\n    return 0;\n}\nint other(void) {\n',
        '\n    printf("%d\\n", 42);\n    return 0;\n}\n',
        '\n    printf("%d\\n", 42);\n    return 0;\n}',
        id="c-function",
    ),
    pytest.param(
        "def f(x:‸)\n",
        " int) -> int:\n    return x\n",
        " int) -> int:\n",
        " int) -> int:",
        id="cursor-line-finished-inline",
    ),
    pytest.param(
        "const point = {‸\n",
        "\r\n  x: 1,\r\n  y: 2,\r\n};\r\nexport default point;\r\n",
        "\r\n  x: 1,\r\n  y: 2,\r\n};\r\n",
        "\n  x: 1,\n  y: 2,\n};",
        id="crlf-stream",
    ),
]


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(("source", "generated", "stop_at", "text"), MULTILINE)
def test_multiline_stream_stops_at_the_end_of_the_block(
    source: str, generated: str, stop_at: str, text: str, size: int
) -> None:
    assert generated.startswith(stop_at)
    rule = StopRule(window(source), multiline=True, max_lines=16)
    read = feed_all(rule, generated, size)
    assert read == min(math.ceil(len(stop_at) / size) * size, len(generated))
    assert read is not None  # feed said stop: the rule is done
    assert rule.text == text


SINGLE_LINE = [
    pytest.param(
        "const total = ‸\n",
        "items.reduce((a, b) => a + b, 0);\nconsole.log(total);\n",
        "items.reduce((a, b) => a + b, 0);\n",
        "items.reduce((a, b) => a + b, 0);",
        id="js-statement",
    ),
    pytest.param(
        "\tif err != nil ‸\n",
        "{\n\t\treturn err\n\t}\n",
        "{\n",
        "{",
        id="go-ends-at-first-newline",
    ),
    pytest.param("name = user.‸\n", "\n    return name\n", "\n", "", id="leading-newline-is-empty"),
    pytest.param("x = 1 ‸\n", "  \n# done\n", "  \n", "", id="blank-first-line-is-empty"),
    pytest.param("print(‸)\n", "value)\r\nnext", "value)\r\n", "value)", id="crlf-line-ending"),
]


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(("source", "generated", "stop_at", "text"), SINGLE_LINE)
def test_single_line_stream_stops_at_the_first_line_break(
    source: str, generated: str, stop_at: str, text: str, size: int
) -> None:
    rule = StopRule(window(source), multiline=False, max_lines=16)
    assert feed_all(rule, generated, size) == min(
        math.ceil(len(stop_at) / size) * size, len(generated)
    )
    assert rule.text == text


def test_max_lines_caps_a_long_block() -> None:
    rule = StopRule(window("data = [‸\n"), multiline=True, max_lines=4)
    generated = "\n" + "".join(f"    {n},\n" for n in range(20)) + "]\n"
    assert feed_all(rule, generated, 5) == 25  # the chunk holding the 4th line's newline
    assert rule.text == "\n    0,\n    1,\n    2,"


def test_text_before_done_judges_the_partial_line_as_finished() -> None:
    rule = StopRule(window("def f():‸\n"), multiline=True, max_lines=16)
    assert not rule.feed("\n    return 1\ndef")
    # If the stream ended here, "def" would be a dedent out of the body: not part of the text.
    assert rule.text == "\n    return 1"
    assert not rule.feed("")  # reading the text ended nothing: the rule still reads
    assert not rule.feed("ault_value = 2")
    assert rule.text == "\n    return 1"


def test_text_before_done_keeps_a_partial_line_inside_the_block() -> None:
    rule = StopRule(window("def f():‸\n"), multiline=True, max_lines=16)
    rule.feed("\n    x = 1\n\n    ret")
    assert rule.text == "\n    x = 1\n\n    ret"
    rule.feed("urn x")
    assert rule.text == "\n    x = 1\n\n    return x"


def test_single_line_text_before_done_is_the_partial_line() -> None:
    rule = StopRule(window("total = ‸\n"), multiline=False, max_lines=16)
    rule.feed("sum(val")
    assert (rule.text, rule.feed("")) == ("sum(val", False)  # reading it ended nothing


def test_feed_after_done_reads_nothing_more() -> None:
    rule = StopRule(window("x = ‸\n"), multiline=False, max_lines=16)
    assert rule.feed("42\ny = 1")
    assert rule.feed("garbage\n")
    assert rule.text == "42"


def test_trailing_blank_lines_are_stripped_at_the_stop() -> None:
    rule = StopRule(window("class A:‸\n"), multiline=True, max_lines=16)
    assert rule.feed("\n    x = 1\n\n   \nclass B:\n")
    assert rule.text == "\n    x = 1"


@pytest.mark.parametrize(
    ("source", "mode", "expected"),
    [
        pytest.param("x = fo‸o + 1\n", Multiline.ALWAYS, True, id="always"),
        pytest.param("    ‸\n", Multiline.NEVER, False, id="never"),
        pytest.param("def f():\n    ‸\n", Multiline.AUTO, True, id="blank-line"),
        pytest.param("def f():‸\n", Multiline.AUTO, True, id="python-colon"),
        pytest.param("if (ready) {‸}\n", Multiline.AUTO, True, id="brace-before-auto-closed"),
        pytest.param("items.forEach((x) => {‸});\n", Multiline.AUTO, True, id="callback"),
        pytest.param("const f = (a) =>‸\n", Multiline.AUTO, True, id="arrow"),
        pytest.param("foo(‸)\n", Multiline.AUTO, True, id="open-paren"),
        pytest.param("fn main() ->‸\n", Multiline.AUTO, True, id="rust-arrow"),
        pytest.param("Enum.each(xs, fn x -> x end) do‸\n", Multiline.AUTO, True, id="elixir-do"),
        pytest.param("if ok then‸\n", Multiline.AUTO, True, id="lua-then"),
        pytest.param("x = 1‸\n", Multiline.AUTO, False, id="after-ordinary-token"),
        pytest.param("return‸\n", Multiline.AUTO, False, id="after-keyword"),
        pytest.param("editor.undo‸\n", Multiline.AUTO, False, id="word-ending-in-do"),
        pytest.param("foo‸bar()\n", Multiline.AUTO, False, id="mid-line"),
        pytest.param("foo(‸) + 1\n", Multiline.AUTO, False, id="code-after-closer"),
    ],
)
def test_wants_multiline(source: str, mode: Multiline, expected: bool) -> None:
    assert wants_multiline(window(source), mode) is expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("    else", True, id="else"),
        pytest.param("begin", True, id="whole-line-word"),
        pytest.param("my_do", False, id="identifier-ending-in-do"),
        pytest.param("x = y", False, id="plain"),
    ],
)
def test_opens_block(line: str, expected: bool) -> None:
    assert opens_block(line) is expected


@pytest.mark.parametrize(
    ("line", "open_", "expected"),
    [
        pytest.param("foo(a, [b]) {", "", ("{", ""), id="balanced-then-open"),
        pytest.param("}).then(() => {", "", ("({", "})"), id="closers-then-open"),
        pytest.param("  x)", "((", ("(", ""), id="closes-what-earlier-lines-opened"),
        pytest.param('print(")")', "", ("", ""), id="double-quoted-closer"),
        pytest.param('log("a \\"(\\" b")', "", ("", ""), id="escaped-quotes"),
        pytest.param("c = '('", "", ("", ""), id="char-literal"),
        pytest.param("`${a}) ${b}`)", "", ("", ")"), id="template-literal"),
        pytest.param("fn f<'a>(x: &'a str) {", "", ("{", ""), id="rust-lifetimes"),
        pytest.param("// don't close (yet", "", ("(", ""), id="apostrophe-in-comment"),
        pytest.param('s = "unterminated (', "", ("(", ""), id="unterminated-quote-is-text"),
    ],
)
def test_scan_brackets(line: str, open_: str, expected: tuple[str, str]) -> None:
    assert scan_brackets(line, open_) == expected


@pytest.mark.parametrize(
    ("last_line", "line_suffix", "unmatched", "expected"),
    [
        pytest.param("a, b)", ")", ")", 1, id="closer-retyped"),
        pytest.param("foo()", ")", "", 0, id="balanced-call-is-not-overlap"),
        pytest.param("});", "});", "})", 3, id="whole-closing-line"),
        pytest.param("});", "})", "})", 2, id="closers-in-order-with-extra-semicolon"),
        pytest.param(" int) -> int:", ")", ")", 1, id="closer-inside-the-line"),
        pytest.param("x)", "));", ")", 1, id="partial-closers"),
        pytest.param("x,", ", y)", "", 1, id="leading-part-of-code"),
        pytest.param(": number = 0;", " = 0;", "", 5, id="rewrites-code"),
        pytest.param("})", "}", "})", 0, id="closes-more-than-the-line-holds"),
        pytest.param("x", "   ", "", 0, id="blank-suffix"),
    ],
)
def test_suffix_overlap(last_line: str, line_suffix: str, unmatched: str, expected: int) -> None:
    assert suffix_overlap(last_line, line_suffix, unmatched) == expected


# -- the size bound: max_tokens holds whatever the provider sends -----------------------------


@pytest.mark.parametrize("multiline", [False, True], ids=["single-line", "multi-line"])
@pytest.mark.parametrize("size", [1, 7, 1000, 5_000_000], ids=lambda n: f"chunks-of-{n}")
def test_a_token_flood_without_newline_is_cut_at_the_char_limit(multiline: bool, size: int) -> None:
    # One gigantic "token" (or many) with no line break: a rule without a size bound would
    # keep reading (and holding) all of it.
    limit = char_limit(160)
    rule = StopRule(window("x = ‸\n"), multiline=multiline, max_lines=16, max_chars=limit)
    read = feed_all(rule, "a" * 5_000_000, size)
    assert read is not None and read <= limit + size
    assert rule.text == "a" * limit


def test_the_char_limit_cuts_a_long_block_mid_line_and_judges_it() -> None:
    # Many short lines under max_lines but over the character bound: the stream ends at the
    # bound, and the cut line is judged as the stream's last (a dedent would still stop first).
    rule = StopRule(window("def f():‸\n"), multiline=True, max_lines=500, max_chars=40)
    generated = "\n" + "    x = 1\n" * 100
    assert feed_all(rule, generated, 3) is not None
    assert len(rule.text) <= 40
    assert rule.text.startswith("\n    x = 1\n    x = 1")


def test_an_honest_suggestion_under_the_char_limit_is_untouched() -> None:
    rule = StopRule(window("x = ‸\n"), multiline=False, max_lines=16, max_chars=char_limit(4))
    assert feed_all(rule, "compute(a, b)\nmore", 2) is not None
    assert rule.text == "compute(a, b)"


def test_char_limit_scales_with_max_tokens() -> None:
    assert char_limit(160) == 160 * CHARS_PER_TOKEN
    assert char_limit(0) == CHARS_PER_TOKEN  # never zero: a suggestion of nothing is no limit
