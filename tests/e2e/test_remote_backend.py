"""The optional backend: answer workers that send prompts to an OpenAI-compatible server.
Here the server is llama-cpp-python's own (a real OpenAI-compatible server) with the
small real model; the appliance must give the same events and citations as with a local
model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings

from ingest import actions as ingest_actions
from ingest.models import Document
from tests.conftest import DOCUMENTS
from tests.e2e.test_pipeline import read_events
from tests.support.stack import free_port, wait_for

pytestmark = [pytest.mark.services]


@pytest.fixture
def model_server(tmp_path: Any) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "model-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(settings.LLM_MODEL_PATH),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    try:
        wait_for(up, timeout=120, message="the model server")
        assert process.poll() is None, (tmp_path / "model-server.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_answers_through_an_openai_compatible_server_carry_the_same_events(
    people: Any, api_for: Any, stack: Any, model_server: str
) -> None:
    collection = ingest_actions.create_collection(people.carol, "HR policies", people.hr)
    with open(DOCUMENTS / "pdf" / "fake-memo.pdf", "rb") as handle:
        ingest_actions.upload_documents(
            people.carol, collection, [ingest_actions.IncomingFile("fake-memo.pdf", handle)]
        )
    wait_for(
        lambda: Document.objects.filter(status="ready").exists(),
        timeout=120,
        message="the memo to be read",
    )
    stack.stop("answer")
    stack.start(
        "answer",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "appliance",
            "worker",
            "-Q",
            "answer",
            "-n",
            "answer-remote@%h",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
        ],
        {
            "APPLIANCE_WORKER_ROLE": "answer",
            "APPLIANCE_LLM_BACKEND": "openai",
            "APPLIANCE_LLM_SERVER_URL": model_server,
        },
    )
    try:
        stack.wait_healthy()
        api = api_for(people.alice)
        asked = api.post(
            "/api/v1/questions", json={"question": "How many bottles of water were delivered?"}
        ).json()
        events = read_events(api, asked["id"])
        kinds = [kind for _, kind, _ in events]
        assert kinds[0] == "queued" and "sources" in kinds and "token" in kinds
        assert kinds[-1] == "done", events[-1]
        stored = api.get(f"/api/v1/questions/{asked['id']}").json()
        assert stored["grounded"] is True and stored["answer"].strip()
        assert stored["citations"][0]["title"] == "fake-memo"
    finally:
        stack.stop("answer")
        stack.start_worker("answer")
        stack.wait_healthy()
