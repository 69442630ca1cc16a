"""A tiny llama-architecture GGUF whose greedy output is known in advance.

Written by ``write_tiny_model`` in well under a second with the ``gguf`` package, so the tests
need no model hub. The file is byte-identical on every run (seeded weights).

Tokenizer: GPT-2 style byte-level BPE (the 256 byte tokens and a few merges) plus control
tokens: ``<|endoftext|>`` (BOS and EOS), ChatML's ``<|im_start|>``/``<|im_end|>``, and
Qwen2.5-Coder's FIM tokens, declared as the model's FIM tokens so that ``/infill`` works.

The weights are random but arranged as a "bigram program": the token embedding dominates the
residual stream and output row ``j`` is the embedding of the token that ``j`` follows, so at
temperature 0 the next token depends on the last one alone:

- ``a`` → ``b`` → … → ``z`` → ``\\n`` → ``a`` …: an endless alphabet, one letter per token;
- ``.`` → ``<|endoftext|>``: a prompt ending in a full stop gets an empty answer;
- anything else (code, ``<|fim_middle|>``, a chat turn) → ``a``.

So a FIM or completion request for code yields ``"abcdefgh…"``, ``max_tokens`` letters long.
The two transformer layers carry small random weights, so attention and FFN really run.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import gguf
import numpy as np

ALPHABET = "abcdefghijklmnopqrstuvwxyz"

_EMBED = 256  # n_embd
_LAYERS = 2
_HEADS = 4
_KV_HEADS = 2
_FFN = 512
_CONTEXT = 4096
_SEED = 1234
# A few merges so the BPE machinery is exercised ("Ġ" is the byte-level space, "Ċ" newline).
_MERGES = [
    ("Ġ", "Ġ"), ("ĠĠ", "ĠĠ"), ("d", "e"), ("de", "f"), ("Ġ", "t"), ("r", "e"), ("i", "n"),
    ("Ġ", "a"), ("o", "n"), ("s", "e"), ("Ċ", "ĠĠĠĠ"), ("re", "t"), ("ret", "urn"),
]  # fmt: skip
_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip
_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def expected_text(max_tokens: int) -> str:
    """What the model answers to any code prompt (FIM or plain) with ``max_tokens`` tokens."""
    cycle = ALPHABET + "\n"
    return "".join(cycle[i % len(cycle)] for i in range(max_tokens))


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable character table, indexed by byte value."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def write_tiny_model(path: Path) -> Path:
    """Write the model to ``path`` (about 5 MB, F32) and return ``path``."""
    byte_chars = _byte_alphabet()
    tokens = list(byte_chars)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    merges = []
    for left, right in _MERGES:
        tokens.append(left + right)
        types.append(gguf.TokenType.NORMAL)
        merges.append(f"{left} {right}")
    special = {}
    for name in _SPECIALS:
        special[name] = len(tokens)
        tokens.append(name)
        types.append(gguf.TokenType.CONTROL)
    n_vocab = len(tokens)
    token_id = {text: i for i, text in enumerate(tokens)}

    # The bigram program: successor[t] is the greedy next token after t.
    default = token_id["a"]
    successor = np.full(n_vocab, default, dtype=np.int64)
    for x, y in itertools.pairwise(ALPHABET):
        successor[token_id[x]] = token_id[y]
    successor[token_id["z"]] = token_id[byte_chars[ord("\n")]]
    successor[token_id[byte_chars[ord(".")]]] = special["<|endoftext|>"]

    rng = np.random.default_rng(_SEED)
    head_dim = _EMBED // _HEADS
    # Embeddings: a random unit vector per token plus one shared direction d.
    d = rng.standard_normal(_EMBED).astype(np.float32)
    d /= np.linalg.norm(d)
    u = rng.standard_normal((n_vocab, _EMBED)).astype(np.float32)
    u -= np.outer(u @ d, d)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    embeddings = u + d
    # Output rows: an explicit successor scores by its predecessor's vector; the default
    # successor 'a' gets a lower constant score along d; control tokens are never chosen.
    output = rng.standard_normal((n_vocab, _EMBED)).astype(np.float32) * 0.01
    for t in range(n_vocab):
        if successor[t] != default:
            output[successor[t]] += u[t]
    output[default] = 0.6 * d
    for name, index in special.items():
        if name != "<|endoftext|>":
            output[index] = -d
    output *= 3.0

    def small(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.003).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("crucible-tiny-bigram")
    writer.add_context_length(_CONTEXT)
    writer.add_embedding_length(_EMBED)
    writer.add_block_count(_LAYERS)
    writer.add_feed_forward_length(_FFN)
    writer.add_head_count(_HEADS)
    writer.add_head_count_kv(_KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = special["<|endoftext|>"]
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    writer.add_pad_token_id(eos)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    fim_keys = {
        gguf.Keys.Tokenizer.FIM_PRE_ID: "<|fim_prefix|>",
        gguf.Keys.Tokenizer.FIM_SUF_ID: "<|fim_suffix|>",
        gguf.Keys.Tokenizer.FIM_MID_ID: "<|fim_middle|>",
        gguf.Keys.Tokenizer.FIM_PAD_ID: "<|fim_pad|>",
        gguf.Keys.Tokenizer.FIM_REP_ID: "<|repo_name|>",
        gguf.Keys.Tokenizer.FIM_SEP_ID: "<|file_sep|>",
    }
    for key, name in fim_keys.items():
        writer.add_uint32(key, special[name])
    writer.add_chat_template(_CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(_EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    kv_width = _KV_HEADS * head_dim
    for i in range(_LAYERS):
        block = f"blk.{i}."
        writer.add_tensor(block + "attn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        writer.add_tensor(block + "attn_q.weight", small(_EMBED, _EMBED))
        writer.add_tensor(block + "attn_k.weight", small(kv_width, _EMBED))
        writer.add_tensor(block + "attn_v.weight", small(kv_width, _EMBED))
        writer.add_tensor(block + "attn_output.weight", small(_EMBED, _EMBED))
        writer.add_tensor(block + "ffn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        writer.add_tensor(block + "ffn_gate.weight", small(_FFN, _EMBED))
        writer.add_tensor(block + "ffn_up.weight", small(_FFN, _EMBED))
        writer.add_tensor(block + "ffn_down.weight", small(_EMBED, _FFN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
