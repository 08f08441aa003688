"""Two worker hosts on one queue and one database: the stack's workers on this host, and a
second host made as a network namespace (its own address on a veth pair) running
``deploy/up --role worker`` against the same PostgreSQL and Redis, reached over that pair
(inference/benchmarks/second_host.py). Needs root for ``ip netns``: without it the test
fails and says so."""

from __future__ import annotations

import json
import os
import subprocess
import time
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from appliance.audit import integrity
from appliance.audit.models import Action, AuditEvent
from inference import events as answer_events
from inference.answering import WORKER_LOST
from inference.benchmarks.second_host import SecondHost, finished, read_events
from inference.models import Question, QuestionStatus
from ingest import actions as ingest_actions
from ingest.models import Chunk, Document, Status
from tests.support.stack import Stack, wait_for

pytestmark = [pytest.mark.services]

HOST2_LEASE_SECONDS = 10  # the second host's documents are taken over this soon after it dies
REGIONS = ["Nordland", "Troms", "Finnmark", "Vestland"]


def policy(region: str, allowance: int) -> bytes:
    return (
        f"Travel policy for {region}.\n\n"
        f"The daily travel allowance for staff working in {region} is {allowance} kroner. "
        f"Claims for {region} are sent to the regional office within thirty days.\n"
    ).encode()


def long_report(paragraphs: int) -> bytes:
    """A plain text long enough that embedding it takes a while on a busy host."""
    lines = [
        f"Section {n}. The warehouse in district {n} counted {n * 7} pallets of paper, "
        f"{n * 3} boxes of toner and {n + 11} broken chairs during the inventory of week {n % 52}."
        for n in range(paragraphs)
    ]
    return "\n\n".join(lines).encode()


def upload(api: Any, collection: Any, files: list[tuple[str, bytes]]) -> list[int]:
    sent = [("files", (name, body)) for name, body in files]
    response = api.post(f"/api/v1/collections/{collection.pk}/documents", files=sent)
    assert response.status_code == 202, response.text
    documents = response.json()["documents"]
    assert all(d["status"] != "rejected" for d in documents), documents
    return [d["id"] for d in documents]


def ask(api: Any, text: str) -> int:
    response = api.post("/api/v1/questions", json={"question": text})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def wait_documents(ids: list[int], timeout: float = 600) -> None:
    wait_for(
        lambda: (
            not Document.objects.filter(pk__in=ids)
            .exclude(status__in=[Status.READY, Status.FAILED])
            .exists()
        ),
        timeout=timeout,
        interval=1,
        message=f"documents {ids} to finish",
    )


def wait_questions(ids: list[int], timeout: float = 600) -> None:
    wait_for(
        lambda: (
            not Question.objects.filter(
                pk__in=ids, status__in=[QuestionStatus.QUEUED, QuestionStatus.RUNNING]
            ).exists()
        ),
        timeout=timeout,
        interval=1,
        message=f"questions {ids} to finish",
    )


def assert_each_document_ingested_once(ids: list[int]) -> None:
    for document in Document.objects.filter(pk__in=ids):
        assert document.status == Status.READY, (document.pk, document.error)
        done = AuditEvent.objects.filter(action=Action.INGEST_DONE, object_id=str(document.pk))
        assert done.count() == 1, document.pk
        chunks = Chunk.objects.filter(document_id=document.pk)
        assert sorted(chunks.values_list("ordinal", flat=True)) == list(range(document.chunks))
        assert set(chunks.values_list("version", flat=True)) == {document.live_version}


def assert_each_question_finished_once(ids: list[int]) -> None:
    for question_id in ids:
        records = AuditEvent.objects.filter(action=Action.ANSWER, object_id=str(question_id))
        assert records.count() == 1, question_id


def host1_finished(stack: Stack, queue: str, event: str, key: str) -> set[int]:
    return finished(read_events(stack.log_dir / f"{queue}.log"), event, key)


@pytest.mark.timeout(1800)
def test_two_hosts_share_the_work_and_a_killed_host_loses_nothing(
    people: Any, api_for: Any, stack: Stack
) -> None:
    api = api_for(people.carol)
    asker = api_for(people.alice)
    collection = ingest_actions.create_collection(people.carol, "Two hosts", people.hr)
    host2 = SecondHost(
        queues="answer,ingest",
        database=connection.settings_dict,
        redis_url=settings.REDIS_URL,
        data_dir=settings.DATA_DIR,
        env={
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "APPLIANCE_INGEST_LEASE_SECONDS": str(HOST2_LEASE_SECONDS),
        },
    )
    stopped_host1 = False
    try:
        host2.start()
        host2.wait_ready(timeout=420)

        # 1. Both hosts take documents and questions from the same queues.
        documents = upload(
            api, collection, [(f"{r}.txt", policy(r, 400 + 10 * i)) for i, r in enumerate(REGIONS)]
        )
        wait_documents(documents)
        assert_each_document_ingested_once(documents)
        questions = [ask(asker, f"What is the daily travel allowance in {r}?") for r in REGIONS]
        wait_questions(questions)
        assert set(Question.objects.filter(pk__in=questions).values_list("status", flat=True)) == {
            QuestionStatus.DONE
        }
        assert_each_question_finished_once(questions)
        for queue, event, key, ids in (
            ("ingest", "document.finished", "document_id", documents),
            ("answer", "answer.finished", "question_id", questions),
        ):
            here = host1_finished(stack, queue, event, key) & set(ids)
            there = finished(host2.events(queue), event, key) & set(ids)
            assert here and there, f"{queue}: host 1 did {here}, host 2 did {there}"
            assert here | there == set(ids) and not here & there, (queue, here, there)

        # 2. The second host dies mid-work; the first finishes everything, nothing twice.
        stack.stop("answer")  # warm shutdown: host 2 alone takes the next batch
        stack.stop("ingest")
        stopped_host1 = True
        later = upload(
            api,
            collection,
            [("inventory.txt", long_report(1500))]
            + [(f"{r}-2.txt", policy(r, 500 + i)) for i, r in enumerate(REGIONS[:3])],
        )
        asked = [ask(asker, f"Where are claims for {r} sent?") for r in REGIONS]
        big = later[0]

        def both_busy() -> bool:
            document = Document.objects.get(pk=big)
            assert document.status not in (Status.READY, Status.FAILED), "finished before the kill"
            running = Question.objects.filter(pk__in=asked, status=QuestionStatus.RUNNING)
            return document.chunks_done > 0 and running.exists()

        wait_for(both_busy, timeout=300, interval=0.1, message="host 2 busy with both queues")
        host2.kill()
        in_flight = list(
            Question.objects.filter(pk__in=asked, status=QuestionStatus.RUNNING).values_list(
                "pk", flat=True
            )
        )
        assert len(in_flight) <= 1, in_flight  # none only if one ended at the very moment
        assert Document.objects.get(pk=big).status in (Status.PARSING, Status.EMBEDDING)
        queued_at_kill = set(
            Question.objects.filter(pk__in=asked, status=QuestionStatus.QUEUED).values_list(
                "pk", flat=True
            )
        )
        waiting_documents = set(
            Document.objects.filter(pk__in=later, status=Status.QUEUED).values_list("pk", flat=True)
        )

        # The dead host's document lease and its question's alive signal lapse; the first
        # host's workers start and their reconcilers take over at once.
        running = list(Question.objects.filter(pk__in=in_flight))

        def lapsed() -> bool:
            lease = Document.objects.get(pk=big).lease_until
            return (lease is None or lease.timestamp() < time.time()) and all(
                not answer_events.is_alive(question)
                and time.time() - question.started_at.timestamp() > answer_events.ALIVE_SECONDS + 1
                for question in running
            )

        wait_for(lapsed, timeout=90, message="the dead host's lease and alive signal to lapse")
        stack.start_worker("ingest")
        stack.start_worker("answer")
        stopped_host1 = False
        stack.wait_healthy()
        wait_documents(later, timeout=900)
        wait_questions(asked, timeout=600)

        assert_each_document_ingested_once(later)
        assert Document.objects.get(pk=big).attempts == 2  # begun on host 2, resumed on host 1
        assert_each_question_finished_once(asked)
        states = dict(Question.objects.filter(pk__in=asked).values_list("pk", "status"))
        # The answer being streamed when its host died is not started over (half an answer
        # already reached the asker): it ends plainly, asking them to ask again. Every other
        # question is answered by the first host.
        for question_id in in_flight:
            assert Question.objects.get(pk=question_id).error == WORKER_LOST
            assert states.pop(question_id) == QuestionStatus.ERROR
        assert set(states.values()) == {QuestionStatus.DONE}, states
        # Each was answered by one host only; what was still waiting, by the first.
        by_host1 = host1_finished(stack, "answer", "answer.finished", "question_id")
        by_host2 = finished(host2.events("answer"), "answer.finished", "question_id")
        assert not set(states) & by_host1 & by_host2
        assert set(states) <= by_host1 | by_host2
        assert queued_at_kill <= by_host1, (queued_at_kill, by_host1)
        read_by_host1 = host1_finished(stack, "ingest", "document.finished", "document_id")
        assert waiting_documents | {big} <= read_by_host1, (waiting_documents, read_by_host1)

        # 3. Two hosts wrote one audit chain.
        report = integrity.verify_database()
        assert report.rows == AuditEvent.objects.count()
    except Exception:
        print(host2.log_tail(60))
        raise
    finally:
        host2.close()
        if stopped_host1:
            stack.start_worker("ingest")
            stack.start_worker("answer")
            stack.wait_healthy()


@pytest.mark.timeout(1800)
def test_two_host_benchmark_scale_prints_its_figures(live_db: Any, stack: Stack) -> None:
    out = StringIO()
    call_command(
        "benchmark",
        "scale",
        "--json",
        "--url",
        stack.url,
        "--questions",
        "2",
        "--documents",
        "2",
        "--paragraphs",
        "3",
        stdout=out,
    )
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    for key in ("answers_per_min_1", "answers_per_min_2", "documents_per_min_1"):
        assert result[key] > 0, result
    ratio = result["answers_per_min_2"] / result["answers_per_min_1"]
    assert result["scaling_ratio"] == pytest.approx(ratio, abs=0.01)  # from unrounded rates
    assert "documents_scaling_ratio" in result and "mechanics" in result["note"]
    assert result["answered"] == [2, 2] and result["documents_ready"] == [2, 2]
    assert not Document.objects.exists()  # the scratch collection is gone
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = [line.split()[0] for line in namespaces.stdout.splitlines() if line.strip()]
    assert f"appliance-h2-{os.getpid() % 100000}" not in names  # the second host is gone
