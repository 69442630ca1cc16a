"""The models the ``local`` kind can download by name: small code models with FIM tokens.

Each entry is a base model (never ``-Instruct``: an instruction-tuned model answers a request,
with prose and code fences, instead of filling in the middle) whose GGUF carries its own FIM
tokens, so llama.cpp's ``/infill`` builds the prompt. The files are the ``ggml-org``
conversions llama.cpp's own ``--fim-qwen-*`` presets use; Q8_0, as the quantisation that keeps
a 0.5-1.5 B model's quality and still runs at interactive speed on a laptop CPU.

Sizes and SHA-256 digests: where they come from is in docs/local-models.md. A digest left
empty ("") is one nobody here could verify; ``pull`` then refuses the entry unless the user
passes ``--no-verify``.
"""

from __future__ import annotations

from dataclasses import dataclass

from crucible.config.settings import DEFAULT_LOCAL_MODEL


@dataclass(frozen=True, slots=True)
class CatalogueModel:
    name: str  # what ``model = ...`` and ``crucible-lsp models pull NAME`` take
    url: str
    size: int  # bytes
    sha256: str  # lowercase hex; "" when unverified
    summary: str

    @property
    def file_name(self) -> str:
        """The file's name in the models directory (the name it has upstream)."""
        return self.url.rsplit("/", 1)[1]


CATALOGUE: tuple[CatalogueModel, ...] = (
    CatalogueModel(
        name="qwen2.5-coder-0.5b",
        # Pinned to a revision: the bytes behind this URL cannot change.
        url="https://huggingface.co/ggml-org/Qwen2.5-Coder-0.5B-Q8_0-GGUF/resolve/"
        "5788aee90e725673490be18f553d234feaa8303d/qwen2.5-coder-0.5b-q8_0.gguf",
        size=531_068_128,
        sha256="d0f8cd6c49bab52a0abdbe47948518b1f4d9b1a8a2a6825099cea31cea10ac56",
        summary="Qwen2.5-Coder 0.5B base, Q8_0: the lightest; completes the line",
    ),
    CatalogueModel(
        name="qwen2.5-coder-1.5b",
        url="https://huggingface.co/ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/resolve/main/"
        "qwen2.5-coder-1.5b-q8_0.gguf",
        size=1_646_573_056,
        sha256="29871c94d15727a6e243f79a37113d4ae625a6215b5e800bf41a23af2da32832",
        summary="Qwen2.5-Coder 1.5B base, Q8_0: the default; finishes blocks, not just lines",
    ),
)

DEFAULT = DEFAULT_LOCAL_MODEL


def find(name: str) -> CatalogueModel | None:
    return next((m for m in CATALOGUE if m.name == name), None)
