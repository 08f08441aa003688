"""Sentence-embedding models: loaded from disk once per process and name, never from a hub.

A model is named by its folder under ``MODELS_DIR`` ("all-MiniLM-L6-v2") or by an absolute
path. Each collection records the name of the model its vectors come from
(``Collection.embedding_model``); ``settings.EMBEDDING_MODEL`` is the one new collections
get. Every function takes the name, and without one uses that default.

Only worker processes (and commands) call this: ingest workers for chunks, answer workers
for questions; the web process never loads a model.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_lock = threading.Lock()


class EmbeddingModelMissing(RuntimeError):
    pass


def path_of(name: str | None = None) -> Path:
    """The folder of the model called ``name`` (the default model when None)."""
    name = name or settings.EMBEDDING_MODEL
    candidate = Path(name)
    return candidate if candidate.is_absolute() else Path(settings.MODELS_DIR) / name


def is_installed(name: str | None = None) -> bool:
    return (path_of(name) / "config.json").is_file() or (path_of(name) / "modules.json").is_file()


_loading = threading.Lock()


def model(name: str | None = None) -> SentenceTransformer:
    # An answer worker may ask from two threads at once (the question is embedded on a
    # thread of its own): the model is loaded once, not twice side by side.
    with _loading:
        return _load(name or settings.EMBEDDING_MODEL)


@cache
def _load(name: str) -> SentenceTransformer:
    path = path_of(name)
    if not is_installed(name):
        raise EmbeddingModelMissing(
            f"The embedding model {name!r} is not at {path}. Put the sentence-transformers "
            "folder there (deploy/up installs all-MiniLM-L6-v2), or set "
            "APPLIANCE_EMBEDDING_MODEL to a model that is."
        )
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(settings.EMBEDDING_THREADS)
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def dimensions(name: str | None = None) -> int:
    """Length of the model's vectors: what its collections' chunks store."""
    loaded = model(name)
    measure = getattr(loaded, "get_embedding_dimension", None) or (
        loaded.get_sentence_embedding_dimension
    )
    return int(measure())


def max_tokens(name: str | None = None) -> int:
    """Word pieces the model reads, special tokens included; anything longer is cut."""
    return int(model(name).max_seq_length)


@cache
def _counting_tokenizer(name: str) -> Any:
    """A tokenizer of its own for counting. The model's tokenizer keeps its padding and
    truncation settings as state that every call rewrites, so counting on the chunking
    thread while the model encodes on another would corrupt the batch being encoded."""
    path = path_of(name) / "tokenizer.json"
    if path.exists():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer
    return None


def count_tokens(texts: list[str], name: str | None = None) -> list[int]:
    """Word pieces of each text, without the special tokens the model adds."""
    if not texts:
        return []
    counter = _counting_tokenizer(name or settings.EMBEDDING_MODEL)
    if counter is not None:
        return [len(e.ids) for e in counter.encode_batch(texts, add_special_tokens=False)]
    with _lock:  # no tokenizer.json: share the model's tokenizer, one call at a time
        encoded = model(name or settings.EMBEDDING_MODEL).tokenizer(
            texts, add_special_tokens=False
        )["input_ids"]
    return [len(ids) for ids in encoded]


def embed(texts: list[str], batch_size: int | None = None, name: str | None = None) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    name = name or settings.EMBEDDING_MODEL
    if not texts:
        return np.zeros((0, dimensions(name)), dtype=np.float32)
    with _lock:  # torch already uses every thread we allow; one batch at a time
        vectors = model(name).encode(
            texts,
            batch_size=batch_size or settings.EMBEDDING_BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return vectors.astype(np.float32, copy=False)
