"""Random-weight GGUFs of the ``gpt-oss`` architecture, for structural tests and benchmarks.

The production model (gpt-oss-20b, about 12 GB) cannot be on the build machines, but we
still want a test to prove that the llama-cpp-python we ship loads the architecture, runs
its forward pass (attention sinks, alternating sliding-window layers, YaRN RoPE, a
mixture of experts with biases) and tokenizes the harmony special tokens as single tokens.

The file mirrors what llama.cpp's converter writes for ``GptOssForCausalLM``: the same
metadata keys and tensor names and layouts. ``TINY`` is minute (64-wide, 2 layers, 4
experts) and plain F32 (the converter also accepts non-MXFP4 expert weights; llama.cpp
computes F32 on every backend). ``GPT_OSS_20B`` has the real model's dimensions and
vocabulary size, and the published file's tensor types (MXFP4 experts, Q8_0 attention and
embeddings, F32 for the rest: 11.2 GiB), so that speed and memory measured on it stand for
the real model's: the work per token does not depend on the weights' values. The
vocabulary is byte-level BPE (``gpt2``, pre-tokenizer ``gpt-4o`` like o200k_harmony): all
256 byte symbols, a few merges, filler tokens up to the shape's vocabulary size, and the
harmony special tokens in the same order as the real vocabulary, with ``<|return|>`` as
EOS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import gguf
import numpy as np

ARCH = "gpt-oss"


@dataclass(frozen=True)
class Shape:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int  # like gpt-oss, heads * head_dim differs from the embedding width
    n_expert: int
    n_expert_used: int
    n_ff_exp: int
    n_vocab: int | None  # None: only the tokens the tokenizer needs
    quantized: bool  # MXFP4 experts, Q8_0 attention and embeddings (else all F32)


TINY = Shape(64, 2, 4, 2, 32, 4, 2, 64, None, quantized=False)
# openai/gpt-oss-20b's config.json: hidden 2880, 24 layers, 64 query heads and 8 key/value
# heads of 64, 32 experts of 2880 with 4 used per token, vocabulary 201,088.
GPT_OSS_20B = Shape(2880, 24, 64, 8, 64, 32, 4, 2880, 201088, quantized=True)

SLIDING_WINDOW = 128
CONTEXT_LENGTH = 131072
ROPE_ORIG_CONTEXT = 4096
ROPE_FACTOR = 32.0
ROPE_FREQ_BASE = 150000.0
RMS_EPS = 1e-5

# Harmony special tokens in o200k_harmony order (ids 199998..200012, reserved ones left out).
SPECIAL_TOKENS = (
    "<|startoftext|>",
    "<|endoftext|>",
    "<|return|>",
    "<|constrain|>",
    "<|channel|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|call|>",
)
BOS = "<|startoftext|>"
EOS = "<|return|>"
PAD = "<|endoftext|>"

# Words whose BPE merges we include, so the tokenizer does real merging, not only bytes.
# Words that follow a special token have no leading space; the rest do ("Ġ" = space).
_MERGED_WORDS = (
    "assistant",
    "analysis",
    "commentary",
    "final",
    "system",
    "developer",
    "user",
    "json",
    " the",
    " and",
    " to",
    " is",
    " of",
    " you",
    " answer",
    " sources",
    # the fixed system/developer text of every prompt, so a prompt fits a 256-token context
    " Knowledge",
    " cutoff",
    " Reasoning",
    " low",
    " Valid",
    " channels",
    " Channel",
    " must",
    " be",
    " included",
    " for",
    " every",
    " message",
    " Instructions",
    " Answer",
    " only",
    " from",
    " numbered",
    " Cite",
    " them",
    " as",
    " You",
    " are",
    " document",
    " Question",
)

# A harmony chat template of our own, enough for tools that read tokenizer.chat_template.
CHAT_TEMPLATE = """\
{%- set effort = reasoning_effort if reasoning_effort is defined else "medium" -%}
<|start|>system<|message|>
{{- model_identity if model_identity is defined else "You are a helpful assistant." }}
Knowledge cutoff: 2024-06

Reasoning: {{ effort }}

# Valid channels: analysis, commentary, final. Channel must be included for every message.
{{- "<|end|>" -}}
{%- set rest = messages -%}
{%- if messages and messages[0].role in ("system", "developer") -%}
<|start|>developer<|message|># Instructions

{{ messages[0].content }}<|end|>
{%- set rest = messages[1:] -%}
{%- endif -%}
{%- for message in rest -%}
{%- if message.role == "user" -%}
<|start|>user<|message|>{{ message.content }}<|end|>
{%- elif message.role == "assistant" -%}
<|start|>assistant<|channel|>final<|message|>{{ message.content }}<|end|>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}
"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def build_vocab(n_vocab: int | None = None) -> tuple[list[str], list[int], list[str]]:
    """Tokens, their types and merges: byte-level BPE, padded with fillers to ``n_vocab``."""
    byte_symbol = _bytes_to_unicode()
    tokens = [byte_symbol[byte] for byte in range(256)]
    merges: list[str] = []
    known = set(tokens)
    for word in _MERGED_WORDS:
        symbols = [byte_symbol[byte] for byte in word.encode("utf-8")]
        merged = symbols[0]
        for symbol in symbols[1:]:
            merge = f"{merged} {symbol}"
            merged += symbol
            if merged not in known:
                merges.append(merge)
                tokens.append(merged)
                known.add(merged)
    if n_vocab is not None:
        # Normal tokens no merge produces: they only make the vocabulary (and so the output
        # layer and the sampler's work per token) as large as the real model's.
        tokens.extend(f"filler{n}" for n in range(n_vocab - len(tokens) - len(SPECIAL_TOKENS)))
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    tokens.extend(SPECIAL_TOKENS)
    types.extend([int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS))
    return tokens, types, merges


def build_tiny_gpt_oss_gguf(path: Path, *, seed: int = 0) -> Path:
    """Write the tiny gpt-oss GGUF to ``path`` (deterministic for a given seed)."""
    return build_gpt_oss_gguf(path, TINY, seed=seed)


# Bytes per block of 32 weights: Q8_0 is an F16 scale and 32 int8; MXFP4 an E8M0 scale and
# 32 four-bit values.
_Q8_0_BLOCK, _MXFP4_BLOCK = 34, 17


def build_gpt_oss_gguf(
    path: Path, shape: Shape, *, seed: int = 0, layers: int | None = None
) -> Path:
    """Write a random-weight gpt-oss GGUF of ``shape`` to ``path``, one tensor at a time.

    ``layers`` overrides the shape's layer count (a quick check of a large shape).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layers is not None:
        shape = replace(shape, n_layer=layers)
    tokens, types, merges = build_vocab(shape.n_vocab)
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    embd, q_dim, kv_dim = (
        shape.n_embd,
        shape.n_head * shape.head_dim,
        shape.n_head_kv * shape.head_dim,
    )
    n_exp, ff = shape.n_expert, shape.n_ff_exp

    # (name, numpy shape, ggml type, maker) in file order; numpy shapes are ggml's dimensions
    # reversed: ggml {n_embd, n_vocab} is (n_vocab, n_embd).
    specs: list[
        tuple[str, tuple[int, ...], gguf.GGMLQuantizationType, Callable[[], np.ndarray]]
    ] = []
    f32 = gguf.GGMLQuantizationType.F32
    q8_0, mxfp4 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.MXFP4

    def add(
        name: str, dims: tuple[int, ...], kind: gguf.GGMLQuantizationType, scale: float = 0.02
    ) -> None:
        if not shape.quantized:
            kind = f32
        specs.append((name, dims, kind, lambda: _random_tensor(rng, dims, kind, scale)))

    add("token_embd.weight", (n_vocab, embd), q8_0)
    add("output_norm.weight", (embd,), f32, scale=0.0)
    add("output.weight", (n_vocab, embd), q8_0)
    for layer in range(shape.n_layer):
        blk = f"blk.{layer}"
        add(f"{blk}.attn_norm.weight", (embd,), f32, scale=0.0)
        add(f"{blk}.post_attention_norm.weight", (embd,), f32, scale=0.0)
        add(f"{blk}.attn_q.weight", (q_dim, embd), q8_0)
        add(f"{blk}.attn_q.bias", (q_dim,), f32)
        add(f"{blk}.attn_k.weight", (kv_dim, embd), q8_0)
        add(f"{blk}.attn_k.bias", (kv_dim,), f32)
        add(f"{blk}.attn_v.weight", (kv_dim, embd), q8_0)
        add(f"{blk}.attn_v.bias", (kv_dim,), f32)
        add(f"{blk}.attn_output.weight", (embd, q_dim), q8_0)
        add(f"{blk}.attn_output.bias", (embd,), f32)
        add(f"{blk}.attn_sinks.weight", (shape.n_head,), f32)
        add(f"{blk}.ffn_gate_inp.weight", (n_exp, embd), f32)
        add(f"{blk}.ffn_gate_inp.bias", (n_exp,), f32)
        add(f"{blk}.ffn_gate_exps.weight", (n_exp, ff, embd), mxfp4)
        add(f"{blk}.ffn_gate_exps.bias", (n_exp, ff), f32)
        add(f"{blk}.ffn_up_exps.weight", (n_exp, ff, embd), mxfp4)
        add(f"{blk}.ffn_up_exps.bias", (n_exp, ff), f32)
        add(f"{blk}.ffn_down_exps.weight", (n_exp, embd, ff), mxfp4)
        add(f"{blk}.ffn_down_exps.bias", (n_exp, embd), f32)

    writer = gguf.GGUFWriter(path, ARCH)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(f"gpt-oss, {shape.n_layer} layers of {embd} (random weights, tests only)")
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_MXFP4_MOE if shape.quantized else gguf.LlamaFileType.ALL_F32
    )
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(embd)
    writer.add_feed_forward_length(ff)
    writer.add_block_count(shape.n_layer)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_expert_count(n_exp)
    writer.add_expert_used_count(shape.n_expert_used)
    writer.add_expert_feed_forward_length(ff)
    writer.add_sliding_window(SLIDING_WINDOW)
    writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    writer.add_rope_scaling_factor(ROPE_FACTOR)
    writer.add_rope_scaling_orig_ctx_len(ROPE_ORIG_CONTEXT)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-4o")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(BOS))
    writer.add_eos_token_id(tokens.index(EOS))
    writer.add_pad_token_id(tokens.index(PAD))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    # Described first, then written one by one: the large shape never sits in memory whole.
    for name, dims, kind, _ in specs:
        writer.add_tensor_info(
            name, dims, np.dtype(np.float32), _nbytes(dims, kind), raw_dtype=kind
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, _, _, make in specs:
        writer.write_tensor_data(make())
    writer.close()
    return path


def _nbytes(dims: tuple[int, ...], kind: gguf.GGMLQuantizationType) -> int:
    count = int(np.prod(dims))
    if kind == gguf.GGMLQuantizationType.Q8_0:
        return count // 32 * _Q8_0_BLOCK
    if kind == gguf.GGMLQuantizationType.MXFP4:
        return count // 32 * _MXFP4_BLOCK
    return count * 4


def _random_tensor(
    rng: np.random.Generator, dims: tuple[int, ...], kind: gguf.GGMLQuantizationType, scale: float
) -> np.ndarray:
    """Weights of about ``scale`` in size (``scale`` 0: all ones, as norms start)."""
    if kind == gguf.GGMLQuantizationType.F32:
        if scale == 0.0:
            return np.ones(dims, dtype=np.float32)
        return rng.normal(0.0, scale, size=dims).astype(np.float32)
    blocks = int(np.prod(dims)) // 32
    if kind == gguf.GGMLQuantizationType.Q8_0:
        data = rng.integers(0, 256, size=(blocks, _Q8_0_BLOCK), dtype=np.uint8)
        data[:, :2] = np.array([scale / 64], dtype=np.float16).view(np.uint8)
    else:  # MXFP4: the scale byte 2**(e - 127); 121 keeps weights under 0.1
        data = rng.integers(0, 256, size=(blocks, _MXFP4_BLOCK), dtype=np.uint8)
        data[:, 0] = 121
    return data.reshape(-1)
