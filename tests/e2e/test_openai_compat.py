"""The OpenAI-compatible API with the official ``openai`` client, against the real web server
and answer worker (SmolLM2): the model list, an answer with citations, the same answer
streamed (citations in the final chunk), a conversation carried in ``messages``, OpenAI's
errors as the client raises them, and the audit rows of it all."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest

from appliance.accounts import actions as accounts
from appliance.audit.models import Action, AuditEvent
from inference.models import Question
from ingest.actions import create_collection
from ingest.models import Document
from tests.support.stack import Stack
from tests.test_canary import ingest_text

pytestmark = [pytest.mark.services]

LEAVE = (
    "Annual leave policy. Every employee is entitled to 27 days of annual leave per calendar "
    "year. Part-time employees receive leave in proportion to their working hours. Leave "
    "must be requested in the HR portal at least two weeks in advance."
)
QUESTION = "How many days of annual leave does an employee get per year?"


@pytest.fixture
def leave(people: Any, live_db: Any, stack: Stack) -> Document:
    collection = create_collection(None, "HR policies", people.hr)
    return ingest_text(people.carol, collection, "Annual leave policy.txt", LEAVE)


@pytest.fixture
def client_for(stack: Stack) -> Any:
    def make(user: Any) -> tuple[openai.OpenAI, str]:
        token = accounts.create_api_token(None, user, "chat client")
        return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=token, max_retries=0), token

    return make


def _citations(obj: Any) -> list[dict[str, Any]]:
    return (obj.model_extra or {}).get("citations") or []


def _assert_cites_the_policy(citations: list[dict[str, Any]], text: str, leave: Document) -> None:
    assert citations, "no citations"
    for citation in citations:
        assert set(citation) >= {"n", "document_id", "title", "page", "excerpt", "link"}
        assert citation["document_id"] == leave.pk
        assert citation["title"] == leave.title
        assert "/documents/" in citation["link"] and "/passage" in citation["link"]
    assert any("27 days" in c["excerpt"] for c in citations)
    # Every marker in the text names a listed citation.
    numbers = {c["n"] for c in citations}
    assert {int(n) for n in re.findall(r"\[(\d+)\]", text)} <= numbers, text


def test_openai_compat_client_lists_the_model_and_gets_a_cited_answer(
    people: Any, client_for: Any, leave: Document, stack: Stack
) -> None:
    client, _ = client_for(people.alice)
    assert [m.id for m in client.models.list()] == ["appliance-rag"]

    completion = client.chat.completions.create(
        model="appliance-rag", messages=[{"role": "user", "content": QUESTION}]
    )
    text = completion.choices[0].message.content or ""
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and text.strip()
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    _assert_cites_the_policy(_citations(completion), text, leave)
    question = Question.objects.get(pk=completion.model_extra["appliance"]["question_id"])
    assert question.user == people.alice and question.answer == text

    # Streaming: text in pieces, then one last chunk with finish_reason and citations.
    pieces: list[str] = []
    last: Any = None
    with client.chat.completions.create(
        model="appliance-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    ) as stream:
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk" and chunk.model == "appliance-rag"
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            last = chunk
    assert len(pieces) >= 2, pieces
    assert last.choices[0].finish_reason == "stop"
    streamed = Question.objects.get(pk=last.model_extra["appliance"]["question_id"])
    _assert_cites_the_policy(_citations(last), streamed.answer, leave)
    assert "".join(pieces).strip().startswith(streamed.answer.strip()[:20])


def test_openai_compat_carries_the_conversation_and_is_audited(
    people: Any, client_for: Any, leave: Document
) -> None:
    client, _ = client_for(people.alice)
    completion = client.chat.completions.create(
        model="appliance-rag",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "27 days per year [1]."},
            {"role": "user", "content": "And for part-time employees?"},
        ],
        extra_body={"collections": ["HR policies"]},
    )
    asked = Question.objects.get(pk=completion.model_extra["appliance"]["question_id"])
    assert asked.text == "And for part-time employees?"
    assert asked.history == [{"question": QUESTION, "answer": "27 days per year [1]."}]
    assert asked.scope == [leave.collection_id]
    assert asked.status == "done" and asked.search_query  # searched as a standalone query

    token = people.alice.api_tokens.get(name="chat client")
    row = AuditEvent.objects.get(action=Action.QUESTION, object_id=str(asked.pk))
    assert row.details["via"] == "openai"
    assert row.details["token_id"] == token.pk and row.details["token_name"] == "chat client"
    assert row.details["history_turns"] == 1
    answer_row = AuditEvent.objects.get(action=Action.ANSWER, object_id=str(asked.pk))
    cited = set(asked.citations.filter(cited=True).values_list("chunk_id", flat=True))
    assert set(answer_row.details["cited_chunk_ids"]) == cited


def test_openai_compat_errors_reach_the_client_as_openai_errors(
    people: Any, client_for: Any, leave: Document, stack: Stack
) -> None:
    client, _ = client_for(people.bob)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
        )
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as forbidden:
        client.chat.completions.create(
            model="appliance-rag",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"collections": [leave.collection_id]},
        )
    assert forbidden.value.code == "collection_not_found"
    stranger = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="apl_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    assert not Question.objects.filter(user=people.bob).exists()
