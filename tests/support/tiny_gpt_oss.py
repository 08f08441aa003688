"""A tiny random-weight GGUF of the ``gpt-oss`` architecture, for structural tests.

The production model (gpt-oss-20b, about 12 GB) cannot be on the build machines, but we
still want a test to prove that the llama-cpp-python we ship loads the architecture, runs
its forward pass (attention sinks, alternating sliding-window layers, YaRN RoPE, a
mixture of experts with biases) and tokenizes the harmony special tokens as single tokens.

The file mirrors what llama.cpp's converter writes for ``GptOssForCausalLM``: the same
metadata keys and tensor names and layouts, only minute (64-wide, 2 layers, 4 experts)
and in plain F32 (the converter also accepts non-MXFP4 expert weights; llama.cpp computes
F32 on every backend). The vocabulary is byte-level BPE (``gpt2``, pre-tokenizer
``gpt-4o`` like o200k_harmony): all 256 byte symbols, a few merges, and the harmony
special tokens in the same order as the real vocabulary, with ``<|return|>`` as EOS.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

ARCH = "gpt-oss"

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = 32  # like gpt-oss, heads * head_dim (128) differs from the embedding width
N_EXPERT = 4
N_EXPERT_USED = 2
N_FF_EXP = 64
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


def build_vocab() -> tuple[list[str], list[int], list[str]]:
    """Tokens, their types and the merges of the tiny byte-level BPE vocabulary."""
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
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    tokens.extend(SPECIAL_TOKENS)
    types.extend([int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS))
    return tokens, types, merges


def build_tiny_gpt_oss_gguf(path: Path, *, seed: int = 0) -> Path:
    """Write the tiny gpt-oss GGUF to ``path`` (deterministic for a given seed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, types, merges = build_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.02, size=shape).astype(np.float32)

    def ones(*shape: int) -> np.ndarray:
        return np.ones(shape, dtype=np.float32)

    writer = gguf.GGUFWriter(path, ARCH)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name("tiny gpt-oss (random weights, tests only)")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF_EXP)
    writer.add_block_count(N_LAYER)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_expert_count(N_EXPERT)
    writer.add_expert_used_count(N_EXPERT_USED)
    writer.add_expert_feed_forward_length(N_FF_EXP)
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

    # numpy shapes are ggml's dimensions reversed: ggml {n_embd, n_vocab} is (n_vocab, n_embd).
    q_dim, kv_dim = N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM
    writer.add_tensor("token_embd.weight", weights(n_vocab, N_EMBD))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", weights(n_vocab, N_EMBD))
    for layer in range(N_LAYER):
        blk = f"blk.{layer}"
        writer.add_tensor(f"{blk}.attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"{blk}.post_attention_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"{blk}.attn_q.weight", weights(q_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_q.bias", weights(q_dim))
        writer.add_tensor(f"{blk}.attn_k.weight", weights(kv_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_k.bias", weights(kv_dim))
        writer.add_tensor(f"{blk}.attn_v.weight", weights(kv_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_v.bias", weights(kv_dim))
        writer.add_tensor(f"{blk}.attn_output.weight", weights(N_EMBD, q_dim))
        writer.add_tensor(f"{blk}.attn_output.bias", weights(N_EMBD))
        writer.add_tensor(f"{blk}.attn_sinks.weight", weights(N_HEAD))
        writer.add_tensor(f"{blk}.ffn_gate_inp.weight", weights(N_EXPERT, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_gate_inp.bias", weights(N_EXPERT))
        writer.add_tensor(f"{blk}.ffn_gate_exps.weight", weights(N_EXPERT, N_FF_EXP, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_gate_exps.bias", weights(N_EXPERT, N_FF_EXP))
        writer.add_tensor(f"{blk}.ffn_up_exps.weight", weights(N_EXPERT, N_FF_EXP, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_up_exps.bias", weights(N_EXPERT, N_FF_EXP))
        writer.add_tensor(f"{blk}.ffn_down_exps.weight", weights(N_EXPERT, N_EMBD, N_FF_EXP))
        writer.add_tensor(f"{blk}.ffn_down_exps.bias", weights(N_EXPERT, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
