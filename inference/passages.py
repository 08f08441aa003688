"""Passages found for a search query, for the MCP server's ``search`` tool.

The web process loads no model, so a search is embedded and ranked in an answer worker
(``tasks.search_passages``), which holds the embedding model already: the same
``retrieval.search`` as an answer, with the access filter inside its SQL, for the person
the caller's token belongs to. The results go back on a Redis list the web process waits
on (``reply_key``); the worker keeps nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from appliance import access, redis_client
from inference.retrieval import search
from ingest.embedding import embed

log = logging.getLogger(__name__)

MAX_RESULTS = 20
REPLY_SECONDS = 120
EXCERPT_CHARS = 600


def reply_key(request_id: str) -> str:
    return f"appliance:search:{request_id}:reply"


def find(user_id: int, query: str, k: int, scope: list[int] | None) -> list[dict[str, Any]]:
    """The ``k`` best passages for ``query`` among those the person may read, best first.
    ``score`` is the passage's cosine similarity to the query (what the answer path's
    relevance floor compares); the order is the hybrid ranking's."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if not access.is_person(user) or not query.strip():
        return []
    hits = search(
        user,
        query,
        lambda model: embed([query], name=model)[0],
        k=max(1, min(k, MAX_RESULTS)),
        narrow_to=scope or None,
        mode=settings.RETRIEVAL_MODE,
    )
    return [
        {
            "chunk_id": hit.chunk_id,
            "document_id": hit.document_id,
            "title": hit.title,
            "page": hit.page,
            "section": hit.section,
            "text": hit.text[:EXCERPT_CHARS],
            "score": round(hit.score, 4),
        }
        for hit in hits
    ]


def answer(request_id: str, user_id: int, query: str, k: int, scope: list[int] | None) -> None:
    """Run the search and hand its results (or a plain error) back to the waiting web
    process."""
    try:
        payload: dict[str, Any] = {"results": find(user_id, query, k, scope)}
    except Exception as exc:  # the caller gets a sentence, the log the traceback
        log.exception("search %s failed", request_id)
        payload = {"error": f"The search failed ({type(exc).__name__}). Please try again."}
    key = reply_key(request_id)
    pipe = redis_client.client().pipeline(transaction=False)
    pipe.rpush(key, json.dumps(payload, ensure_ascii=False))
    pipe.expire(key, REPLY_SECONDS)
    pipe.execute()
