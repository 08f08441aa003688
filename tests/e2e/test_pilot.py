"""The pilot workbench on real parts: a golden set over real documents, runs answered by the
real answer worker with the small real model, measures, a comparison whose gate catches a
deliberately worse configuration, and the whole flow in a real browser."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from appliance.audit.models import Action, AuditEvent
from inference.models import Question
from inference.pilot import actions, goldens, workbench
from inference.pilot.models import Run, RunStatus
from ingest import actions as ingest_actions
from ingest.models import Document
from tests.conftest import DOCUMENTS, PASSWORD
from tests.support.browser import SCREENSHOTS
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services]

GOLDEN = """question,expected_answer,expected_sources,answerable,tags
How many bottles of water were delivered?,"20,000 bottles of water",fake-memo.pdf#p1,true,memo
How many trucks were used for the delivery?,3 trucks,fake-memo.pdf,true,memo
Who supervises standing trustees?,The United States Trustee,handbook-1p.docx,true,handbook
What is the capital of Mongolia?,,,false,outside
,an empty question,,true,
=HYPERLINK("x"),a formula,,true,
Which budget does Finance keep?,,finance-secrets.txt,true,
"""


@pytest.fixture
def library(people: Any, live_db: Any, stack: Any) -> Any:
    collection = ingest_actions.create_collection(people.carol, "HR policies", people.hr)
    for name in ("pdf/fake-memo.pdf", "handbook-1p.docx"):
        with open(DOCUMENTS / name, "rb") as handle:
            ingest_actions.upload_documents(
                people.carol, collection, [ingest_actions.IncomingFile(Path(name).name, handle)]
            )
    finance = ingest_actions.create_collection(people.carol, "Budgets", people.finance)
    ingest_actions.upload_documents(
        None,
        finance,
        [ingest_actions.IncomingFile("finance-secrets.txt", io.BytesIO(b"The budget is 9 EUR."))],
    )
    wait_for(
        lambda: not Document.objects.exclude(status="ready").exists(),
        timeout=180,
        message="documents to be ready",
    )
    return collection


def _wait_done(run: Run) -> Run:
    wait_for(
        lambda: Run.objects.get(pk=run.pk).is_final, timeout=600, message=f"run {run.pk} to end"
    )
    run.refresh_from_db()
    assert run.status == RunStatus.DONE, run.error
    return run


def test_two_runs_are_measured_and_the_gate_catches_the_worse_one(
    people: Any, library: Any
) -> None:
    parsed = goldens.parse_file("golden.csv", GOLDEN.encode())
    rows, errors = workbench.usable_rows(parsed, people.carol)
    # Bad rows fail alone, each with its reason; carol cannot read Finance's document, and
    # is told so exactly as if it did not exist.
    messages = [str(e) for e in errors]
    assert len(rows) == 4, messages
    assert any("question is empty" in m for m in messages)
    assert any("formula" in m for m in messages)
    assert any("no document called “finance-secrets.txt”" in m for m in messages)
    version = actions.create_golden_set(people.carol, "HR pilot", people.hr, rows)

    good = actions.save_configuration(
        people.carol, "small model, hybrid", model="smollm2-135m", top_k=6, max_answer_tokens=96
    )
    worse = actions.save_configuration(
        people.carol,
        "small model, dense top 1, two tokens",
        model="smollm2-135m",
        retrieval_mode="dense",
        top_k=1,
        max_answer_tokens=2,
    )
    questions_before = Question.objects.count()
    first = _wait_done(actions.start_run(people.carol, version, good, people.alice, judge=good))
    second = _wait_done(actions.start_run(people.carol, version, worse, people.alice))
    as_bob = _wait_done(actions.start_run(None, version, good, people.bob))

    measures = first.measures
    for key in ("recall_at_10", "ndcg_at_10", "mrr", "answer_f1", "refusal_accuracy"):
        assert measures[key] is not None, key
    assert measures["questions"] == 4
    assert measures["recall_at_10"] == 1.0
    assert measures["refusal_accuracy"] == 1.0  # Mongolia is in no document
    assert measures["ttft_p95_ms"] and measures["cost_per_1000_questions"]
    assert set(measures["by_language"]) == {"en"}
    assert first.answers.exclude(judge_output="").exists()  # the judge's output is kept
    # Access is part of what is measured: bob reads none of HR's documents, so for him
    # every question is one to refuse, and he is refused.
    assert as_bob.answers.filter(in_scope=False).count() == 3
    assert as_bob.measures["recall_at_10"] is None
    assert as_bob.measures["false_refusal_rate"] is None
    assert as_bob.measures["refusal_accuracy"] == 1.0
    # Runs are not anyone's questions, and every run is audited.
    assert Question.objects.count() == questions_before
    assert AuditEvent.objects.filter(action=Action.PILOT_RUN_START).count() == 3
    assert AuditEvent.objects.filter(action=Action.PILOT_RUN_END).count() == 3

    # The floor sweep, from retrieval alone: as alice the three answerable questions are
    # kept at the lowest floor, and the unanswerable one is refused at some floor.
    out = io.StringIO()
    call_command(
        "pilot",
        "floor",
        "--golden-set",
        str(version.pk),
        "--config",
        good.name,
        "--as",
        "alice",
        "--json",
        stdout=out,
    )
    sweep = json.loads(out.getvalue())
    assert sweep["floors"][0]["false_refusals"] == 0 and sweep["floors"][0]["answerable"] == 3
    assert sweep["floors"][-1]["right_refusals"] == sweep["floors"][-1]["unanswerable"] == 1
    assert sweep["suggested_floor"] is not None

    out = io.StringIO()
    call_command("pilot", "compare", str(first.pk), str(first.pk), "--json", stdout=out)
    assert json.loads(out.getvalue())["gate_failures"] == []
    with pytest.raises(CommandError, match="Worse than the baseline"):
        call_command(
            "pilot",
            "compare",
            str(first.pk),
            str(second.pk),
            "--fail-if-worse",
            "answer_f1=0.0",
            stdout=io.StringIO(),
        )


@pytest.mark.browser
def test_a_curator_runs_and_compares_a_pilot_in_the_browser(
    people: Any,
    library: Any,
    page: Any,
    tmp_path: Path,
) -> None:
    actions.save_configuration(None, "hybrid top 6", model="smollm2-135m", top_k=6)
    actions.save_configuration(
        None, "dense top 1", model="smollm2-135m", retrieval_mode="dense", top_k=1
    )
    golden = tmp_path / "golden.csv"
    golden.write_text(GOLDEN)

    page.goto("/login/")
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.goto("/pilot/")
    page.fill("#gs-name", "HR pilot")
    page.set_input_files("#gs-file", str(golden))
    page.click("#golden-sets button[type=submit]")
    page.wait_for_selector("text=question is empty")  # the bad rows, each with its reason
    assert "Saved HR pilot v1 with 4 questions" in page.content()

    run_ids = []
    for name in ("hybrid top 6", "dense top 1"):
        page.goto("/pilot/")
        page.select_option("#r-config", label=name)
        page.select_option("#r-as", label="alice")
        page.click("#start-run button[type=submit]")
        page.wait_for_selector("#run-progress progress")
        run_ids.append(int(page.url.rstrip("/").split("/")[-1]))
    # The page follows the run and shows the measures once it ends.
    page.wait_for_selector("#measures", timeout=600_000)
    for run_id in run_ids:
        _wait_done(Run.objects.get(pk=run_id))

    page.goto("/pilot/")
    for run_id in run_ids:
        page.check(f"input[name=runs][value='{run_id}']")
    page.click("#runs button[type=submit]")
    page.wait_for_selector("#comparison")
    assert page.locator(".plots svg").count() == 3
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "pilot-compare-desktop.png"), full_page=True)
    with page.expect_download() as download:
        page.click("text=Download the report (HTML)")
    report = Path(download.value.path()).read_text()
    assert "<svg" in report and "http://" not in report.replace("http://www.w3.org", "")
