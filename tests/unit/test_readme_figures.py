"""The README's pilot table shows figures from records, never typed by hand: every cell
must equal the "all" column of the same measure in the record its row links to."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = {  # README column -> the measure's label in a record
    "questions": "Questions",
    "recall@10": "Recall@10",
    "nDCG@10": "nDCG@10",
    "answer F1": "Answer F1",
    "refusal accuracy": "Refusal accuracy",
    "cost per 1,000": "Cost per 1,000 questions",
}


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def pilot_table() -> tuple[list[str], list[list[str]]]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| golden set |"))
    header = cells(lines[start])
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return header, rows


def record_figures(path: Path) -> dict[str, str]:
    figures = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("| measure"):
            row = cells(line)
            if len(row) >= 2:
                figures[row[0]] = row[1]
    return figures


def test_every_pilot_figure_in_the_readme_is_its_records() -> None:
    header, rows = pilot_table()
    assert rows, "the README has no pilot table"
    for row in rows:
        link = re.search(r"\((docs/benchmarks/[^)]+\.md)\)", row[-1])
        assert link, f"no record linked in {row}"
        figures = record_figures(ROOT / link.group(1))
        for column, label in COLUMNS.items():
            shown = row[header.index(column)]
            assert shown == figures[label], (
                f"{row[0]}: {column} is {shown}, record says {figures[label]}"
            )


CROSS_LINGUAL_RECORD = ROOT / "docs/benchmarks/2026-12-03-retrieval-xquad-cross-lingual.md"


def test_the_readme_cross_lingual_table_is_its_records_hybrid_rows() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| XQuAD, 300 questions"))
    header = cells(lines[start])
    models = ["all-MiniLM-L6-v2", header[2]]
    recorded = {}
    for line in CROSS_LINGUAL_RECORD.read_text(encoding="utf-8").splitlines():
        row = cells(line) if line.startswith("| ") else []
        if len(row) >= 5 and row[2] == "hybrid":
            recorded[(row[0], row[1])] = f"{row[3]} / {row[4]}"
    rows = 0
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        condition, *shown = cells(line)
        for model, figures in zip(models, shown, strict=True):
            assert figures == recorded[(model, condition)], (model, condition)
        rows += 1
    assert rows == 3
