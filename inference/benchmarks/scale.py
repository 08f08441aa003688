"""``benchmark scale``: answers per minute and documents per minute with one worker host,
then with two: the running appliance's own workers, and a second host made as a network
namespace on this machine running ``deploy/up --role worker`` against the same PostgreSQL
and Redis (inference/benchmarks/second_host.py). Needs root (``ip netns``) and socat.

It needs the appliance running (``deploy/up``). Like ``benchmark answer`` it creates a
scratch department, person and collection, and removes them afterwards (their audit rows
stay: the audit log is append-only). Each round queues every document (small generated
texts) at once and times until the last is read, then asks every question at once through
the API and times until the last is answered.

Both hosts share this machine's cores, so on a small machine the ratio shows the mechanics
(the second host takes its share of both queues), not what a second machine would add:
size hosts from docs/sizing.md.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from io import BytesIO
from typing import Any

import httpx
from django.conf import settings
from django.db import connection

from appliance.accounts import actions as accounts
from appliance.accounts.models import Role
from inference.benchmarks.answer import _cleanup
from inference.benchmarks.second_host import SecondHost, SecondHostError
from inference.models import Question, QuestionStatus
from ingest import actions as ingest
from ingest.models import FINAL_STATUSES, Document

REGIONS = ["Nordland", "Troms", "Finnmark", "Vestland", "Rogaland", "Agder", "Innlandet", "Viken"]
WAITING = [QuestionStatus.QUEUED, QuestionStatus.RUNNING]


def add_arguments(parser: Any) -> None:
    host = os.environ.get("APPLIANCE_HOST", "127.0.0.1")
    port = os.environ.get("APPLIANCE_PORT", "8000")
    parser.add_argument("--url", default=f"http://{host}:{port}", help="the running appliance")
    parser.add_argument("--questions", type=int, default=16, help="questions per round")
    parser.add_argument("--documents", type=int, default=16, help="documents per round")
    parser.add_argument(
        "--paragraphs", type=int, default=40, help="paragraphs per generated document"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds each round may take at most"
    )


def policy(region: str, round_: int, number: int, paragraphs: int) -> bytes:
    """A generated text whose first paragraph answers the round's question about
    ``region``; the rest gives the embedding model work in proportion to ``paragraphs``."""
    lines = [
        f"Travel policy {round_}-{number} for {region}. The daily travel allowance for staff "
        f"working in {region} is {300 + 10 * number + round_} kroner."
    ]
    lines += [
        f"Section {n}. The office in {region} counted {n * 7} chairs, {n * 3} desks and "
        f"{n + 11} lamps during the inventory of week {n % 52} of round {round_}."
        for n in range(paragraphs)
    ]
    return "\n\n".join(lines).encode()


def _wait(done: Any, timeout: float, what: str) -> None:
    started = time.perf_counter()
    while not done():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{what} did not finish in {timeout:.0f} s")
        time.sleep(0.2)


def _round(client: httpx.Client, collection: Any, round_: int, options: dict[str, Any]) -> dict:
    """Documents per minute and answers per minute, each with its whole batch queued at
    once."""
    files = [
        ingest.IncomingFile(
            f"policy-{round_}-{n}.txt",
            BytesIO(policy(REGIONS[n % len(REGIONS)], round_, n, options["paragraphs"])),
        )
        for n in range(options["documents"])
    ]
    started = time.perf_counter()
    ingest.upload_documents(None, collection, files)
    mine = Document.objects.filter(collection=collection, title__startswith=f"policy-{round_}-")
    _wait(
        lambda: not mine.exclude(status__in=FINAL_STATUSES).exists(),
        options["timeout"],
        "the documents",
    )
    seconds = time.perf_counter() - started
    documents_per_min = options["documents"] / seconds * 60

    started = time.perf_counter()
    asked = []
    for n in range(options["questions"]):
        region = REGIONS[n % len(REGIONS)]
        response = client.post(
            "/api/v1/questions",
            json={"question": f"What is the daily travel allowance in {region}?"},
        )
        response.raise_for_status()
        asked.append(response.json()["id"])
    _wait(
        lambda: not Question.objects.filter(pk__in=asked, status__in=WAITING).exists(),
        options["timeout"],
        "the questions",
    )
    seconds = time.perf_counter() - started
    answered = Question.objects.filter(pk__in=asked, status=QuestionStatus.DONE).count()
    return {
        "documents_per_min": documents_per_min,
        "answers_per_min": answered / seconds * 60,
        "answered": answered,
        "documents_ready": mine.filter(status="ready").count(),
    }


def _second_host() -> SecondHost:
    return SecondHost(
        queues="answer,ingest",
        database=connection.settings_dict,
        redis_url=settings.REDIS_URL,
        data_dir=settings.DATA_DIR,
    )


def run(options: dict[str, Any], out: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    department, _ = accounts.create_department(None, f"benchmark-{tag}")
    user, _ = accounts.create_or_update_user(None, f"benchmark-{tag}", uuid.uuid4().hex)
    accounts.add_membership(None, user, department, Role.EMPLOYEE)
    collection = ingest.create_collection(None, f"benchmark-{tag}", department)
    token = accounts.create_api_token(None, user, "benchmark")
    client = httpx.Client(
        base_url=options["url"], headers={"Authorization": f"Bearer {token}"}, timeout=120
    )
    host2 = _second_host()
    try:
        out.write(
            f"one host: {options['documents']} documents, then {options['questions']} "
            f"questions, through {options['url']} …"
        )
        one = _round(client, collection, 1, options)
        out.write("starting the second host (a network namespace on this machine) …")
        try:
            host2.start()
            host2.wait_ready(timeout=600)
        except SecondHostError as exc:
            raise RuntimeError(f"the second host could not start: {exc}") from None
        out.write("two hosts: the same again …")
        two = _round(client, collection, 2, options)
    finally:
        host2.close()
        client.close()
        _cleanup(user, collection)

    def ratio(a: float, b: float) -> float:
        return round(b / a, 3) if a else float("nan")

    result = {
        "model": settings.LLM_SPEC.name,
        "questions": options["questions"],
        "documents": options["documents"],
        "paragraphs_per_document": options["paragraphs"],
        "cpu_cores": os.cpu_count(),
        "answers_per_min_1": round(one["answers_per_min"], 2),
        "answers_per_min_2": round(two["answers_per_min"], 2),
        "scaling_ratio": ratio(one["answers_per_min"], two["answers_per_min"]),
        "documents_per_min_1": round(one["documents_per_min"], 2),
        "documents_per_min_2": round(two["documents_per_min"], 2),
        "documents_scaling_ratio": ratio(one["documents_per_min"], two["documents_per_min"]),
        "answered": [one["answered"], two["answered"]],
        "documents_ready": [one["documents_ready"], two["documents_ready"]],
        "note": (
            f"both hosts share this machine's {os.cpu_count()} cores: the ratio shows the "
            "mechanics (the second host takes its share of both queues), not what a second "
            "machine adds; see docs/sizing.md"
        ),
    }
    out.write(
        f"answers/min: one host {result['answers_per_min_1']}, two hosts "
        f"{result['answers_per_min_2']} (x{result['scaling_ratio']}); documents/min: "
        f"{result['documents_per_min_1']}, {result['documents_per_min_2']} "
        f"(x{result['documents_scaling_ratio']})"
    )
    out.write(result["note"])
    if options.get("json"):
        out.write(json.dumps(result))
