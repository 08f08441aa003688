"""Calibrating the relevance floor on a golden set, without asking the model.

The relevance floor (``APPLIANCE_RELEVANCE_FLOOR``) decides when the appliance says "I could
not find this" instead of letting the model answer from weak passages. Too low, and
questions the documents do not answer (or that only another department's documents answer)
reach the model, which a small model answers anyway; too high, and answerable questions are
refused. Whether a question is refused depends only on the best passage's similarity, so a
whole range of floors is measured from one retrieval per question: seconds, not a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from inference.pilot import engine
from inference.pilot.models import Configuration, GoldenSetVersion

DEFAULT_FLOORS = tuple(round(0.20 + 0.05 * n, 2) for n in range(9))  # 0.20 … 0.60


@dataclass(frozen=True)
class Scored:
    answerable: bool  # for this person: see engine.answerable_for
    best: float  # the best passage's similarity, 0 when nothing was found
    question: str


@dataclass(frozen=True)
class FloorRow:
    floor: float
    false_refusals: int  # answerable questions the floor would refuse
    answerable: int
    right_refusals: int  # unanswerable questions the floor would refuse
    unanswerable: int


def score(
    version: GoldenSetVersion,
    config: Configuration,
    person: Any,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[Scored]:
    """Each question's best similarity under ``config``'s retrieval, as ``person``;
    ``progress(done, total)`` after each question."""
    readable = engine.readable_names(person, None)
    questions = list(version.questions.order_by("position"))
    scored = []
    for golden in questions:
        hits = engine.find(golden, config, person, None)
        best = max((hit.score for hit in hits), default=0.0)
        scored.append(Scored(engine.answerable_for(golden, readable), best, golden.question))
        progress(len(scored), len(questions))
    return scored


def sweep(scored: list[Scored], floors: tuple[float, ...] = DEFAULT_FLOORS) -> list[FloorRow]:
    answerable = [s.best for s in scored if s.answerable]
    unanswerable = [s.best for s in scored if not s.answerable]
    return [
        FloorRow(
            floor=floor,
            false_refusals=sum(best < floor for best in answerable),
            answerable=len(answerable),
            right_refusals=sum(best < floor for best in unanswerable),
            unanswerable=len(unanswerable),
        )
        for floor in sorted(floors)
    ]


def suggest(rows: list[FloorRow]) -> float | None:
    """The highest floor that refuses no more answerable questions than the lowest one:
    every refusal it adds is a right one."""
    if not rows:
        return None
    fewest = min(row.false_refusals for row in rows)
    return max(row.floor for row in rows if row.false_refusals == fewest)


def result(
    version: GoldenSetVersion, config: Configuration, person: Any, rows: list[FloorRow]
) -> dict[str, Any]:
    return {
        "golden_set": str(version),
        "configuration": config.name,
        "as_user": person.username,
        "current_floor": settings.RELEVANCE_FLOOR,
        "suggested_floor": suggest(rows),
        "floors": [asdict(row) for row in rows],
    }


def lines(figures: dict[str, Any]) -> list[str]:
    """The sweep as a Markdown table, current and suggested floor marked."""
    out = [
        "| floor | answerable questions refused | unanswerable questions refused |",
        "|---|---|---|",
    ]
    for row in figures["floors"]:
        marks = []
        if row["floor"] == figures["current_floor"]:
            marks.append("current")
        if row["floor"] == figures["suggested_floor"]:
            marks.append("suggested")
        label = f"{row['floor']:.2f}" + (f" ({', '.join(marks)})" if marks else "")
        out.append(
            f"| {label} | {row['false_refusals']} of {row['answerable']} "
            f"| {row['right_refusals']} of {row['unanswerable']} |"
        )
    return out


def write_record(folder: Path, figures: dict[str, Any], command: str) -> Path:
    day = timezone.now().date().isoformat()
    slug = "-".join(
        "".join(c if c.isalnum() else " " for c in f"{figures['golden_set']} {figures['as_user']}")
        .lower()
        .split()
    )[:60]
    path = folder / f"{day}-relevance-floor-{slug}.md"
    text = [
        f"# Relevance floor on {figures['golden_set']}, as {figures['as_user']}",
        "",
        f"- date: {day}; configuration: {figures['configuration']}",
        f"- command: `{command}`",
        "- unanswerable: answerable = false in the golden set, or every expected source is a "
        "document the person may not read",
        "",
        *lines(figures),
        "",
        f"Suggested: {figures['suggested_floor']} (the highest floor that refuses no more "
        "answerable questions than the lowest). Set it with `APPLIANCE_RELEVANCE_FLOOR`.",
        "",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))
    return path
