"""The MCP server at ``/mcp``: tools ``search`` and ``fetch`` over the documents the caller
may read, for agents and editors that speak the Model Context Protocol.

Built on the official SDK (``mcp``), streamable HTTP transport, stateless (every request
stands alone, so any web worker process may take any request) and JSON responses.
Callers authenticate with the appliance's API tokens (``Authorization: Bearer <token>``):
a request without a valid token is refused with 401 before the SDK sees it, and each tool
call finds the token's person again, so a revoked token or a deactivated person stops
working at once.

- ``search``: passages ranked by the same hybrid retrieval as an answer, under the
  person's permissions, with scores and links. The web process loads no model, so the
  query is embedded and ranked in an answer worker (``inference.passages``). Audited like
  a question (``via: mcp``).
- ``fetch``: one passage (``passage-<chunk id>``), one page of a document
  (``document-<id>-page-<n>``) or a document's text (``document-<id>``), when the person
  may read it; anything else, forbidden or missing, is the same "Not found.".
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from django.urls import reverse
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

from appliance import redis_client
from appliance.accounts.middleware import _user_for_token
from appliance.accounts.models import ApiToken, hash_token
from appliance.api.openai_compat import RequestError, scope_of
from appliance.api.stream import _release_database
from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference import passages, tasks
from ingest.models import Chunk, Document

PATH = "/mcp"
SEARCH_WAIT_SECONDS = 60
FETCH_MAX_CHARS = 20_000
NOT_FOUND = "Not found."
_ID = re.compile(r"^(?:passage-(\d+)|document-(\d+)(?:-page-(\d+))?)$")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

server = MCPServer(
    "appliance",
    instructions=(
        "Search and read the organisation's documents the token's owner may read. "
        "search(query) returns passages with scores and links; fetch(id) returns the text "
        "of a passage, a page or a document named by a search result's id."
    ),
)


# --- who is calling -------------------------------------------------------------------------


def _bearer(headers: Any) -> str:
    value = headers.get("authorization", "") if headers is not None else ""
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


def _person(raw: str) -> Any:
    """The active person the token belongs to, or None (``BearerTokenMiddleware``'s rule,
    so every door checks tokens alike)."""
    try:
        user = _user_for_token(raw) if raw else None
        return user if user is not None and user.is_authenticated else None
    finally:
        _release_database()


async def _caller(ctx: Context) -> Any:
    user = await sync_to_async(_person)(_bearer(ctx.headers))
    if user is None:
        raise ToolError("Send a valid API token: Authorization: Bearer <token>.")
    return user


def _base_url(ctx: Context) -> str:
    request = getattr(ctx.request_context, "request", None)
    return str(getattr(request, "base_url", "")).rstrip("/")


def _passage_link(base_url: str, document_id: int, chunk_id: int | None = None) -> str:
    link = base_url + reverse("passage", args=[document_id])
    return link + (f"?chunk={chunk_id}" if chunk_id else "")


# --- search -----------------------------------------------------------------------------------


def _scope(user: Any, collections: list[str | int] | None) -> list[int]:
    try:
        return scope_of(user, collections or [])
    except RequestError as exc:
        raise ToolError(exc.message) from None
    finally:
        _release_database()


def _audit_search(user: Any, raw: str, query: str, scope: list[int], results: list[dict]) -> None:
    token = ApiToken.objects.filter(key_hash=hash_token(raw)).values("pk", "name").first() or {}
    try:
        audit.record_alone(
            Action.QUESTION,
            actor=user,
            details={
                "text": query,
                "scope": scope or "all",
                "via": "mcp",
                "tool": "search",
                "token_id": token.get("pk"),
                "token_name": token.get("name"),
                "retrieved_chunk_ids": [r["chunk_id"] for r in results],
            },
        )
    finally:
        _release_database()


async def _search_in_worker(user: Any, query: str, k: int, scope: list[int]) -> list[dict]:
    request_id = uuid.uuid4().hex
    await sync_to_async(tasks.search_passages.delay)(request_id, user.pk, query, k, scope)
    redis = redis_client.async_client()
    waited = 0
    step = redis_client.BLOCK_LIMIT_MS // 1000
    try:
        while waited < SEARCH_WAIT_SECONDS:
            reply = await redis.blpop([passages.reply_key(request_id)], timeout=step)
            if reply is not None:
                payload = json.loads(reply[1])
                if "error" in payload:
                    raise ToolError(payload["error"])
                return list(payload["results"])
            waited += step
    finally:
        await redis.aclose()
    raise ToolError(
        "The search took too long: the answer workers are busy. Please try again shortly."
    )


@server.tool()
async def search(
    query: str, ctx: Context, limit: int = 8, collections: list[str | int] | None = None
) -> dict[str, Any]:
    """Search the documents you may read. Returns up to `limit` (at most 20) passages, best
    first, each with an `id` for `fetch`, the document's title and page, an excerpt, a
    `score` (cosine similarity to the query, -1 to 1) and a `url` to the passage in the
    appliance. `collections` (ids or names) narrows the search."""
    user = await _caller(ctx)
    query = (query or "").strip()
    if not query:
        raise ToolError("Give a search query.")
    scope = await sync_to_async(_scope)(user, collections)
    found = await _search_in_worker(user, query[:2000], limit, scope)
    await sync_to_async(_audit_search)(user, _bearer(ctx.headers), query, scope, found)
    base_url = _base_url(ctx)
    return {
        "results": [
            {
                "id": f"passage-{r['chunk_id']}",
                "title": r["title"],
                "document_id": r["document_id"],
                "page": r["page"],
                "text": r["text"],
                "score": r["score"],
                "url": _passage_link(base_url, r["document_id"], r["chunk_id"]),
                "page_id": (
                    f"document-{r['document_id']}-page-{r['page']}"
                    if r["page"] is not None
                    else f"document-{r['document_id']}"
                ),
            }
            for r in found
        ]
    }


# --- fetch ------------------------------------------------------------------------------------


def _read(user: Any, item_id: str, base_url: str) -> dict[str, Any]:
    """The text behind ``item_id`` if ``user`` may read it; ToolError("Not found.")
    otherwise, whether it is forbidden or missing."""
    try:
        match = _ID.match(item_id.strip())
        if match is None:
            raise ToolError(NOT_FOUND)
        chunk_id, document_id, page = match.groups()
        chunks = Chunk.objects.visible_to(user)
        if chunk_id:
            chunk = chunks.select_related("document").filter(pk=int(chunk_id)).first()
            if chunk is None:
                raise ToolError(NOT_FOUND)
            return _fetched(
                item_id,
                chunk.document,
                chunk.text,
                chunk.page,
                _passage_link(base_url, chunk.document_id, chunk.pk),
            )
        document = Document.objects.visible_to(user).filter(pk=int(document_id)).first()
        if document is None:
            raise ToolError(NOT_FOUND)
        parts = chunks.filter(document=document).order_by("ordinal")
        if page:
            parts = parts.filter(page=int(page))
        texts = list(parts.values_list("text", flat=True))
        if not texts:
            raise ToolError(NOT_FOUND)
        link = _passage_link(base_url, document.pk) + (f"?page={page}" if page else "")
        return _fetched(item_id, document, "\n\n".join(texts), int(page) if page else None, link)
    finally:
        _release_database()


def _fetched(item_id: str, document: Any, text: str, page: int | None, url: str) -> dict[str, Any]:
    cut = len(text) > FETCH_MAX_CHARS
    return {
        "id": item_id,
        "title": document.title,
        "text": text[:FETCH_MAX_CHARS],
        "url": url,
        "metadata": {
            "document_id": document.pk,
            "collection_id": document.collection_id,
            "page": page,
            "truncated": cut,
        },
    }


@server.tool()
async def fetch(id: str, ctx: Context) -> dict[str, Any]:  # "id": the name clients expect
    """Read one passage (`passage-<n>`, a search result's `id`), one page of a document
    (`document-<n>-page-<p>`, a result's `page_id`) or a document's text
    (`document-<n>`, at most 20,000 characters). Only what you may read; anything else is
    "Not found."."""
    user = await _caller(ctx)
    return await sync_to_async(_read)(user, id, _base_url(ctx))


# --- the ASGI app -----------------------------------------------------------------------------


async def _refuse(send: Send) -> None:
    body = json.dumps({"error": "Send a valid API token: Authorization: Bearer <token>."}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="appliance"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The MCP server as an ASGI app serving ``PATH``, behind the token check. Its lifespan
    (the SDK's session manager) must run: ``appliance.asgi`` passes lifespan events to it."""
    starlette = server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        # Requests carry a bearer token, never a cookie, so a page that rebinds its DNS to
        # this host cannot borrow anyone's rights; the host names are the operator's.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            if await sync_to_async(_person)(_bearer(headers)) is None:
                await _refuse(send)
                return
        await starlette(scope, receive, send)

    return guarded
