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

``write_tiny_model(path, embed=..., layers=..., ffn=...)`` writes the same program at another
size: more and wider layers make prompt processing as slow as a real model's on a CPU (the
benchmark ``benchmarks/slow_local_model.py`` uses that), and the answer stays the alphabet
because the layers' weights stay small. The defaults write the tiny model, byte for byte.
"""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Sequence
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


# GPT-2's pre-tokenizer (llama.cpp's "gpt-2" pre-tokenizer), for ASCII text: BPE merges never
# cross these pieces.
_PIECES = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"
)


def train_merges(text: str, count: int) -> list[tuple[str, str]]:
    """Up to ``count`` byte-level BPE merges learnt from ``text`` (deterministic), most frequent
    first: with them the model tokenizes code like a real one (a few characters per token)
    instead of one token per character."""
    byte_chars = _byte_alphabet()
    words = collections.Counter(_PIECES.findall(text))
    symbols = {w: [byte_chars[b] for b in w.encode()] for w in words}
    pairs: collections.Counter[tuple[str, str]] = collections.Counter()
    holders: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for word, seq in symbols.items():
        for pair in itertools.pairwise(seq):
            pairs[pair] += words[word]
            holders[pair].add(word)
    merges: list[tuple[str, str]] = []
    while len(merges) < count and pairs:
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        if pairs[best] < 2:
            break
        merges.append(best)
        for word in sorted(holders.pop(best)):
            seq, frequency = symbols[word], words[word]
            for pair in itertools.pairwise(seq):
                pairs[pair] -= frequency
                if pairs[pair] <= 0:
                    del pairs[pair]
            merged: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    merged.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    merged.append(seq[i])
                    i += 1
            symbols[word] = merged
            for pair in itertools.pairwise(merged):
                pairs[pair] += frequency
                holders[pair].add(word)
    return merges


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


def write_tiny_model(
    path: Path,
    *,
    embed: int = _EMBED,
    layers: int = _LAYERS,
    ffn: int = _FFN,
    heads: int = _HEADS,
    kv_heads: int = _KV_HEADS,
    context: int = _CONTEXT,
    model_name: str = "crucible-tiny-bigram",
    merges: Sequence[tuple[str, str]] = _MERGES,
) -> Path:
    """Write the model to ``path`` and return ``path``.

    With the defaults it is the tiny model (about 5 MB, F32). ``embed`` (n_embd, a multiple of
    ``heads``), ``layers``, ``ffn`` (the feed-forward width), ``heads``/``kv_heads`` and
    ``context`` (the trained context length) size it, ``model_name`` names it, and
    ``merges`` (say from :func:`train_merges`) replace the tokenizer's few BPE merges. The file
    is about ``4 * layers * (2 * embed * (embed + embed * kv_heads / heads) + 3 * embed * ffn)``
    bytes, plus the two ``n_vocab x embed`` matrices.
    """
    if embed % heads or heads % kv_heads:
        raise ValueError("embed must be a multiple of heads, heads a multiple of kv_heads")
    byte_chars = _byte_alphabet()
    tokens = list(byte_chars)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    merge_rules = []
    known = set(tokens)
    for left, right in merges:
        if left + right not in known:  # two merges may spell the same token
            known.add(left + right)
            tokens.append(left + right)
            types.append(gguf.TokenType.NORMAL)
        merge_rules.append(f"{left} {right}")
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
    head_dim = embed // heads
    # Embeddings: a random unit vector per token plus one shared direction d.
    d = rng.standard_normal(embed).astype(np.float32)
    d /= np.linalg.norm(d)
    u = rng.standard_normal((n_vocab, embed)).astype(np.float32)
    u -= np.outer(u @ d, d)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    embeddings = u + d
    # Output rows: an explicit successor scores by its predecessor's vector; the default
    # successor 'a' gets a lower constant score along d; control tokens are never chosen.
    output = rng.standard_normal((n_vocab, embed)).astype(np.float32) * 0.01
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
    writer.add_name(model_name)
    writer.add_context_length(context)
    writer.add_embedding_length(embed)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merge_rules)
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
    writer.add_tensor("output_norm.weight", np.ones(embed, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    kv_width = kv_heads * head_dim
    for i in range(layers):
        block = f"blk.{i}."
        writer.add_tensor(block + "attn_norm.weight", np.ones(embed, dtype=np.float32))
        writer.add_tensor(block + "attn_q.weight", small(embed, embed))
        writer.add_tensor(block + "attn_k.weight", small(kv_width, embed))
        writer.add_tensor(block + "attn_v.weight", small(kv_width, embed))
        writer.add_tensor(block + "attn_output.weight", small(embed, embed))
        writer.add_tensor(block + "ffn_norm.weight", np.ones(embed, dtype=np.float32))
        writer.add_tensor(block + "ffn_gate.weight", small(ffn, embed))
        writer.add_tensor(block + "ffn_up.weight", small(ffn, embed))
        writer.add_tensor(block + "ffn_down.weight", small(embed, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
