"""Postprocess filters, each on its own, then the whole pipeline on realistic answers."""

from __future__ import annotations

import pytest

from crucible.completion.postprocess import (
    cut_repeated_lines,
    detect_indent_unit,
    drop_echo,
    drop_suffix_repeats,
    normalize_indentation,
    overlap_line_suffix,
    postprocess,
    strip_special_tokens,
    trim_whitespace,
)
from crucible.completion.suggestion import Suggestion
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow, cut_window

CURSOR = "‸"


def window(source: str) -> ContextWindow:
    offset = source.index(CURSOR)
    snapshot = DocumentSnapshot("file:///p", "/p", "text", 1, source.replace(CURSOR, ""))
    return cut_window(snapshot, offset, max_prefix=6000, max_suffix=2000)


ANYWHERE = window("‸")


def text_of(result: Suggestion | None) -> str | None:
    return None if result is None else result.text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("return x<|endoftext|>\ndef other():", "return x", id="qwen-end-of-text"),
        pytest.param("<|fim_middle|>x + 1", "x + 1", id="echoed-marker-at-start"),
        pytest.param("<|fim_middle|><|fim_middle|>ok<EOT>", "ok", id="repeated-markers"),
        pytest.param("foo()<EOT> <MID>", "foo()", id="codellama-eot"),
        pytest.param("bar()</s>", "bar()", id="eos"),
        pytest.param("a + b<｜end▁of▁sentence｜>junk", "a + b", id="deepseek"),
        pytest.param("x<fim_prefix>def", "x", id="starcoder"),
        pytest.param("value[SUFFIX]rest", "value", id="codestral"),
        pytest.param("items[PREFIX_LEN]", "items[PREFIX_LEN]", id="array-index-kept"),
        pytest.param("f <| x |> g", "f <| x |> g", id="fsharp-pipes-kept"),
    ],
)
def test_strip_special_tokens(raw: str, expected: str) -> None:
    assert strip_special_tokens(Suggestion(raw), ANYWHERE, "").text == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("foo()   \n  bar()  \n\n  \n", "foo()\n  bar()", id="trailing-lines"),
        pytest.param("\n    return x  ", "\n    return x", id="leading-newline-kept"),
        pytest.param("x = 1\r\ny = 2\r", "x = 1\ny = 2", id="crlf"),
        pytest.param("   \n\t\n", None, id="whitespace-only"),
        pytest.param("", None, id="empty"),
    ],
)
def test_trim_whitespace(raw: str, expected: str | None) -> None:
    assert text_of(trim_whitespace(Suggestion(raw), ANYWHERE, "")) == expected


@pytest.mark.parametrize(
    ("raw", "unit", "expected"),
    [
        pytest.param(
            "{\n        x := 1\n        if x > 0 {\n            use(x)\n        }",
            "\t",
            "{\n\t\tx := 1\n\t\tif x > 0 {\n\t\t\tuse(x)\n\t\t}",
            id="spaces-to-tabs-at-the-suggestions-step",
        ),
        pytest.param("\n    return err", "\t", "\n\treturn err", id="spaces-to-tabs-default-step"),
        pytest.param("\n\t\t  aligned,", "\t", "\n\t\t  aligned,", id="alignment-after-tabs"),
        pytest.param(
            "\n\tif x:\n\t\treturn 1", "    ", "\n    if x:\n        return 1", id="tabs-to-spaces"
        ),
        pytest.param("\n\t\tfoo()", "  ", "\n    foo()", id="tabs-to-two-spaces"),
        pytest.param("  x = 1\n\ty = 2", "    ", "  x = 1\n    y = 2", id="first-line-untouched"),
        pytest.param("\n\tfoo()", "", "\n\tfoo()", id="unknown-style-untouched"),
        pytest.param("    foo()", "\t", "    foo()", id="single-line-untouched"),
    ],
)
def test_normalize_indentation(raw: str, unit: str, expected: str) -> None:
    assert normalize_indentation(Suggestion(raw), ANYWHERE, unit).text == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        pass\n",
            "    ",
            id="python-four",
        ),
        pytest.param("function f() {\n  if (x) {\n    y();\n  }\n}\n", "  ", id="javascript-two"),
        pytest.param(
            "func main() {\n\tif x {\n\t\ty()\n\t}\n\t/* a\n\t *  b */\n}\n", "\t", id="go-tabs"
        ),
        pytest.param("a = 1\nb = 2\n", "    ", id="no-indentation-default"),
        pytest.param(
            "if a:\n    if b:\n        if c:\n            x\ny\nif d:\n    z\n",
            "    ",
            id="deep-dedent-ignored",
        ),
        pytest.param("x = [\n    1,\n]\n    \n\t\n", "    ", id="blank-lines-ignored"),
    ],
)
def test_detect_indent_unit(text: str, expected: str) -> None:
    assert detect_indent_unit(text) == expected


def test_detect_indent_unit_default_when_nothing_is_indented() -> None:
    assert detect_indent_unit('package main\n\nimport "fmt"\n', default="") == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("x = 1\nx = 1\nx = 1\nx = 1\nreturn x", "x = 1", id="loop-cut-to-one"),
        pytest.param("a = []\nfoo()\nfoo()\nfoo()\n", "a = []\nfoo()", id="after-a-line"),
        pytest.param("i += 1\ni += 1\nreturn i", "i += 1\ni += 1\nreturn i", id="two-kept"),
        pytest.param("a\n\n\n\nb", "a\n\n\n\nb", id="blank-lines-are-not-a-loop"),
        pytest.param("        }\n    }\n}", "        }\n    }\n}", id="nested-closers"),
    ],
)
def test_cut_repeated_lines(raw: str, expected: str) -> None:
    assert cut_repeated_lines(Suggestion(raw), ANYWHERE, "").text == expected


@pytest.mark.parametrize(
    ("source", "raw", "kept"),
    [
        pytest.param(
            "def f(x):\n    y = x * 2\n    return y\n    ‸\n",
            "y = x * 2\n    return y",
            False,
            id="repeats-the-lines-above",
        ),
        pytest.param("total = 0\ntotal = ‸\n", "0", False, id="completed-line-is-the-line-above"),
        pytest.param(
            "for x in xs:\n    ‸\n    print(x)\n", "print(x)", False, id="is-the-next-line"
        ),
        pytest.param(
            "{\n  ‸\n\n  return x;\n}\n", "return x;", False, id="is-the-next-non-blank-line"
        ),
        pytest.param("        }\n    ‸\n", "}", True, id="closer-at-another-indentation"),
        pytest.param("y = x * 2\n‸\n", "print(y)", True, id="new-code"),
        pytest.param("def g():‸\n", "\n    pass", True, id="nothing-above"),
    ],
)
def test_drop_echo(source: str, raw: str, kept: bool) -> None:
    result = drop_echo(Suggestion(raw), window(source), "")
    assert (result is not None) is kept


@pytest.mark.parametrize(
    ("source", "raw", "expected"),
    [
        pytest.param(
            "function f() {\n  ‸\n}\n", "return 1;\n}", "return 1;", id="closing-brace-below"
        ),
        pytest.param(
            "if x:\n    ‸\n    return y\n", "y = x\n    return y", "y = x", id="statement-below"
        ),
        pytest.param("{\n  ‸\n\n}\n", "x();\n}\n", "x();", id="blank-lines-below-skipped"),
        pytest.param(
            "if (a) {\n    ‸\n}\n",
            "if (b) {\n        c();\n    }",
            "if (b) {\n        c();\n    }",
            id="inner-closer-is-not-the-outer-one",
        ),
        pytest.param("‸\nfoo()\nbar()\n", "\nfoo()\nbar()", None, id="everything-below-already"),
        pytest.param("x = ‸\ny\n", "y", "y", id="single-line-untouched"),
    ],
)
def test_drop_suffix_repeats(source: str, raw: str, expected: str | None) -> None:
    assert text_of(drop_suffix_repeats(Suggestion(raw), window(source), "")) == expected


@pytest.mark.parametrize(
    ("source", "raw", "replace_suffix"),
    [
        pytest.param("foo(‸)\n", "a, b)", 1, id="closer-retyped"),
        pytest.param("print(‸)\n", "foo()", 0, id="balanced-call-inserted-whole"),
        pytest.param("fn main() {‸}\n", '\n    println!("hi");\n}', 1, id="auto-closed-brace"),
        pytest.param(
            "items.forEach((item) => {‸});\n", "\n  console.log(item);\n});", 3, id="callback"
        ),
        pytest.param("let x‸ = 0;\n", ": number = 0;", 5, id="rewrites-the-rest"),
        pytest.param('print("‸")\n', 'hello")', 2, id="quote-and-paren"),
        pytest.param("call(‸, y)\n", "x,", 1, id="leading-part"),
        pytest.param("x = ‸\n", "1", 0, id="nothing-after-cursor"),
    ],
)
def test_overlap_line_suffix(source: str, raw: str, replace_suffix: int) -> None:
    result = overlap_line_suffix(Suggestion(raw), window(source), "")
    assert result == Suggestion(raw, replace_suffix)


@pytest.mark.parametrize(
    ("source", "raw", "indent_unit", "expected"),
    [
        pytest.param(
            "def f():‸\n",
            "\n    return 1  \n<|endoftext|>\n\n",
            None,
            Suggestion("\n    return 1"),
            id="leaked-token-and-whitespace",
        ),
        pytest.param(
            "func main() {\n\tx := 1\n\tif x > 0 {‸\n\t}\n}\n",
            "\n        fmt.Println(x)\n",
            None,
            Suggestion("\n\t\tfmt.Println(x)"),
            id="go-spaces-become-tabs",
        ),
        pytest.param(
            "package main\n\nfunc main() {‸\n",
            "\n\tfmt.Println()\n}",
            None,
            Suggestion("\n\tfmt.Println()\n}"),
            id="no-indentation-evidence-left-alone",
        ),
        pytest.param(
            "class A:\n    def f(self):‸\n",
            "\n        return 1",
            "\t",
            Suggestion("\n\t\treturn 1"),
            id="explicit-indent-unit-wins",
        ),
        pytest.param(
            "fn main() {‸}\n",
            '\n    println!("hi");\n}\n',
            None,
            Suggestion('\n    println!("hi");\n}', replace_suffix=1),
            id="auto-closed-brace-replaced",
        ),
        pytest.param(
            "function f() {\n  ‸\n}\n",
            "return 1;\n}\n",
            None,
            Suggestion("return 1;"),
            id="closing-line-already-below",
        ),
        pytest.param(
            "‸\n", "print(1)\nprint(1)\nprint(1)\nprint(1)", None, Suggestion("print(1)"), id="loop"
        ),
        pytest.param("x = 1\n‸\n", "x = 1\n", None, None, id="echo"),
        pytest.param("x = ‸\n", "   \n\n", None, None, id="blank"),
        pytest.param("x = ‸\n", "<|endoftext|>", None, None, id="only-a-token"),
    ],
)
def test_postprocess(
    source: str, raw: str, indent_unit: str | None, expected: Suggestion | None
) -> None:
    assert postprocess(raw, window(source), indent_unit=indent_unit) == expected
