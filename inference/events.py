"""Each question's events live in a Redis Stream of their own, keyed by the question id.

The answer worker appends ``queued``, ``sources``, ``token``, ``done`` and ``error``
events; the web process relays them as Server-Sent Events, using the stream entry id as the
SSE event id, so a browser that reconnects with ``Last-Event-ID`` resumes exactly where it
left off. Streams expire after ``ANSWER_EVENTS_TTL_SECONDS``; the database keeps the answer.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings

from appliance import redis_client

FINAL_EVENTS = ("done", "error")
ALIVE_SECONDS = 20


class Asked(Protocol):
    pk: Any
    created_at: datetime


def _name(question: Asked) -> str:
    """The question's id and the moment it was asked. The id alone is not enough: after a
    database restore hands an id out again, a stream still in Redis would replay someone
    else's answer to the new asker."""
    return f"{question.pk}:{int(question.created_at.timestamp() * 1_000_000)}"


def stream_key(question: Asked) -> str:
    return f"appliance:answer:{_name(question)}:events"


def alive_key(question: Asked) -> str:
    return f"appliance:answer:{_name(question)}:alive"


def cancel_key(question: Asked) -> str:
    return f"appliance:answer:{_name(question)}:cancel"


def publish(question: Asked, event: str, data: dict[str, Any] | None = None) -> str:
    key = stream_key(question)
    pipe = redis_client.client().pipeline(transaction=False)
    pipe.xadd(key, {"event": event, "data": json.dumps(data or {}, ensure_ascii=False)})
    pipe.expire(key, settings.ANSWER_EVENTS_TTL_SECONDS)
    entry_id, _ = pipe.execute()
    return entry_id


def decode(entry: tuple[str, dict[str, str]]) -> tuple[str, str, dict[str, Any]]:
    entry_id, fields = entry
    return entry_id, fields.get("event", "message"), json.loads(fields.get("data") or "{}")


def read(question: Asked, after: str = "0-0", block_ms: int = 0) -> list[tuple[str, str, dict]]:
    response = redis_client.client().xread({stream_key(question): after}, block=block_ms or None)
    if not response:
        return []
    return [decode(entry) for entry in response[0][1]]


def mark_alive(question: Asked) -> None:
    redis_client.client().set(alive_key(question), "1", ex=ALIVE_SECONDS)


def is_alive(question: Asked) -> bool:
    return bool(redis_client.client().exists(alive_key(question)))


def stop_signal_key(question: Asked) -> str:
    return f"appliance:answer:{_name(question)}:stop"


def request_cancel(question: Asked) -> None:
    """Mark the question stopped (for a worker yet to start it) and wake the worker that
    is answering it (see ``wait_for_stop``)."""
    ttl = settings.ANSWER_EVENTS_TTL_SECONDS
    pipe = redis_client.client().pipeline(transaction=False)
    pipe.set(cancel_key(question), "1", ex=ttl)
    pipe.rpush(stop_signal_key(question), "1")
    pipe.expire(stop_signal_key(question), ttl)
    pipe.execute()


def wait_for_stop(question: Asked, timeout_seconds: float) -> bool:
    """Block until someone asks to stop this answer (True) or the timeout passes."""
    return (
        redis_client.client().blpop([stop_signal_key(question)], timeout=timeout_seconds)
        is not None
    )


def cancel_requested(question: Asked) -> bool:
    return bool(redis_client.client().exists(cancel_key(question)))


def forget(questions: list[Asked]) -> None:
    """Drop the event streams of deleted questions now, rather than at their expiry: a
    deleted answer must not be replayable from Redis either."""
    if questions:
        redis_client.client().delete(*[stream_key(q) for q in questions])
