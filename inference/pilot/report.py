"""A comparison as files to keep: one self-contained HTML report, and CSV or JSON rows of
every question in every run.

The HTML has its CSS and SVG plots inline and no script and no external reference at
all, so it opens the same on a laptop without network and cannot call anywhere. Every
text that came from a person or a model (questions, answers, names) is escaped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from inference.pilot import plots
from inference.pilot.compare import Comparison
from inference.pilot.measures import MEASURES, QUESTION_MEASURES, cost_breakdown

# Measures shown per language and per tag: the ones a group changes (not speed or cost).
GROUP_MEASURES = ("questions", *QUESTION_MEASURES)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
margin:2rem auto;max-width:72rem;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;width:100%}
th,td{border-bottom:1px solid #e4e4e4;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.def{color:#555;font-size:.85em}.better{background:#e3f4e8}.worse{background:#fbe4e2}
.badge{display:inline-block;padding:0 .4em;border-radius:.3em;font-size:.8em}
.answer{white-space:pre-wrap;max-width:30rem}.muted{color:#777}
figure{margin:1rem 0}svg{max-width:100%;height:auto}
"""


def _text(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _format(value: Any, unit: str, currency: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit in ("tokens", "tokens/s"):
        return f"{value:,.1f}"
    if unit == "currency":
        # Cents for sums a person reads as money; four digits for fractions of a cent.
        amount = f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"
        return f"{amount} {currency}".strip()
    if unit == "questions":
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _signed(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("ms", "tokens", "tokens/s", "questions") or abs(value) >= 1:
        return f"{value:+,.1f}" if unit != "currency" else f"{value:+,.2f}"
    return f"{value:+.4g}"


def _direction(name: str, interval: tuple[float, float] | None) -> str:
    """CSS class of a difference whose interval excludes zero: better or worse."""
    if not interval or interval[0] <= 0 <= interval[1]:
        return ""
    up = interval[0] > 0
    return "better" if up == MEASURES[name].higher_is_better else "worse"


def _inline_svg(svg: str) -> str:
    # Drop the XML prologue and DOCTYPE (not allowed inside HTML) and the RDF metadata.
    start = svg.find("<svg")
    return re.sub(r"<metadata>.*?</metadata>", "", svg[start:], flags=re.DOTALL)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table from already escaped cells."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


# --- sections -----------------------------------------------------------------------------


def _measures_section(comparison: Comparison) -> str:
    runs = comparison.runs
    head = ["Measure", *(_text(r) for r in runs)]
    head += [f"{_text(r)} &minus; {_text(runs[0])} (95% interval)" for r in runs[1:]]
    rows = []
    for row in comparison.rows:
        measure = MEASURES[row.name]
        cells = [
            f"<td><strong>{_text(measure.label)}</strong><br>"
            f'<span class="def">{_text(measure.definition)}</span></td>'
        ]
        for summary, value in zip(comparison.summaries, row.values, strict=True):
            currency = summary.get("currency", "")
            cells.append(f'<td class="num">{_text(_format(value, measure.unit, currency))}</td>')
        for diff, interval, note in zip(
            row.differences, row.intervals, row.notes or [""] * len(row.differences), strict=True
        ):
            if note:
                cells.append(f'<td class="num">n/a<br><span class=def>{_text(note)}</span></td>')
                continue
            ci = (
                f"<br><span class=def>{_signed(interval[0], measure.unit)} to "
                f"{_signed(interval[1], measure.unit)}</span>"
                if interval
                else ""
            )
            css = _direction(row.name, interval)
            cells.append(f'<td class="num {css}">{_signed(diff, measure.unit)}{ci}</td>')
        rows.append(cells)
    return "<h2>Measures</h2>" + _table(head, rows)


def _groups_section(comparison: Comparison, key: str, title: str, what: str) -> str:
    groups = sorted({g for s in comparison.summaries for g in s.get(key, {})})
    if not groups:
        return ""
    head = [what, "Measure", *(_text(r) for r in comparison.runs)]
    rows = []
    for group in groups:
        for name in GROUP_MEASURES:
            values = [s.get(key, {}).get(group, {}).get(name) for s in comparison.summaries]
            if all(v is None for v in values):
                continue
            unit = MEASURES[name].unit
            rows.append(
                [
                    f"<td>{_text(group)}</td>",
                    f"<td>{_text(MEASURES[name].label)}</td>",
                    *(f'<td class="num">{_text(_format(v, unit))}</td>' for v in values),
                ]
            )
    return f"<h2>{title}</h2>" + _table(head, rows)


def _plots_section(comparison: Comparison) -> str:
    named = list(zip(comparison.runs, comparison.summaries, strict=True))
    # Quality is the judge where every run has one, else F1, else recall.
    quality = next(
        (
            m
            for m in ("judge_score", "answer_f1", "recall_at_10")
            if all(s.get(m) is not None for s in comparison.summaries)
        ),
        "answer_f1",
    )
    figures = [
        plots.quality_vs_cost(named, quality),
        plots.latency_distribution(list(zip(comparison.runs, comparison.records, strict=True))),
        plots.per_language_bars(named, quality),
    ]
    inline = "".join(f"<figure>{_inline_svg(svg)}</figure>" for svg in figures)
    return "<h2>Plots</h2>" + inline


_VERDICT_ORDER = {"worse": 0, "better": 1, "same": 2}


def _question_cell(entry: Mapping[str, Any]) -> str:
    facts = []
    for key, label in (("answer_f1", "F1"), ("judge_score", "judge"), ("recall_at_10", "R@10")):
        if entry.get(key) is not None:
            facts.append(f"{label} {entry[key]:.2f}")
    if entry.get("refused"):
        facts.append("refused")
    if entry.get("error"):
        facts.append("error: " + str(entry["error"]))
    verdict = entry.get("verdict")
    badge = (
        f'<span class="badge {verdict}">{_text(verdict)} ({_text(entry.get("basis"))})</span> '
        if verdict
        else ""
    )
    return (
        f'<td class="{verdict or ""}">{badge}<div class="answer">{_text(entry["answer"])}</div>'
        f'<span class="muted">{_text(", ".join(facts))}</span></td>'
    )


def _questions_section(comparison: Comparison) -> str:
    runs = comparison.runs
    counts = []
    for index, run in enumerate(runs[1:], start=1):
        tally = {v: 0 for v in _VERDICT_ORDER}
        for question in comparison.per_question:
            tally[question["runs"][index]["verdict"]] += 1
        counts.append(
            f"<li>{_text(run)}: {tally['better']} better, {tally['worse']} worse, "
            f"{tally['same']} the same as {_text(runs[0])}</li>"
        )

    def order(question: Mapping[str, Any]) -> int:
        return min(_VERDICT_ORDER[e["verdict"]] for e in question["runs"][1:])

    rows = []
    for question in sorted(comparison.per_question, key=order):
        expected = question["expected_answer"] or (
            "(unanswerable)" if not question["answerable"] else ""
        )
        rows.append(
            [
                f"<td>{_text(question['question'])}<br><span class=def>expected: "
                f"{_text(expected) or 'n/a'} &middot; {_text(question['language'] or '?')}"
                "</span></td>",
                *(_question_cell(entry) for entry in question["runs"]),
            ]
        )
    intro = (
        "<p>A verdict compares each question with the baseline by the judge's grade where "
        "both runs have one, else answer F1, else whether refusing was right, else "
        "recall@10. Worse questions come first.</p>"
    )
    return (
        "<h2>Question by question</h2>"
        + intro
        + f"<ul>{''.join(counts)}</ul>"
        + _table(["Question", *(_text(r) for r in runs)], rows)
    )


def _meta_rows(meta: Mapping[str, Any], prefix: str = "") -> list[list[str]]:
    rows = []
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += _meta_rows(value, prefix=f"{name}.")
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
            rows.append([f"<td>{_text(name)}</td>", f"<td>{_text(shown)}</td>"])
    return rows


def _configurations_section(comparison: Comparison, runs_meta: Sequence[Mapping[str, Any]]) -> str:
    parts = ["<h2>Configurations</h2>"]
    for index, run in enumerate(comparison.runs):
        meta = runs_meta[index] if index < len(runs_meta) else {}
        parts.append(f"<h3>{_text(run)}{' (baseline)' if index == 0 else ''}</h3>")
        rows = _meta_rows(meta)
        cost = comparison.costs[index] if index < len(comparison.costs) else None
        breakdown = cost_breakdown(cost, comparison.records[index]) if cost is not None else None
        if breakdown:
            rows += _meta_rows(
                {k: v for k, v in breakdown.items() if k != "parameters"}, "cost per 1,000: "
            )
            rows += _meta_rows(breakdown["parameters"], "cost model: ")
        parts.append(_table(["Setting", "Value"], rows) if rows else "<p>No details.</p>")
    return "".join(parts)


def html_report(comparison: Comparison, runs_meta: Sequence[Mapping[str, Any]]) -> str:
    """The comparison as one self-contained HTML page.

    ``runs_meta`` holds one mapping per run, in the comparison's order: whatever should be
    on record (run id, golden set version, the person the run answered as, the
    configuration snapshot, dates). Nested mappings are shown as dotted keys.
    """
    runs = comparison.runs
    title = f"Pilot comparison: {' vs '.join(runs)}"
    left_out = {r: n for r, n in comparison.unpaired.items() if n}
    unpaired = (
        " Left out because not every run answered them: "
        + ", ".join(f"{_text(r)} {n}" for r, n in left_out.items())
        + "."
        if left_out
        else ""
    )
    intro = (
        f"<p>Baseline: <strong>{_text(runs[0])}</strong>. Compared with it: "
        f"{_text(', '.join(runs[1:]))}. {len(comparison.question_ids)} questions answered by "
        f"every run.{unpaired} Differences are run minus baseline; the interval is a paired "
        f"bootstrap 95% interval over {comparison.resamples} resamples of the questions. A "
        "green or red difference is one whose interval excludes zero.</p>"
    )
    body = "".join(
        (
            f"<h1>{_text(title)}</h1>",
            intro,
            _measures_section(comparison),
            _plots_section(comparison),
            _groups_section(comparison, "by_language", "By question language", "Language"),
            _groups_section(comparison, "by_tag", "By tag", "Tag"),
            _questions_section(comparison),
            _configurations_section(comparison, runs_meta),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


# --- rows of every question ---------------------------------------------------------------

CSV_COLUMNS = (
    "question_id",
    "run",
    "question",
    "language",
    "tags",
    "answerable",
    "expected_answer",
    "answer",
    "refused",
    "error",
    "verdict",
    "basis",
    *QUESTION_MEASURES,
    "ttft_ms",
    "total_ms",
)

# A spreadsheet runs a cell starting with one of these as a formula (or, with tab and
# carriage return, may shift it into one); a leading apostrophe makes it plain text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        value = "; ".join(map(str, value))
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _question_rows(comparison: Comparison) -> Iterable[dict[str, Any]]:
    for question in comparison.per_question:
        for entry in question["runs"]:
            yield {
                "question_id": question["id"],
                "question": question["question"],
                "language": question["language"],
                "tags": question["tags"],
                "answerable": question["answerable"],
                "expected_answer": question["expected_answer"],
                **{key: entry.get(key) for key in CSV_COLUMNS if key in entry},
            }


def questions_csv(comparison: Comparison) -> str:
    """Every paired question in every run, one row each, safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in _question_rows(comparison):
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return buffer.getvalue()


def questions_json(comparison: Comparison) -> str:
    """Every paired question with each run's answer, scores and verdict, as JSON."""
    payload = {
        "runs": comparison.runs,
        "baseline": comparison.runs[0],
        "questions": comparison.per_question,
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)
