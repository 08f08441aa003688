"""The OpenAI-compatible door: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Chat clients, editors and agents that speak the OpenAI API ask the appliance as the owner
of their API token would ask in the browser: the question goes through the same action
(``inference.actions.ask``: audited, queued on the answer queue) and its answer comes back
through the same event stream (``stream.follow``), with retrieval under the owner's
permissions in the answer worker. Nothing here answers on its own.

The conversation is the request's ``messages``: the last user message is the question,
earlier user/assistant pairs are the conversation so far; system messages are ignored (the
appliance's own instructions govern). Citations travel as numbered markers ``[1]`` in the
text and in a ``citations`` field beside ``choices`` (in streaming, in the final chunk).
Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from appliance.access import visible_citations
from appliance.accounts.models import ApiToken, hash_token
from appliance.api.serializers import SNIPPET_CHARS
from appliance.api.stream import follow
from inference import actions as inference_actions
from inference.models import Question
from ingest.models import Collection

MODEL = "appliance-rag"
MAX_MESSAGES = 200


class RequestError(Exception):
    """A request the API refuses, with OpenAI's error fields."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JsonResponse:
        return openai_error(self.status, self.message, self.param, self.code)


def openai_error(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> JsonResponse:
    kind = {401: "authentication_error", 404: "invalid_request_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    response = JsonResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status=status,
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="appliance"'
    return response


def _unauthenticated(request: HttpRequest) -> JsonResponse | None:
    """Only API tokens open this door (no session cookie, so no cross-site request)."""
    if getattr(request, "auth_method", None) == "token" and request.user.is_authenticated:
        return None
    return openai_error(
        401,
        "Send a valid API token: Authorization: Bearer <token> "
        "(manage.py create_api_token <username> makes one).",
        code="invalid_api_key",
    )


def _model_json() -> dict[str, Any]:
    return {
        "id": MODEL,
        "object": "model",
        "created": 0,
        "owned_by": "appliance",
        # What answers behind it, for people reading the list (not part of OpenAI's shape).
        "language_model": settings.LLM_SPEC.name,
    }


@csrf_exempt
def models(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return openai_error(405, "Use GET.")
    refused = _unauthenticated(request)
    if refused is not None:
        return refused
    return JsonResponse({"object": "list", "data": [_model_json()]})


@csrf_exempt
def model(request: HttpRequest, model_id: str) -> HttpResponse:
    if request.method != "GET":
        return openai_error(405, "Use GET.")
    refused = _unauthenticated(request)
    if refused is not None:
        return refused
    if model_id != MODEL:
        return unknown_model(model_id).response()
    return JsonResponse(_model_json())


def unknown_model(name: str) -> RequestError:
    return RequestError(
        404,
        f"The model {name!r} does not exist. GET /v1/models lists the models ({MODEL}).",
        "model",
        "model_not_found",
    )


# --- the request ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    """What a chat completion request asks: the question, the turns before it, the scope."""

    question: str
    history: list[tuple[str, str]]
    collections: list[Any]
    stream: bool


def message_text(content: Any) -> str:
    """A message's text: a string, or OpenAI's list of parts (text parts joined; images
    and other parts are not read)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    raise RequestError(400, "A message's content must be text.", "messages", "invalid_content")


def read_messages(messages: Any) -> tuple[str, list[tuple[str, str]]]:
    """(the question, the earlier (question, answer) turns, oldest first). Consecutive
    messages of one role are joined; system, developer and tool messages are not read."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(
            400, "messages must be a non-empty list.", "messages", "invalid_messages"
        )
    if len(messages) > MAX_MESSAGES:
        raise RequestError(
            400, f"Send at most {MAX_MESSAGES} messages.", "messages", "too_many_messages"
        )
    spoken: list[tuple[str, str]] = []  # (role, text), roles merged
    for message in messages:
        if not isinstance(message, dict):
            raise RequestError(
                400, "Each message must be an object.", "messages", "invalid_messages"
            )
        role = message.get("role")
        if role not in ("user", "assistant"):
            continue
        text = message_text(message.get("content")).strip()
        if not text:
            continue
        if spoken and spoken[-1][0] == role:
            spoken[-1] = (role, f"{spoken[-1][1]}\n\n{text}")
        else:
            spoken.append((role, text))
    if not spoken or spoken[-1][0] != "user":
        raise RequestError(
            400,
            'The last message must be the user\'s question (role "user").',
            "messages",
            "invalid_messages",
        )
    question = spoken.pop()[1]
    turns: list[tuple[str, str]] = []
    asked = ""
    for role, text in spoken:
        if role == "user":
            asked = text
        else:
            turns.append((asked, text))
            asked = ""
    return question, turns


def read_request(body: Any) -> Chat:
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.", None, "invalid_body")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise RequestError(400, 'Name the model: "model": "appliance-rag".', "model", None)
    if name != MODEL:
        raise unknown_model(name)
    question, history = read_messages(body.get("messages"))
    collections = body.get("collections") or []
    if not isinstance(collections, list) or not all(
        isinstance(c, str | int) and not isinstance(c, bool) for c in collections
    ):
        raise RequestError(
            400,
            "collections must be a list of collection ids or names.",
            "collections",
            "invalid_collections",
        )
    return Chat(question, history, collections, bool(body.get("stream")))


def scope_of(user: Any, wanted: list[Any]) -> list[int]:
    """The ids of the named collections. One the person may not read is answered exactly
    like one that does not exist, and neither is quietly dropped: the answer would
    otherwise come from a wider or narrower scope than asked."""
    readable = Collection.objects.visible_to(user)
    scope: set[int] = set()
    for item in wanted:
        text = str(item).strip()
        named = Q(name=text) | Q(pk=int(text)) if text.isdigit() else Q(name=text)
        found = list(readable.filter(named).values_list("pk", flat=True))
        if not found:
            raise RequestError(
                404,
                f"The collection {text!r} does not exist or is not open to you.",
                "collections",
                "collection_not_found",
            )
        scope.update(found)
    return sorted(scope)


def _token_details(request: HttpRequest) -> dict[str, Any]:
    """The token the request came with, for the question's audit row."""
    raw = request.META.get("HTTP_AUTHORIZATION", "")[7:].strip()
    token = ApiToken.objects.filter(key_hash=hash_token(raw)).values("pk", "name").first()
    details: dict[str, Any] = {"via": "openai"}
    if token is not None:
        details["token_id"] = token["pk"]
        details["token_name"] = token["name"]
    return details


def _ask(request: HttpRequest) -> tuple[Question, Chat]:
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(
            400, "The request body is not valid JSON.", None, "invalid_json"
        ) from None
    chat = read_request(body)
    scope = scope_of(request.user, chat.collections)
    try:
        question = inference_actions.ask(
            request.user,
            chat.question,
            scope or None,
            history=chat.history,
            via=_token_details(request),
        )
    except inference_actions.InvalidQuestion as exc:
        raise RequestError(400, str(exc), "messages", "invalid_question") from None
    return question, chat


# --- the answer -------------------------------------------------------------------------------


def citations_json(question: Question, user: Any, base_url: str) -> list[dict[str, Any]]:
    """The answer's sources as the ``citations`` field: those its text cites (else every
    passage it was given), each with the number its ``[n]`` marker uses and a link to the
    passage. Only what the person may read now."""
    found = visible_citations(question, user)
    shown = [c for c in found if c.cited] or found
    return [
        {
            "n": c.n,
            "document_id": c.document_id,
            "title": c.title,
            "page": c.page,
            "excerpt": c.snippet[:SNIPPET_CHARS],
            "cited": c.cited,
            "link": base_url
            + reverse("passage", args=[c.document_id])
            + (f"?chunk={c.chunk_id}" if c.chunk_id else ""),
        }
        for c in shown
    ]


def _finished(question_id: int, user: Any, base_url: str) -> tuple[Question, list[dict]]:
    question = Question.objects.get(pk=question_id)
    return question, citations_json(question, user, base_url)


def _usage(question: Question) -> dict[str, int]:
    return {
        "prompt_tokens": question.prompt_tokens,
        "completion_tokens": question.completion_tokens,
        "total_tokens": question.prompt_tokens + question.completion_tokens,
    }


def _appliance_json(question: Question) -> dict[str, Any]:
    """The appliance's own fields: where to find the answer again."""
    return {
        "question_id": question.pk,
        "conversation_id": question.conversation_id,
        "grounded": question.grounded,
    }


def _completion_id(question: Question) -> str:
    return f"chatcmpl-{question.pk}"


async def _final_event(question: Question) -> tuple[str, dict[str, Any]]:
    async for item in follow(question):
        if item is not None and item[1] in ("done", "error"):
            return item[1], item[2]
    return "error", {"message": "The answer stream ended early. Please ask again."}


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = openai_error(405, "Use POST.")
        response["Allow"] = "POST"
        return response
    refused = _unauthenticated(request)
    if refused is not None:
        return refused
    try:
        question, chat = await sync_to_async(_ask)(request)
    except RequestError as exc:
        return exc.response()
    base_url = request.build_absolute_uri("/").rstrip("/")
    if chat.stream:
        response = StreamingHttpResponse(
            _chunks(question, request.user, base_url),
            content_type="text/event-stream; charset=utf-8",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    event, data = await _final_event(question)
    if event == "error":
        return openai_error(500, data.get("message", "The answer failed."), code="answer_failed")
    question, citations = await sync_to_async(_finished)(question.pk, request.user, base_url)
    return JsonResponse(
        {
            "id": _completion_id(question),
            "object": "chat.completion",
            "created": int(question.created_at.timestamp()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": question.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(question),
            "citations": citations,
            "appliance": _appliance_json(question),
        }
    )


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _chunks(question: Question, user: Any, base_url: str) -> AsyncIterator[str]:
    """The answer as OpenAI's chunks: the role first, then the text as the model writes it,
    then a last chunk with ``finish_reason``, ``citations`` and ``usage``, then ``[DONE]``.
    The streamed text is the model's own; the stored answer (and the non-streaming reply)
    drops markers that name no passage, and ``citations`` names only passages that exist."""
    created = int(question.created_at.timestamp())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return _sse(
            {
                "id": _completion_id(question),
                "object": "chat.completion.chunk",
                "created": created,
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
        )

    yield chunk({"role": "assistant", "content": ""})
    async for item in follow(question):
        if item is None:
            yield ": waiting\n\n"  # a comment line: proxies keep the connection open
            continue
        _, event, data = item
        if event == "token" and data.get("text"):
            yield chunk({"content": data["text"]})
        elif event == "error":
            message = data.get("message", "The answer failed.")
            yield _sse(
                {
                    "error": {
                        "message": message,
                        "type": "server_error",
                        "param": None,
                        "code": "answer_failed",
                    }
                }
            )
            return
        elif event == "done":
            final, citations = await sync_to_async(_finished)(question.pk, user, base_url)
            tail = "\n\n(Stopped.)" if data.get("stopped") else ""
            yield chunk(
                {"content": tail} if tail else {},
                "stop",
                citations=citations,
                usage=_usage(final),
                appliance=_appliance_json(final),
            )
            yield "data: [DONE]\n\n"
            return
