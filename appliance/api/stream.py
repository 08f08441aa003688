"""The answer's event stream as Server-Sent Events.

An async view: while it waits on Redis it holds no thread, so many browsers can watch
answers at once. It resumes after ``Last-Event-ID``, sends a comment line when idle so
proxies keep the connection, and ends the stream with an ``error`` event when the worker
that was answering has died, instead of hanging.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone

from appliance import redis_client
from appliance.api.common import error, not_found
from appliance.api.serializers import visible_citations
from inference import answering, events
from inference.models import Question, QuestionStatus

IDLE_BLOCK_MS = 5000


def _format(event_id: str, event: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _user(request: HttpRequest) -> Any:
    if getattr(request, "auth_method", None) == "token":
        return request.user
    return await request.auser()


def _replay_from_database(question: Question, user: Any) -> list[str]:
    """Events for an answer whose stream has expired: the stored answer, as one piece."""
    if question.status == QuestionStatus.ERROR:
        return [_format("db-2", "error", {"message": question.error})]
    sources = [
        {
            "n": c.n,
            "document_id": c.document_id,
            "title": c.title,
            "page": c.page,
            "snippet": c.snippet[:400],
        }
        for c in visible_citations(question, user)
    ]
    return [
        _format("db-1", "sources", {"sources": sources}),
        _format("db-2", "token", {"text": question.answer}),
        _format("db-3", "done", {"answer": question.answer, "grounded": question.grounded}),
    ]


def _check_stalled(question_id: int) -> None:
    """If the question is running but its worker stopped saying it is alive, end it."""
    try:
        question = Question.objects.select_related("user").filter(pk=question_id).first()
        if question is None or question.status != QuestionStatus.RUNNING:
            return
        if events.is_alive(question):
            return
        started = question.started_at or question.created_at
        if (timezone.now() - started).total_seconds() > events.ALIVE_SECONDS:
            answering.finish_with_error(question, answering.WORKER_LOST)
    finally:
        _release_database()


def _release_database() -> None:
    """A stream may stay open for minutes: it holds no database connection meanwhile
    (the web process's connections come from a bounded pool)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


async def _stream_exists(question: Question) -> bool:
    redis = redis_client.async_client()
    try:
        return bool(await redis.exists(events.stream_key(question)))
    finally:
        await redis.aclose()


async def follow(
    question: Question, after: str = "0-0"
) -> AsyncIterator[tuple[str, str, dict[str, Any]] | None]:
    """The question's events after ``after``, as (entry id, event, data), up to and with
    the final one; None each time nothing came for ``IDLE_BLOCK_MS`` (time for a keep-alive
    line). A running question whose worker died meanwhile is ended with an error event.
    Holds no database connection while it waits. Shared by every door that streams an
    answer (this page's SSE, the OpenAI-compatible API)."""
    redis = redis_client.async_client()
    key = events.stream_key(question)
    try:
        await sync_to_async(_release_database)()
        while True:
            response = await redis.xread({key: after}, block=IDLE_BLOCK_MS, count=200)
            if not response:
                yield None
                await sync_to_async(_check_stalled)(question.pk)
                continue
            for entry in response[0][1]:
                entry_id, event, data = events.decode(entry)
                after = entry_id
                yield entry_id, event, data
                if event in events.FINAL_EVENTS:
                    return
    finally:
        await redis.aclose()


async def question_events(request: HttpRequest, question_id: int) -> HttpResponse:
    if request.method != "GET":
        return error(405, "Use GET.")
    user = await _user(request)
    if not user.is_authenticated:
        return error(401, "Sign in or send an API token.")
    question = await Question.objects.visible_to(user).filter(pk=question_id).afirst()
    if question is None:
        return not_found()
    last_id = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0-0"
    if last_id.startswith("db-"):
        last_id = "0-0"

    async def stream() -> AsyncIterator[str]:
        if not await _stream_exists(question):
            fresh = await Question.objects.filter(pk=question_id).afirst()
            if fresh is not None and fresh.is_final:
                for line in await sync_to_async(_replay_from_database)(fresh, user):
                    yield line
                return
        yield "retry: 2000\n\n"
        async for item in follow(question, last_id):
            if item is None:
                yield ": waiting\n\n"
                continue
            yield _format(*item)

    response = StreamingHttpResponse(stream(), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
