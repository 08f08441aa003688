"""The MCP server at /mcp with the SDK's own client (``mcp.client.streamable_http``), against
the real web server and answer worker: the tools, ``search`` with scores and links under
the caller's permissions, ``fetch`` of a passage, a page and a document, "Not found." for
what the caller may not read exactly as for what does not exist, and the token at the
door."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from appliance.accounts import actions as accounts
from appliance.audit.models import Action, AuditEvent
from ingest.actions import create_collection
from ingest.models import Chunk, Document
from tests.support.stack import Stack
from tests.test_canary import ingest_text

pytestmark = [pytest.mark.services]

LEAVE = (
    "Annual leave policy. Every employee is entitled to 27 days of annual leave per calendar "
    "year. Part-time employees receive leave in proportion to their working hours."
)
BUDGET = "Travel budget 2026. The Finance department may spend 40,000 euros on travel."
MISSING = 987654321


@pytest.fixture
def library(people: Any, live_db: Any, stack: Stack) -> tuple[Document, Document]:
    hr = create_collection(None, "HR policies", people.hr)
    finance = create_collection(None, "Budgets", people.finance)
    fiona = accounts.create_or_update_user(None, "fiona")[0]
    accounts.add_membership(None, fiona, people.finance, "curator")
    leave = ingest_text(people.carol, hr, "Annual leave policy.txt", LEAVE)
    budget = ingest_text(fiona, finance, "Travel budget.txt", BUDGET)
    return leave, budget


def call(stack: Stack, token: str, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    """Open one MCP session as the token's owner and make ``calls`` (tool, arguments); a
    call named "tools" lists the tools instead."""

    async def run() -> list[Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=90) as http:
            transport = streamable_http_client(f"{stack.url}/mcp", http_client=http)
            async with Client(transport, read_timeout_seconds=90) as client:
                out: list[Any] = []
                for name, arguments in calls:
                    if name == "tools":
                        out.append(await client.list_tools())
                    else:
                        out.append(await client.call_tool(name, arguments))
                return out

    return asyncio.run(run())


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def test_mcp_search_and_fetch_under_the_callers_permissions(
    people: Any, library: tuple[Document, Document], stack: Stack
) -> None:
    leave, budget = library
    token = accounts.create_api_token(None, people.alice, "editor")
    tools, found, whole, theirs = call(
        stack,
        token,
        ("tools", {}),
        ("search", {"query": "How many days of annual leave?", "limit": 5}),
        ("fetch", {"id": f"document-{leave.pk}"}),
        ("fetch", {"id": f"document-{budget.pk}"}),
    )
    assert {t.name for t in tools.tools} >= {"search", "fetch"}
    assert not found.is_error, _text(found)
    results = found.structured_content["results"]
    assert results and all(r["document_id"] == leave.pk for r in results)
    best = results[0]
    assert best["title"] == leave.title and "27 days" in best["text"]
    assert -1.0 <= best["score"] <= 1.0 and best["score"] > 0.2
    assert best["url"].startswith(stack.url) and f"/documents/{leave.pk}/passage" in best["url"]
    assert best["id"].startswith("passage-")
    assert not whole.is_error, _text(whole)
    assert "27 days" in whole.structured_content["text"]
    assert whole.structured_content["metadata"]["document_id"] == leave.pk
    assert theirs.is_error and _text(theirs).endswith("Not found.")

    passage, page = call(
        stack, token, ("fetch", {"id": best["id"]}), ("fetch", {"id": best["page_id"]})
    )
    assert not passage.is_error and not page.is_error, (_text(passage), _text(page))
    assert passage.structured_content["text"].startswith("Annual leave policy")
    assert passage.structured_content["url"] == best["url"]
    assert "27 days" in page.structured_content["text"]

    row = AuditEvent.objects.filter(action=Action.QUESTION, actor="alice").latest("id")
    assert row.details["via"] == "mcp" and row.details["tool"] == "search"
    assert row.details["retrieved_chunk_ids"] == [int(r["id"][8:]) for r in results]


def test_mcp_what_the_caller_may_not_read_is_not_found_like_what_does_not_exist(
    people: Any, library: tuple[Document, Document], stack: Stack
) -> None:
    leave, _ = library
    chunk = Chunk.objects.filter(document=leave).order_by("ordinal").first()
    assert chunk is not None
    token = accounts.create_api_token(None, people.bob, "editor")
    found, *fetched = call(
        stack,
        token,
        ("search", {"query": "How many days of annual leave?"}),
        ("fetch", {"id": f"passage-{chunk.pk}"}),
        ("fetch", {"id": f"passage-{MISSING}"}),
        ("fetch", {"id": f"document-{leave.pk}"}),
        ("fetch", {"id": f"document-{MISSING}"}),
        ("fetch", {"id": "../etc/passwd"}),
        ("search", {"query": "leave", "collections": [str(leave.collection_id)]}),
        ("search", {"query": "leave", "collections": [str(MISSING)]}),
    )
    assert all(r["document_id"] != leave.pk for r in found.structured_content["results"])
    forbidden_chunk, missing_chunk, forbidden_doc, missing_doc, nonsense, scoped, absent = fetched
    for result in (forbidden_chunk, missing_chunk, forbidden_doc, missing_doc, nonsense):
        assert result.is_error and _text(result).endswith("Not found."), _text(result)
    # The SDK words a tool's error as "Error executing tool fetch: Not found.": the same
    # words, byte for byte, for the forbidden and the missing.
    assert _text(forbidden_chunk) == _text(missing_chunk) == _text(missing_doc)
    assert scoped.is_error and absent.is_error
    assert _text(scoped).replace(str(leave.collection_id), "X") == _text(absent).replace(
        str(MISSING), "X"
    )


def test_mcp_refuses_a_missing_or_wrong_token_at_the_door(stack: Stack) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    for extra in ({}, {"Authorization": "Bearer apl_wrong"}, {"Authorization": "Basic eDp5"}):
        response = httpx.post(f"{stack.url}/mcp", json=body, headers={**headers, **extra})
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error for a 401
        call(stack, "apl_wrong", ("tools", {}))
