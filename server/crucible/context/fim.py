"""FIM templates: how each model family wants a fill-in-the-middle prompt spelled.

Pure text in, text out. A template knows its family's special tokens, the order the parts go
in, how other files are offered as repository context (where the family was trained with a
file separator) and which tokens end generation. Only wire formats that send a raw prompt
(``openai``) render one; Ollama and llama.cpp apply the model's own template server-side.

Sources for each format (checked against the model publishers' own material):

- Qwen2.5-Coder: the QwenLM/Qwen2.5-Coder README, file-level and repository-level sections.
- StarCoder2: "StarCoder 2 and The Stack v2" (arXiv 2402.19173), repository-context FIM.
- CodeLlama: Meta's ``infilling_prompt_tokens`` (``<PRE> … <SUF>… <MID>``, ends with ``<EOT>``).
- DeepSeek-Coder: the deepseek-ai/DeepSeek-Coder README (code insertion example).
- Codestral: mistral-common / the Mistral cookbook: ``[SUFFIX]suffix[PREFIX]prefix``.

Errors: ``resolve_template`` raises ``ValueError`` for an unknown template name. The
configuration loader checks ``fim_template`` against the same names (``FIM_TEMPLATE_NAMES``)
first, so a user meets a ``ConfigError`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from crucible.context.snapshot import ContextFile

AUTO = "auto"


@dataclass(frozen=True)
class FimTemplate:
    """One family's FIM prompt layout.

    The layouts are ``str.format`` patterns. Formatting is a single pass, so braces or
    placeholder names inside the user's code are copied through literally.
    """

    name: str
    stop: tuple[str, ...]  # tokens that end generation for this family
    infill: str  # {prefix} {suffix}: the current file alone
    # Families trained with a file separator can take other files and the current path:
    # ``context_file`` ({path} {text}) is repeated per other file, then ``repo_infill``
    # ({path} {prefix} {suffix}) holds the current file. None: the family has no file
    # separator, and a path written as a comment is not valid syntax in every language, so
    # other files and the path are left out rather than risk a prompt the model never saw.
    repo_infill: str | None = None
    context_file: str | None = None

    def render(
        self, prefix: str, suffix: str, *, path: str = "", extra: Sequence[ContextFile] = ()
    ) -> str:
        """The prompt for filling the gap between ``prefix`` and ``suffix``."""
        if self.repo_infill is None or self.context_file is None or not (path or extra):
            return self.infill.format(prefix=prefix, suffix=suffix)
        # No repository-name header: requests carry no repository name. StarCoder2 was trained
        # with that metadata left out half the time; Qwen's README always shows one, so this
        # is the place to add it once requests carry it.
        files = "".join(self.context_file.format(path=f.path, text=f.text) for f in extra)
        return files + self.repo_infill.format(path=path, prefix=prefix, suffix=suffix)


_QWEN = FimTemplate(
    name="qwen",
    stop=(
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_sep|>",
        "<|repo_name|>",
        "<|im_end|>",
    ),
    infill="<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    repo_infill="<|file_sep|>{path}\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    context_file="<|file_sep|>{path}\n{text}\n",
)

_STARCODER = FimTemplate(
    name="starcoder",
    stop=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    infill="<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    # The StarCoder2 paper puts <fim_prefix> before the path of the file being filled:
    # <file_sep><fim_prefix>path\ncode_pre<fim_suffix>code_suf<fim_middle>.
    repo_infill="<file_sep><fim_prefix>{path}\n{prefix}<fim_suffix>{suffix}<fim_middle>",
    context_file="<file_sep>{path}\n{text}",
)

_CODELLAMA = FimTemplate(
    name="codellama",
    stop=("<EOT>",),
    infill="<PRE> {prefix} <SUF>{suffix} <MID>",
)

# DeepSeek's repository-level example (``#path`` headers) is plain left-to-right completion;
# its README shows no combination with infilling, so other files are left out.
_DEEPSEEK = FimTemplate(
    name="deepseek",
    stop=("<｜end▁of▁sentence｜>", "<|EOT|>"),
    infill="<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
)

# Suffix first and no middle token: the model generates right after the prefix.
_CODESTRAL = FimTemplate(
    name="codestral",
    stop=("</s>", "[PREFIX]", "[SUFFIX]"),
    infill="[SUFFIX]{suffix}[PREFIX]{prefix}",
)

TEMPLATES: Mapping[str, FimTemplate] = MappingProxyType(
    {t.name: t for t in (_QWEN, _STARCODER, _CODELLAMA, _DEEPSEEK, _CODESTRAL)}
)

# Substring of the lower-cased model name -> template; the first match wins, so the more
# specific names come first.
_DETECTION: tuple[tuple[str, FimTemplate], ...] = (
    # CodeQwen1.5 and stable-code use StarCoder's <fim_*> tokens (not <|fim_*|>). Their
    # vocabularies lack <file_sep>, which they read as text when other files are sent.
    ("codeqwen", _STARCODER),
    ("qwen", _QWEN),
    ("starcoder", _STARCODER),
    ("stable-code", _STARCODER),
    ("codellama", _CODELLAMA),
    ("code-llama", _CODELLAMA),
    ("code_llama", _CODELLAMA),
    ("deepseek", _DEEPSEEK),
    ("codestral", _CODESTRAL),
)


def detect_template(model: str) -> FimTemplate:
    """The template for a model name as a provider knows it (Ollama tag, HF id, file name).

    An unknown name gets the Qwen template: Qwen2.5-Coder is the default model, and its
    ``<|fim_*|>`` token names are the ones most current open FIM models share, so it is the
    likeliest guess to be right.
    """
    lowered = model.lower()
    for needle, template in _DETECTION:
        if needle in lowered:
            return template
    return _QWEN


def resolve_template(setting: str, model: str) -> FimTemplate:
    """The template a ``fim_template`` setting names; ``auto`` detects it from ``model``."""
    name = setting.strip().lower()
    if name == AUTO:
        return detect_template(model)
    try:
        return TEMPLATES[name]
    except KeyError:
        choices = ", ".join((AUTO, *sorted(TEMPLATES)))
        raise ValueError(f"unknown FIM template {setting!r}; choose one of: {choices}") from None
