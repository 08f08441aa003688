"""The JSON shapes of the API (documented in openapi.py)."""

from __future__ import annotations

from typing import Any

from appliance.access import visible_citations
from inference.models import Feedback, Question
from ingest.models import Collection, Document


def collection_json(collection: Collection) -> dict[str, Any]:
    return {
        "id": collection.pk,
        "name": collection.name,
        "department": collection.department.name,
        "language": collection.language,
    }


def document_json(document: Document) -> dict[str, Any]:
    return {
        "id": document.pk,
        "collection_id": document.collection_id,
        "title": document.title,
        "name": document.original_name,
        "kind": document.kind,
        "status": document.status,
        "error": document.error,
        "pages": document.pages,
        "pages_done": document.pages_done,
        "chunks": document.chunks,
        "chunks_done": document.chunks_done,
        "progress": document.progress_percent,
        "created_at": document.created_at.isoformat(),
    }


SNIPPET_CHARS = 400


def question_json(question: Question, user: Any) -> dict[str, Any]:
    citations = visible_citations(question, user)
    shown = [c for c in citations if c.cited] or citations
    return {
        "id": question.pk,
        "conversation_id": question.conversation_id,
        "status": question.status,
        "question": question.text,
        "search_query": question.search_query,
        "answer": question.answer,
        "grounded": question.grounded,
        "error": question.error,
        "model": question.model,
        "created_at": question.created_at.isoformat(),
        "url": f"/questions/{question.pk}/",
        "citations": [
            {
                "n": c.n,
                "document_id": c.document_id,
                "title": c.title,
                "page": c.page,
                "snippet": c.snippet[:SNIPPET_CHARS],
                "cited": c.cited,
            }
            for c in shown
        ],
    }


def feedback_json(feedback: Feedback) -> dict[str, Any]:
    return {
        "question_id": feedback.question_id,
        "helpful": feedback.helpful,
        "comment": feedback.comment,
        "share_question": feedback.share_question,
        "updated_at": feedback.updated_at.isoformat(),
    }
