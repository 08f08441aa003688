"""The language models the appliance knows by name.

A model is chosen with ``APPLIANCE_LLM_MODEL``; its file is looked up under the models
folder unless ``APPLIANCE_LLM_MODEL_PATH`` points elsewhere. ``chat_format`` picks how
prompts are rendered and replies parsed: ``harmony`` for gpt-oss, ``template`` for any GGUF
that carries its own chat template (Qwen, Gemma, Mistral, Llama, Granite, SmolLM2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    filename: str
    chat_format: str  # "harmony" or "template"
    demo: bool = False
    url: str = ""
    sha256: str = ""
    checksum_url: str = ""
    size_bytes: int = 0


GPT_OSS_20B = ModelSpec(
    name="gpt-oss-20b",
    label="gpt-oss-20b",
    filename="gpt-oss-20b-mxfp4.gguf",
    chat_format="harmony",
    url="https://huggingface.co/ggml-org/gpt-oss-20b-GGUF/resolve/main/gpt-oss-20b-mxfp4.gguf",
    # Where the publisher states the file's SHA-256 (Git LFS object id), when none is pinned.
    checksum_url="https://huggingface.co/api/models/ggml-org/gpt-oss-20b-GGUF/tree/main",
)

SMOLLM2_135M = ModelSpec(
    name="smollm2-135m",
    label="SmolLM2-135M-Instruct",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    chat_format="template",
    demo=True,
)

CATALOG: dict[str, ModelSpec] = {m.name: m for m in (GPT_OSS_20B, SMOLLM2_135M)}
DEFAULT_MODEL = GPT_OSS_20B.name


def spec_for(name: str) -> ModelSpec:
    """The catalogue entry for ``name``; unknown names are GGUF files with their own template."""
    if name in CATALOG:
        return CATALOG[name]
    return ModelSpec(name=name, label=name, filename=f"{name}.gguf", chat_format="template")
