"""GET /healthz: 200 when the database, Redis, both kinds of worker and the model are fine;
503 naming what is wrong otherwise. Cheap enough to poll every few seconds."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from appliance import redis_client
from appliance.workers import WORKER_KEY
from ingest import embedding
from ingest.models import Collection


def _database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        return None if row else "the pgvector extension is missing from the database"
    except Exception as exc:
        return f"the database is unreachable ({type(exc).__name__})"


def _redis() -> str | None:
    try:
        redis_client.client().ping()
        return None
    except Exception as exc:
        return f"Redis is unreachable ({type(exc).__name__})"


def _model_server() -> str | None:
    import httpx

    try:
        response = httpx.get(
            f"{settings.LLM_SERVER_URL.rstrip('/')}/models",
            headers={"Authorization": f"Bearer {settings.LLM_SERVER_API_KEY}"},
            timeout=3,
        )
    except httpx.HTTPError as exc:
        return f"the model server {settings.LLM_SERVER_URL} is unreachable ({type(exc).__name__})"
    if response.status_code >= 400:
        return f"the model server {settings.LLM_SERVER_URL} answered {response.status_code}"
    return None


def _workers() -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        for role in ("ingest", "answer"):
            keys = list(redis_client.client().scan_iter(WORKER_KEY.format(role=role, host="*")))
            found[role] = len(keys)
    except Exception:
        return {}
    return found


def _embedding_models() -> list[str]:
    """The default model and every model a collection answers from must be on disk."""

    names = {settings.EMBEDDING_MODEL}
    try:
        names |= set(
            Collection.objects.values_list("embedding_model", flat=True).distinct().order_by()
        )
        names |= set(
            Collection.objects.exclude(reembedding_to="")
            .values_list("reembedding_to", flat=True)
            .distinct()
            .order_by()
        )
    except DatabaseError:
        pass  # reported by the database check
    return [
        f"the embedding model {name} is missing at {embedding.path_of(name)}"
        for name in sorted(names)
        if not embedding.is_installed(name)
    ]


def healthz(request: HttpRequest) -> JsonResponse:
    problems: list[str] = []
    for check in (_database, _redis):
        problem = check()
        if problem:
            problems.append(problem)
    workers = _workers()
    for role in ("ingest", "answer"):
        if workers and not workers.get(role):
            problems.append(f"no {role} worker is running")
    if settings.LLM_BACKEND == "openai":
        problem = _model_server()
        if problem:
            problems.append(problem)
    elif not settings.LLM_MODEL_PATH.is_file():
        problems.append(f"the language model file {settings.LLM_MODEL_PATH} is missing")
    problems += _embedding_models()
    body = {
        "status": "ok" if not problems else "unhealthy",
        "problems": problems,
        "workers": workers,
        "model": settings.LLM_SPEC.name,
        "demo_model": settings.LLM_SPEC.demo,
    }
    return JsonResponse(body, status=200 if not problems else 503)
