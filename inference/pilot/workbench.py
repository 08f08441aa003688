"""What the pilot's pages and command share: whose documents a golden set may name, the
comparison of stored runs, the shipped evaluation sets loaded as collections, and the
one-by-one baseline that ``overhead_ratio`` is measured against."""

from __future__ import annotations

import io
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from appliance.accounts.models import READER_ROLES, Department, Membership
from inference import actions as inference_actions
from inference import answering
from inference.models import Conversation, Question
from inference.pilot import actions, compare, converters, engine, goldens, runner
from inference.pilot.measures import MEASURES
from inference.pilot.models import GoldenSetVersion, Run
from ingest import actions as ingest_actions
from ingest import pipeline
from ingest.models import Collection, Document


def readable_documents(person: Any) -> dict[str, int]:
    """Lower-cased titles and file names of the documents ``person`` may read."""
    return engine.readable_names(person, None)


def usable_rows(
    parsed: goldens.ParsedGoldens, person: Any
) -> tuple[list[goldens.GoldenRow], list[goldens.RowError]]:
    """The rows to keep, and every row's problem: the file's own, and sources naming a
    document ``person`` may not read (worded as missing, whether missing or forbidden)."""
    errors = [
        *parsed.errors,
        *goldens.check_sources(parsed.rows, readable_documents(person), parsed.lines),
    ]
    bad = {error.line for error in errors}
    rows = [row for line, row in zip(parsed.lines, parsed.rows, strict=True) if line not in bad]
    return rows, sorted(errors, key=lambda error: error.line)


def home_department(person: Any) -> Department:
    membership = (
        Membership.objects.filter(user=person, role__in=READER_ROLES)
        .select_related("department")
        .order_by("department__name")
        .first()
    )
    if membership is None:
        raise ValueError(f"{person.username} reads no department's documents.")
    return membership.department


def label(run: Run) -> str:
    return f"#{run.pk} {run.configuration.name}"


def comparison(runs: list[Run]) -> compare.Comparison:
    """The runs compared on the questions they share; the first is the baseline."""
    return compare.compare(
        [(label(run), runner.records(run)) for run in runs],
        costs=[run.configuration_snapshot.get("cost") or {} for run in runs],
    )


def runs_meta(runs: list[Run]) -> list[dict[str, Any]]:
    return [
        {
            "label": label(run),
            "run_id": run.pk,
            "golden_set": str(run.golden_version),
            "as_user": run.as_user.username,
            "status": run.status,
            "configuration": run.configuration_snapshot,
            "measures": run.measures,
        }
        for run in runs
    ]


def summary_lines(result: dict[str, Any]) -> str:
    lines = [f"run {result.get('run_id')}"]
    for name, measure in MEASURES.items():
        if name in result:
            lines.append(f"  {measure.label:<34} {result[name]}")
    if result.get("overhead_ratio") is not None:
        lines.append(f"  {'overhead ratio':<34} {result['overhead_ratio']}")
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def comparison_lines(result: compare.Comparison) -> str:
    """The comparison as a plain table: each measure, each run, each difference with its
    bootstrap 95% interval."""
    names = result.runs
    lines = [f"{len(result.question_ids)} questions in every run; baseline {names[0]}"]
    for row in result.rows:
        values = "  ".join(f"{_shown(v):>10}" for v in row.values)
        changes = "  ".join(
            f"{_shown(d)} [{_shown(i[0])}, {_shown(i[1])}]" if i else _shown(d)
            for d, i in zip(row.differences, row.intervals, strict=False)
        )
        lines.append(f"  {row.measure.label:<34} {values}   {changes}")
    return "\n".join(lines)


def ask_one_by_one(version: GoldenSetVersion, person: Any, *, inline: bool) -> float:
    """Seconds to ask the version's questions one after another the way employees ask
    them (``inference.actions.ask``, answered by the answer worker, or in this process when
    ``inline``). The questions are removed again afterwards; their audit rows stay."""
    questions = list(version.questions.order_by("position"))
    asked: list[int] = []
    started = time.monotonic()
    try:
        for golden in questions:
            question = inference_actions.ask(person, golden.question)
            asked.append(question.pk)
            if inline:
                answering.answer(question.pk)
            else:
                _wait_for(question)
        return time.monotonic() - started
    finally:
        conversations = Question.objects.filter(pk__in=asked).values("conversation_id")
        Conversation.objects.filter(pk__in=conversations).delete()


def _wait_for(question: Question, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        question.refresh_from_db(fields=["status"])
        if question.is_final:
            return
        time.sleep(0.05)
    raise TimeoutError(f"question {question.pk} was not answered within {timeout:.0f} s")


def load_eval_set(
    which: str,
    corpus: Path,
    department: Department,
    *,
    limit: int,
    unanswerable: int = 50,
    progress: Callable[[str], None] = lambda _: None,
) -> GoldenSetVersion:
    """A shipped evaluation set as a collection of ``department`` (read in this process)
    and a golden set over it."""
    if which == "scifact":
        converted = converters.scifact(corpus / "scifact", limit=limit)
        language = "english"
    else:
        converted = converters.xquad(corpus / "xquad", limit=limit, unanswerable=unanswerable)
        language = "simple"  # English and German paragraphs side by side
    name = f"{which} (evaluation)"
    collection = Collection.objects.filter(department=department, name=name).first()
    if collection is None:
        collection = ingest_actions.create_collection(None, name, department, language=language)
    have = set(
        Document.objects.filter(collection=collection).values_list("original_name", flat=True)
    )
    files = [
        ingest_actions.IncomingFile(doc_name, io.BytesIO(text.encode("utf-8")))
        for doc_name, _title, text in converted.documents
        if doc_name not in have
    ]
    results = (
        ingest_actions.upload_documents(None, collection, files, enqueue=False) if files else []
    )
    for n, result in enumerate(results, start=1):
        if result.document is not None and not result.duplicate:
            pipeline.process(result.document.pk)
        if n % 50 == 0 or n == len(results):
            progress(f"read {n}/{len(results)} documents\n")
    return actions.create_golden_set(
        None, f"{which} ({len(converted.rows)} questions)", department, converted.rows, note=which
    )


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())[:60]


def _host() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load average {:.1f} {:.1f} {:.1f} when written".format(*os.getloadavg())
    return f"{os.cpu_count()} cores{', ' + model if model else ''}, {platform.platform()}{load}"


def write_record(folder: Path, run: Run, result: dict[str, Any], argv: list[str]) -> Path:
    """A dated measurement record of a run, written from the run's own figures."""
    day = timezone.now().date().isoformat()
    names = f"{_slug(run.golden_version.golden_set.name)}-{_slug(run.configuration.name)}"
    path = folder / f"{day}-pilot-{names}.md"
    by_language = result.get("by_language") or {}
    languages = sorted(by_language)
    lines = [
        f"# Pilot run: {run.golden_version} under “{run.configuration.name}”",
        "",
        f"- date: {day}; host: {_host()}",
        f"- command: `python manage.py {' '.join(argv[1:])}`",
        f"- answered as: {run.as_user.username}; judge: {run.judge.name if run.judge else 'none'}",
        f"- configuration: `{json.dumps(run.configuration_snapshot, ensure_ascii=False)}`",
        f"- relevance floor (APPLIANCE_RELEVANCE_FLOOR): {settings.RELEVANCE_FLOOR}",
        "- overhead_ratio (run time / the same questions asked one by one): "
        f"{result.get('overhead_ratio')}",
        "",
        "| measure | all | " + " | ".join(languages) + " |",
        "|---|---|" + "---|" * len(languages),
    ]
    for name, measure in MEASURES.items():
        if name not in result:
            continue
        cells = [str(by_language[lang].get(name)) for lang in languages]
        lines.append(f"| {measure.label} | {result[name]} | " + " | ".join(cells) + " |")
    lines += ["", "Definitions: docs/pilot.md and inference/pilot/measures.py.", ""]
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
