"""The OpenAI-compatible API's doors and refusals, in this process: who may call it, the
model list, OpenAI's error shape, forbidden collections answered like missing ones, and
how ``messages`` become the question and the conversation so far. The answers themselves
come from the real worker in ``tests/e2e/test_openai_compat.py``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from appliance.api.openai_compat import RequestError, read_messages
from inference import conversation
from inference.models import Question
from ingest.actions import create_collection
from tests.conftest import ClientFor

pytestmark = pytest.mark.django_db

MISSING = 987654321


def _post(client: Any, body: Any) -> Any:
    return client.post("/v1/chat/completions", json.dumps(body), content_type="application/json")


def _assert_openai_error(response: Any, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["message"]
    return error


def test_openai_compat_needs_a_valid_token(people: Any, signed_in: ClientFor, client: Any) -> None:
    ask = {"model": "appliance-rag", "messages": [{"role": "user", "content": "Hi?"}]}
    for caller in (
        client,  # nobody
        signed_in(people.alice),  # a browser session is not a token
        client.__class__(HTTP_AUTHORIZATION="Bearer apl_not-a-token"),
    ):
        for response in (caller.get("/v1/models"), _post(caller, ask)):
            error = _assert_openai_error(response, 401, "invalid_api_key")
            assert error["type"] == "authentication_error"
            assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Question.objects.exists()


def test_openai_compat_lists_one_model_and_an_unknown_one_is_a_404(
    people: Any, api_signed_in: ClientFor
) -> None:
    api = api_signed_in(people.alice)
    listed = api.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["appliance-rag"]
    assert api.get("/v1/models/appliance-rag").json()["id"] == "appliance-rag"
    _assert_openai_error(api.get("/v1/models/gpt-4o"), 404, "model_not_found")
    error = _assert_openai_error(
        _post(api, {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi?"}]}),
        404,
        "model_not_found",
    )
    assert error["param"] == "model" and "gpt-4o" in error["message"]
    assert not Question.objects.exists()


def test_openai_compat_refuses_bad_requests_in_openai_shape(
    people: Any, api_signed_in: ClientFor
) -> None:
    api = api_signed_in(people.alice)
    ok = {"model": "appliance-rag"}
    bad = [
        ({**ok, "messages": []}, "invalid_messages"),
        ({**ok, "messages": [{"role": "assistant", "content": "Hello"}]}, "invalid_messages"),
        ({**ok, "messages": [{"role": "user", "content": 7}]}, "invalid_content"),
        ({**ok, "messages": [{"role": "user", "content": "x" * 5000}]}, "invalid_question"),
        ({**ok, "messages": [{"role": "user", "content": "Hi"}], "collections": "HR"}, None),
    ]
    for body, code in bad:
        error = _assert_openai_error(_post(api, body), 400, code or "invalid_collections")
        assert error["type"] == "invalid_request_error"
    not_json = api.post("/v1/chat/completions", "{", content_type="application/json")
    _assert_openai_error(not_json, 400, "invalid_json")
    wrong_method = api.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert not Question.objects.exists()


def test_openai_compat_a_forbidden_collection_is_answered_like_a_missing_one(
    people: Any, api_signed_in: ClientFor
) -> None:
    hr = create_collection(None, "HR restructuring", people.hr)
    bob = api_signed_in(people.bob)

    def ask(collection: Any) -> Any:
        return _post(
            bob,
            {
                "model": "appliance-rag",
                "messages": [{"role": "user", "content": "What is in the memo?"}],
                "collections": [collection],
            },
        )

    for forbidden, missing in ((hr.pk, MISSING), (hr.name, "No such collection")):
        refused, absent = ask(forbidden), ask(missing)
        assert refused.status_code == absent.status_code == 404
        assert refused.content.replace(str(forbidden).encode(), b"X") == absent.content.replace(
            str(missing).encode(), b"X"
        )
        _assert_openai_error(refused, 404, "collection_not_found")
    assert not Question.objects.exists()


def test_openai_compat_messages_become_the_question_and_the_turns_before_it() -> None:
    question, turns = read_messages(
        [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "How many days of leave?"},
            {"role": "assistant", "content": "25 days [1]."},
            {"role": "user", "content": [{"type": "text", "text": "And for"}]},
            {"role": "user", "content": "part-time staff?"},
        ]
    )
    assert question == "And for\n\npart-time staff?"
    assert turns == [("How many days of leave?", "25 days [1].")]
    with pytest.raises(RequestError):
        read_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])


def test_openai_compat_given_turns_are_the_history_without_old_markers(people: Any) -> None:
    question = Question.objects.create(
        user=people.alice,
        text="And part-time?",
        history=[{"question": "How many days?", "answer": "25 days [1], or 30 [2]."}],
    )
    so_far = conversation.history(question)
    assert [(t.question, t.answer) for t in so_far.turns] == [("How many days?", "25 days, or 30.")]
    assert so_far.next_n == 1  # this turn's passages are numbered from [1]
