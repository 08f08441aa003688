"""The canary (``tests/test_canary.py``) at the doors other programs use: the
OpenAI-compatible API (``/v1/chat/completions``, whole and every streamed chunk) and the MCP
server (``search``, ``fetch``). A document of HR never reaches a person of Finance, an
outsider, an auditor or an operator through them; and an HR employee who leaves HR loses it
at the next call. alice, in HR, is the control: the same calls find the canary for her."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from appliance.accounts import actions as accounts
from ingest.actions import create_collection
from ingest.models import Chunk, Document
from tests.support.stack import Stack
from tests.test_canary import PHRASE, QUESTION, TITLE, ingest_canary

pytestmark = [pytest.mark.services]

ATTACKERS = ["bob", "oscar", "dave", "erin"]


@pytest.fixture
def canary(people: Any, live_db: Any, stack: Stack) -> Document:
    return ingest_canary(people.carol, create_collection(None, "HR restructuring", people.hr))


def _chat(stack: Stack, token: str, stream: bool, collections: list[Any] | None = None) -> bytes:
    """The whole response body of one chat completion, every streamed chunk included."""
    body: dict[str, Any] = {
        "model": "appliance-rag",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": stream,
        "max_tokens": 24,
    }
    if collections is not None:
        body["collections"] = collections
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream(
        "POST", f"{stack.url}/v1/chat/completions", json=body, headers=headers, timeout=180
    ) as response:
        parts = list(response.iter_bytes())
    return b"".join(parts)


def _chunks(body: bytes) -> list[dict[str, Any]]:
    lines = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert lines and lines[-1] == "[DONE]", body[-300:]
    return [json.loads(line) for line in lines[:-1]]


def _mcp(stack: Stack, token: str, chunk: Chunk, document: Document) -> list[Any]:
    async def run() -> list[Any]:
        async with httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=90
        ) as http:
            transport = streamable_http_client(f"{stack.url}/mcp", http_client=http)
            async with Client(transport, read_timeout_seconds=90) as client:
                return [
                    await client.call_tool("search", {"query": QUESTION, "limit": 20}),
                    await client.call_tool("search", {"query": PHRASE, "limit": 20}),
                    await client.call_tool("fetch", {"id": f"passage-{chunk.pk}"}),
                    await client.call_tool("fetch", {"id": f"document-{document.pk}"}),
                    await client.call_tool("fetch", {"id": f"document-{document.pk}-page-1"}),
                ]

    return asyncio.run(run())


def _dump(results: list[Any]) -> bytes:
    return json.dumps(
        [r.model_dump(mode="json", by_alias=True) for r in results], ensure_ascii=False
    ).encode()


def _assert_no_canary(body: bytes, where: str) -> None:
    assert PHRASE.encode() not in body, f"the canary's text leaked: {where}"
    assert TITLE.encode() not in body, f"the canary's title leaked: {where}"


def test_openai_compat_and_mcp_never_show_the_canary_to_another_department(
    people: Any, canary: Document, stack: Stack
) -> None:
    chunk = Chunk.objects.filter(document=canary).order_by("ordinal").first()
    assert chunk is not None
    # The control: alice reaches the canary through both doors, so the checks can fail.
    alice = accounts.create_api_token(None, people.alice, "canary")
    whole = _chat(stack, alice, stream=False)
    assert PHRASE.encode() in whole, whole[:500]
    assert PHRASE.encode() in _dump(_mcp(stack, alice, chunk, canary))

    for who in ATTACKERS:
        token = accounts.create_api_token(None, getattr(people, who), "canary")
        _assert_no_canary(_chat(stack, token, stream=False), f"{who}: chat completion")
        streamed = _chat(stack, token, stream=True)
        for part in _chunks(streamed):
            _assert_no_canary(json.dumps(part, ensure_ascii=False).encode(), f"{who}: chunk")
        _assert_no_canary(streamed, f"{who}: the stream")
        forged = _chat(stack, token, stream=False, collections=[canary.collection_id])
        missing = _chat(stack, token, stream=False, collections=[987654321])
        assert json.loads(forged)["error"]["code"] == "collection_not_found"
        assert forged.replace(str(canary.collection_id).encode(), b"X") == missing.replace(
            b"987654321", b"X"
        )
        results = _mcp(stack, token, chunk, canary)
        _assert_no_canary(_dump(results), f"{who}: MCP search and fetch")
        for fetched in results[2:]:
            assert fetched.is_error and fetched.content[0].text.endswith("Not found.")


def test_openai_compat_and_mcp_drop_the_canary_once_its_reader_leaves_the_department(
    people: Any, canary: Document, stack: Stack
) -> None:
    chunk = Chunk.objects.filter(document=canary).order_by("ordinal").first()
    assert chunk is not None
    token = accounts.create_api_token(None, people.alice, "canary")
    assert PHRASE.encode() in _dump(_mcp(stack, token, chunk, canary))
    assert accounts.remove_membership(None, people.alice, people.hr, "employee")
    # The same token, the very next calls: nothing of the canary.
    _assert_no_canary(_dump(_mcp(stack, token, chunk, canary)), "alice after leaving HR: MCP")
    for stream in (False, True):
        _assert_no_canary(_chat(stack, token, stream=stream), f"alice after leaving HR: {stream}")
