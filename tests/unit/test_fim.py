"""FIM templates: the exact prompt each model family is sent, and which family a model is."""

from __future__ import annotations

import pytest

from crucible.config.settings import FIM_TEMPLATE_NAMES
from crucible.context.fim import TEMPLATES, detect_template, resolve_template
from crucible.context.snapshot import ContextFile

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"
EXTRA = (ContextFile("src/util.py", "X = 1\n"), ContextFile("src/io.py", "Y = 2"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "qwen",
            f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>",
            id="qwen",
        ),
        pytest.param(
            "starcoder",
            f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>",
            id="starcoder",
        ),
        pytest.param("codellama", f"<PRE> {PREFIX} <SUF>{SUFFIX} <MID>", id="codellama"),
        pytest.param(
            "deepseek",
            f"<\uff5cfim\u2581begin\uff5c>{PREFIX}<\uff5cfim\u2581hole\uff5c>{SUFFIX}"
            "<\uff5cfim\u2581end\uff5c>",
            id="deepseek",
        ),
        pytest.param("codestral", f"[SUFFIX]{SUFFIX}[PREFIX]{PREFIX}", id="codestral"),
    ],
)
def test_file_level_prompt(name: str, expected: str) -> None:
    assert TEMPLATES[name].render(PREFIX, SUFFIX) == expected


def test_qwen_repository_level_prompt() -> None:
    prompt = TEMPLATES["qwen"].render(PREFIX, SUFFIX, path="src/main.py", extra=EXTRA)
    assert prompt == (
        "<|file_sep|>src/util.py\nX = 1\n\n"
        "<|file_sep|>src/io.py\nY = 2\n"
        f"<|file_sep|>src/main.py\n<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"
    )


def test_starcoder_repository_level_prompt_puts_fim_prefix_before_the_path() -> None:
    prompt = TEMPLATES["starcoder"].render(PREFIX, SUFFIX, path="src/main.py", extra=EXTRA)
    assert prompt == (
        "<file_sep>src/util.py\nX = 1\n"
        "<file_sep>src/io.py\nY = 2"
        f"<file_sep><fim_prefix>src/main.py\n{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"
    )


def test_path_alone_uses_the_file_separated_form() -> None:
    prompt = TEMPLATES["qwen"].render("a", "b", path="m.py")
    assert prompt == "<|file_sep|>m.py\n<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"


@pytest.mark.parametrize("name", ["codellama", "deepseek", "codestral"])
def test_families_without_a_file_separator_leave_other_files_out(name: str) -> None:
    template = TEMPLATES[name]
    with_files = template.render(PREFIX, SUFFIX, path="src/main.py", extra=EXTRA)
    assert with_files == template.render(PREFIX, SUFFIX)


def test_braces_and_placeholders_in_code_are_copied_literally() -> None:
    code = "f'{prefix}{suffix}' {0} {}"
    assert TEMPLATES["qwen"].render(code, "}{") == (
        f"<|fim_prefix|>{code}<|fim_suffix|>}}{{<|fim_middle|>"
    )


@pytest.mark.parametrize(
    ("name", "stop"),
    [
        pytest.param("qwen", "<|file_sep|>", id="qwen"),
        pytest.param("starcoder", "<file_sep>", id="starcoder"),
        pytest.param("codellama", "<EOT>", id="codellama"),
        pytest.param("deepseek", "<\uff5cend\u2581of\u2581sentence\uff5c>", id="deepseek"),
        pytest.param("codestral", "[PREFIX]", id="codestral"),
    ],
)
def test_each_family_stops_on_its_own_tokens(name: str, stop: str) -> None:
    assert stop in TEMPLATES[name].stop


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param("qwen2.5-coder:1.5b-base", "qwen", id="ollama-qwen"),
        pytest.param("Qwen/Qwen2.5-Coder-7B", "qwen", id="hf-qwen"),
        pytest.param("qwen3-coder:30b", "qwen", id="qwen3"),
        pytest.param("codeqwen:7b-code", "starcoder", id="codeqwen"),
        pytest.param("bigcode/starcoder2-3b", "starcoder", id="hf-starcoder2"),
        pytest.param("starcoder2:3b", "starcoder", id="ollama-starcoder2"),
        pytest.param("stable-code:3b-code", "starcoder", id="stable-code"),
        pytest.param("codellama:7b-code", "codellama", id="ollama-codellama"),
        pytest.param("meta-llama/CodeLlama-7b-hf", "codellama", id="hf-codellama"),
        pytest.param("deepseek-coder-6.7b-base", "deepseek", id="deepseek"),
        pytest.param("deepseek-ai/DeepSeek-Coder-V2-Lite-Base", "deepseek", id="deepseek-v2"),
        pytest.param("codestral-latest", "codestral", id="codestral"),
        pytest.param("CODESTRAL-22B", "codestral", id="upper-case"),
        pytest.param("tiny.gguf", "qwen", id="unknown"),
        pytest.param("", "qwen", id="empty"),
    ],
)
def test_detect_template(model: str, expected: str) -> None:
    assert detect_template(model).name == expected


def test_resolve_auto_detects() -> None:
    assert resolve_template("auto", "starcoder2:7b") is TEMPLATES["starcoder"]


def test_resolve_named_template_overrides_the_model_name() -> None:
    assert resolve_template("codestral", "qwen2.5-coder:7b") is TEMPLATES["codestral"]
    assert resolve_template(" DeepSeek ", "qwen2.5-coder:7b") is TEMPLATES["deepseek"]


def test_resolve_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="'llama3'") as info:
        resolve_template("llama3", "x")
    assert "auto, codellama, codestral, deepseek, qwen, starcoder" in str(info.value)


def test_templates_match_the_names_the_configuration_accepts() -> None:
    assert set(TEMPLATES) == set(FIM_TEMPLATE_NAMES)
