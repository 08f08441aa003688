"""The sentence-embedding model: loaded from disk once per process, never from a hub.

Only worker processes call this (ingest workers for chunks, answer workers for
questions); the web process never loads a model.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_lock = threading.Lock()


class EmbeddingModelMissing(RuntimeError):
    pass


@cache
def model() -> SentenceTransformer:
    path = settings.EMBEDDING_MODEL_PATH
    if not (path / "config.json").exists():
        raise EmbeddingModelMissing(
            f"The embedding model is not at {path}. Run deploy/up, or set "
            "APPLIANCE_EMBEDDING_MODEL_PATH to a sentence-transformers folder."
        )
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(settings.EMBEDDING_THREADS)
    loaded = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    dimensions = (
        loaded.get_embedding_dimension()
        if hasattr(loaded, "get_embedding_dimension")
        else loaded.get_sentence_embedding_dimension()
    )
    if dimensions != settings.EMBEDDING_DIMENSIONS:
        raise EmbeddingModelMissing(
            f"The embedding model at {path} makes {dimensions}-dimensional vectors; this "
            f"database stores {settings.EMBEDDING_DIMENSIONS}."
        )
    return loaded


def max_tokens() -> int:
    """Word pieces the model reads, special tokens included; anything longer is cut."""
    return int(model().max_seq_length)


@cache
def _counting_tokenizer() -> Any:
    """A tokenizer of its own for counting. The model's tokenizer keeps its padding and
    truncation settings as state that every call rewrites, so counting on the chunking
    thread while the model encodes on another would corrupt the batch being encoded."""
    path = settings.EMBEDDING_MODEL_PATH / "tokenizer.json"
    if path.exists():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer
    return None


def count_tokens(texts: list[str]) -> list[int]:
    """Word pieces of each text, without the two special tokens the model adds."""
    if not texts:
        return []
    counter = _counting_tokenizer()
    if counter is not None:
        return [len(e.ids) for e in counter.encode_batch(texts, add_special_tokens=False)]
    with _lock:  # no tokenizer.json: share the model's tokenizer, one call at a time
        encoded = model().tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def embed(texts: list[str], batch_size: int | None = None) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    if not texts:
        return np.zeros((0, settings.EMBEDDING_DIMENSIONS), dtype=np.float32)
    with _lock:  # torch already uses every thread we allow; one batch at a time
        vectors = model().encode(
            texts,
            batch_size=batch_size or settings.EMBEDDING_BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return vectors.astype(np.float32, copy=False)
