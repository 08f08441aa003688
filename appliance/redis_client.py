"""The appliance's one way to Redis: the Celery broker's queues, answer event streams,
worker heartbeats. Every process reads ``settings.REDIS_URL`` here and nowhere else."""

from __future__ import annotations

from functools import cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

# redis-py gives up on a socket read after 5 s by default, which a blocking read that
# waits longer (the next token of an answer, a stop button) would trip; reads through
# these clients may block for up to BLOCK_LIMIT_MS.
BLOCK_LIMIT_MS = 10_000
_SOCKET_TIMEOUT = BLOCK_LIMIT_MS / 1000 + 20


@cache
def client() -> redis.Redis:
    """The process's client (redis-py pools connections and is thread-safe)."""
    return redis.Redis.from_url(
        settings.REDIS_URL, decode_responses=True, socket_timeout=_SOCKET_TIMEOUT
    )


def async_client() -> aioredis.Redis:
    """A new asyncio client: redis.asyncio connections belong to the event loop that made
    them, so each loop needs its own."""
    return aioredis.Redis.from_url(
        settings.REDIS_URL, decode_responses=True, socket_timeout=_SOCKET_TIMEOUT
    )


def queue_length(queue: str) -> int:
    """Messages waiting in a Celery queue (Celery's Redis transport keeps each queue as a
    list named after it); -1 when Redis cannot be asked."""
    try:
        return int(client().llen(queue))
    except redis.RedisError:
        return -1
