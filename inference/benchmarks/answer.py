"""``benchmark answer``: answers through the whole running appliance (HTTP API, queue,
answer worker, Server-Sent Events) against bare llama-cpp-python on the same model, the
same prompts and the same threads, measured in one run.

It needs the appliance running (``deploy/up``): it creates a scratch department, person
and collection, lets the ingest worker read a few real documents and asks N questions.
Right after each answer, while the worker sits idle, it replays exactly the prompt the
worker built (rebuilt from the stored sources) on a bare ``Llama`` in this process: both
read the same prompts in the same order, so their KV caches go through the same states,
and each pair is timed under the same machine load. The scratch data is removed
afterwards (its audit rows stay: the audit log is append-only).

Tokens/s runs from the first token to the last one reaching the client, on both sides;
what the appliance does after the last token (checking citations, storing the answer and
its audit row) is reported as ``finish_p50_ms`` and is part of the total latency.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

from appliance.accounts import actions as accounts
from appliance.accounts.models import Role
from inference import answering, conversation, prompts
from inference import language as languages
from inference.llm.backend import local_model
from inference.llm.base import GenerationStats
from inference.models import Question
from ingest import actions as ingest
from ingest import storage
from ingest.models import FINAL_STATUSES, Document

QUESTIONS = [
    "How many bottles of water were delivered?",
    "How many trucks were used for the delivery, and for how long?",
    "What does the United States Trustee supervise?",
    "What is the purpose of the Handbook?",
    "What are the focus areas of the corporate overview?",
    "When were the laptops delivered?",
    "What does the Handbook say about its legal status?",
    "How many blankets were delivered?",
]
# A new conversation about the handbook, then a follow-up on the same passages: the
# follow-up's prompt is the whole first turn (cached) plus a short new turn.
COLD = "What does the Handbook establish about the duties of standing trustees?"
FOLLOW_UP = "What does the Handbook say about the United States Trustee Program's position?"
DOCUMENTS = ["pdf/fake-memo.pdf", "handbook-1p.docx", "pdf/reliance.pdf"]


def add_arguments(parser: Any) -> None:
    host = os.environ.get("APPLIANCE_HOST", "127.0.0.1")
    port = os.environ.get("APPLIANCE_PORT", "8000")
    parser.add_argument("--url", default=f"http://{host}:{port}", help="the running appliance")
    parser.add_argument("--questions", type=int, default=16, help="questions to time")
    parser.add_argument(
        "--documents",
        type=Path,
        default=settings.BASE_DIR.parent / "shared" / "corpus" / "documents",
        help="folder holding the benchmark documents",
    )


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def _ask(client: httpx.Client, text: str, conversation_id: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"question": text}
    if conversation_id:
        body["conversation_id"] = conversation_id
    started = time.perf_counter()
    response = client.post("/api/v1/questions", json=body)
    response.raise_for_status()
    asked = response.json()
    first = last = done = None
    with client.stream("GET", f"/api/v1/questions/{asked['id']}/events", timeout=600) as events:
        event = ""
        for line in events.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "token":
                    last = time.perf_counter()
                    first = first or last
                if event in ("done", "error"):
                    done = time.perf_counter()
            elif line.startswith("data: ") and event in ("done", "error"):
                if event == "error":
                    raise RuntimeError(f"the appliance failed to answer: {line[6:]}")
                break
    stored = client.get(f"/api/v1/questions/{asked['id']}").json()
    return {
        "id": asked["id"],
        "conversation_id": asked["conversation_id"],
        "ttft_s": (first or done) - started,
        "total_s": done - started,
        # from the first token to the last one reaching the client; storing the answer,
        # its citations and its audit row after that is in total_s
        "decode_s": (last or done) - (first or done),
        "finish_s": done - (last or done),
        "grounded": stored["grounded"],
    }


def _setup(documents: Path, out: Any) -> tuple[Any, Any, str]:
    tag = uuid.uuid4().hex[:8]
    department, _ = accounts.create_department(None, f"benchmark-{tag}")
    user, _ = accounts.create_or_update_user(None, f"benchmark-{tag}", uuid.uuid4().hex)
    accounts.add_membership(None, user, department, Role.EMPLOYEE)
    collection = ingest.create_collection(None, f"benchmark-{tag}", department)
    for name in DOCUMENTS:
        with open(documents / name, "rb") as handle:
            ingest.upload_documents(
                None, collection, [ingest.IncomingFile(Path(name).name, handle)]
            )
    out.write(f"waiting for the ingest worker to read {len(DOCUMENTS)} documents …")
    deadline = time.monotonic() + 600
    while (
        Document.objects.filter(collection=collection).exclude(status__in=FINAL_STATUSES).exists()
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the ingest worker did not read the documents in 10 minutes")
        time.sleep(0.5)
    token = accounts.create_api_token(None, user, "benchmark")
    return user, collection, token


def _cleanup(user: Any, collection: Any) -> None:
    department = collection.department
    for document in Document.objects.filter(collection=collection):
        storage.remove(document.stored_path)
    collection.delete()
    user.delete()
    department.delete()


def _rebuild_prompt(model: Any, question_id: int) -> tuple[str, int]:
    """The exact prompt the worker gave the model, and how many tokens it wrote."""
    question = Question.objects.select_related("user").get(pk=question_id)
    history = conversation.history(question)
    citations = [c for c in question.citations.order_by("n") if c.in_prompt]
    passages = [
        prompts.Source(c.n, conversation.hit_from_citation(c), c.snippet) for c in citations
    ]
    listed = [s for s in passages if conversation.passage_key(s) not in history.known]
    again = [s.n for s in passages if conversation.passage_key(s) in history.known]
    language = languages.for_person(question.text, question.user)
    prompt = answering.compose_prompt(model, history, question.text, listed, again, language)
    return prompt, question.completion_tokens


def _bare(model: Any, prompt: str, max_tokens: int) -> dict[str, float]:
    stats = GenerationStats()
    started = time.perf_counter()
    first = None
    for _ in model.stream(
        prompt,
        max_tokens=max_tokens,
        temperature=settings.LLM_TEMPERATURE,
        top_p=settings.LLM_TOP_P,
        stats=stats,
    ):
        if first is None:
            first = time.perf_counter()
    done = time.perf_counter()
    return {
        "ttft_s": (first or done) - started,
        "decode_s": done - (first or done),
        "tokens": stats.completion_tokens,
        "reused": stats.reused_prefix_tokens,
        "prompt_tokens": stats.prompt_tokens,
    }


def run(options: dict[str, Any], out: Any) -> None:
    # The bare model is loaded first (outside every timing, and before any scratch data
    # exists, so a model that fails to load leaves nothing behind). It reads each prompt
    # right after the worker answered it: both go through the same sequence of prompts
    # (so the same KV-cache reuse) at nearly the same moment (so the same machine load).
    model = local_model()
    user, collection, token = _setup(options["documents"], out)
    client = httpx.Client(
        base_url=options["url"], headers={"Authorization": f"Bearer {token}"}, timeout=600
    )
    Row = dict[str, Any]

    def both(text: str, conversation_id: int | None = None) -> tuple[Row, Row]:
        ours = _ask(client, text, conversation_id)
        stored = Question.objects.get(pk=ours["id"])
        ours["tokens"] = stored.completion_tokens
        ours["worker_ttft_ms"] = stored.ttft_ms
        prompt, tokens = _rebuild_prompt(model, ours["id"])
        return ours, _bare(model, prompt, max(tokens, 1))

    try:
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(options["questions"])]
        out.write(
            f"asking {len(questions)} questions through {options['url']}, each replayed at "
            "once on bare llama-cpp-python in this process …"
        )
        both("What is this about?")  # settles both caches on the shared prefix
        pairs = [both(text) for text in questions]
        cold, bare_cold = both(COLD)
        follow, bare_follow = both(FOLLOW_UP, cold["conversation_id"])
    finally:
        client.close()
        _cleanup(user, collection)
    appliance = [ours for ours, _ in pairs]
    bare = [theirs for _, theirs in pairs]

    def rate(rows: list[dict[str, Any]]) -> float:
        tokens = sum(max(r["tokens"] - 1, 0) for r in rows)
        seconds = sum(r["decode_s"] for r in rows)
        return tokens / seconds if seconds else float("nan")

    ttft = [r["ttft_s"] * 1000 for r in appliance]
    bare_ttft = [r["ttft_s"] * 1000 for r in bare]
    added = [a - b for a, b in zip(ttft, bare_ttft, strict=True)]
    result = {
        "model": settings.LLM_SPEC.name,
        "threads": settings.LLM_THREADS,
        "questions": len(appliance),
        "prompt_tokens_p50": statistics.median(r["prompt_tokens"] for r in bare),
        "tokens_per_s": round(rate(appliance), 2),
        "bare_tokens_per_s": round(rate(bare), 2),
        "tokens_per_s_ratio": round(rate(appliance) / rate(bare), 3),
        "ttft_p50_ms": round(_percentile(ttft, 50)),
        "ttft_p95_ms": round(_percentile(ttft, 95)),
        "bare_ttft_p50_ms": round(_percentile(bare_ttft, 50)),
        "bare_ttft_p95_ms": round(_percentile(bare_ttft, 95)),
        "added_ttft_p50_ms": round(_percentile(added, 50)),
        "added_ttft_p95_ms": round(_percentile(added, 95)),
        "total_latency_p50_ms": round(_percentile([r["total_s"] * 1000 for r in appliance], 50)),
        "finish_p50_ms": round(_percentile([r["finish_s"] * 1000 for r in appliance], 50)),
        "cold_ttft_ms": round(cold["ttft_s"] * 1000),
        "follow_up_ttft_ms": round(follow["ttft_s"] * 1000),
        "prefix_ttft_speedup": round(cold["ttft_s"] / follow["ttft_s"], 2),
        "bare_cold_ttft_ms": round(bare_cold["ttft_s"] * 1000),
        "bare_follow_up_ttft_ms": round(bare_follow["ttft_s"] * 1000),
        "bare_prefix_ttft_speedup": round(bare_cold["ttft_s"] / bare_follow["ttft_s"], 2),
        "follow_up_reused_prompt_tokens": bare_follow["reused"],
        "follow_up_prompt_tokens": bare_follow["prompt_tokens"],
    }
    r = result
    out.write("")
    out.write("first token, ms: appliance (of which in the worker) / bare; prompt tokens (reused)")
    for number, (ours, theirs) in enumerate(zip(appliance, bare, strict=True), start=1):
        out.write(
            f"  {number:>3}  {ours['ttft_s'] * 1000:7.0f} ({ours['worker_ttft_ms']:>5}) / "
            f"{theirs['ttft_s'] * 1000:7.0f}   {theirs['prompt_tokens']:>5} ({theirs['reused']})"
        )
    out.write(
        f"model {r['model']}, {r['threads']} threads, {r['questions']} questions, "
        f"median prompt {r['prompt_tokens_p50']} tokens"
    )
    lines = [
        ("tokens/s", r["tokens_per_s"], r["bare_tokens_per_s"], f"ratio {r['tokens_per_s_ratio']}"),
        ("first token p50 ms", r["ttft_p50_ms"], r["bare_ttft_p50_ms"], ""),
        (
            "first token p95 ms",
            r["ttft_p95_ms"],
            r["bare_ttft_p95_ms"],
            f"added p95 {r['added_ttft_p95_ms']} ms",
        ),
        (
            "cold -> follow-up ms",
            f"{r['cold_ttft_ms']} -> {r['follow_up_ttft_ms']}",
            f"{r['bare_cold_ttft_ms']} -> {r['bare_follow_up_ttft_ms']}",
            f"speedup {r['prefix_ttft_speedup']}x (bare {r['bare_prefix_ttft_speedup']}x)",
        ),
    ]
    out.write(f"{'':22}{'appliance':>16}{'bare':>16}")
    for label, ours, theirs, note in lines:
        out.write(f"{label:22}{ours!s:>16}{theirs!s:>16}   {note}")
    if options.get("json"):
        out.write(json.dumps(result))
