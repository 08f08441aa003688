"""Two or more runs side by side: each measure's difference with a bootstrap 95% interval,
which questions got better or worse, and the gate that fails a change making answers worse.

Runs are paired by golden question id: only questions every run answered are compared,
so a run cut short by a cancel is compared on what it did answer. The first run is the
baseline; every difference is "run minus baseline".

The confidence interval is a paired percentile bootstrap: draw the question ids with
replacement, recompute the measure for both runs on the same draw, and take the 2.5th
and 97.5th percentiles of the differences. Pairing matters: the same question is hard
for both runs, so the interval is far narrower than comparing two independent means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inference.pilot.measures import (
    MEASURES,
    QUESTION_MEASURES,
    cost_parameters,
    cost_parts,
    generation_seconds,
    question_scores,
    score,
)

Record = Mapping[str, Any]

# A difference this small is rounding, not a change.
_EPSILON = 1e-9
# Resampled values held at once (resamples x questions), to bound memory on big sets.
_BLOCK_CELLS = 2_000_000


@dataclass
class MeasureRow:
    name: str
    values: list[float | None]  # one per run; the first is the baseline
    differences: list[float | None]  # one per run after the first: run minus baseline
    intervals: list[tuple[float, float] | None]  # bootstrap 95% interval of each difference
    # Why a run after the first has no difference although both values exist, or "".
    notes: list[str] = field(default_factory=list)

    @property
    def measure(self) -> Any:
        return MEASURES[self.name]


@dataclass
class Comparison:
    runs: list[str]
    question_ids: list[Any]
    rows: list[MeasureRow]
    # score() of each run over the paired questions only, with by_language and by_tag.
    summaries: list[dict[str, Any]]
    per_question: list[dict[str, Any]]
    records: list[list[dict[str, Any]]]  # each run's paired records, in question order
    unpaired: dict[str, int] = field(default_factory=dict)  # run -> records left out
    costs: list[Record | None] = field(default_factory=list)  # each run's cost model
    resamples: int = 0

    def row(self, name: str) -> MeasureRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"The comparison has no measure {name!r}.")

    def as_dict(self) -> dict[str, Any]:
        """Everything but the raw records, ready for json.dumps."""
        rows = []
        for row in self.rows:
            measure = MEASURES[row.name]
            rows.append(
                asdict(row)
                | {
                    "label": measure.label,
                    "unit": measure.unit,
                    "higher_is_better": measure.higher_is_better,
                    "intervals": [list(i) if i else None for i in row.intervals],
                }
            )
        return {
            "runs": self.runs,
            "questions": len(self.question_ids),
            "unpaired": self.unpaired,
            "resamples": self.resamples,
            "costs": [dict(c) if c is not None else None for c in self.costs],
            "measures": rows,
            "summaries": self.summaries,
            "per_question": self.per_question,
        }


# --- pairing ------------------------------------------------------------------------------


def _pair(runs: Sequence[tuple[str, Sequence[Record]]]) -> tuple[list[Any], list[list[dict]]]:
    by_id = [{r["id"]: dict(r) for r in records} for _, records in runs]
    shared = set(by_id[0]).intersection(*by_id[1:]) if by_id else set()
    # Keep the baseline's order, which is the golden set's.
    ids = [r["id"] for r in runs[0][1] if r["id"] in shared] if runs else []
    ids = list(dict.fromkeys(ids))
    return ids, [[records[i] for i in ids] for records in by_id]


# --- per-question columns and statistics for the bootstrap --------------------------------


def _columns(records: Sequence[Record]) -> dict[str, np.ndarray]:
    """Per-question numbers as arrays, NaN where unknown or not applicable."""

    def column(values: list[Any]) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)

    scores = [question_scores(r) for r in records]
    cols = {name: column([s[name] for s in scores]) for name in QUESTION_MEASURES}
    cols["ttft"] = column([r.get("ttft_ms") for r in records])
    cols["total"] = column([r.get("total_ms") for r in records])
    cols["generation_s"] = column([generation_seconds(r) for r in records])
    cols["prompt_tokens"] = column([r.get("prompt_tokens") or 0 for r in records])
    cols["output_tokens"] = column([r.get("output_tokens") or 0 for r in records])
    return cols


def _mean(values: np.ndarray, draws: np.ndarray) -> np.ndarray:
    sample = values[draws]
    known = ~np.isnan(sample)
    counts = known.sum(axis=1)
    sums = np.where(known, sample, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _nearest_rank(values: np.ndarray, draws: np.ndarray, p: int) -> np.ndarray:
    ordered = np.sort(values[draws], axis=1)  # NaN sorts last
    counts = (~np.isnan(ordered)).sum(axis=1)
    rank = np.clip(-(-p * counts // 100), 1, ordered.shape[1])
    picked = np.take_along_axis(ordered, (rank - 1)[:, None], axis=1)[:, 0]
    return np.where(counts > 0, picked, np.nan)


def _tokens_per_s(cols: dict[str, np.ndarray], draws: np.ndarray) -> np.ndarray:
    seconds = cols["generation_s"][draws]
    known = ~np.isnan(seconds)
    tokens = np.where(known, cols["output_tokens"][draws], 0.0).sum(axis=1)
    spent = np.where(known, seconds, 0.0).sum(axis=1)
    return np.where(spent > 0, tokens / np.where(spent > 0, spent, 1.0), np.nan)


def _cost(cols: dict[str, np.ndarray], draws: np.ndarray, cost: Record | None) -> np.ndarray:
    if cost is None:
        return np.full(draws.shape[0], np.nan)
    parts = cost_parts(
        cost_parameters(cost),
        mean_total_s=_mean(cols["total"], draws) / 1000,  # NaN (no timing) stays NaN
        mean_prompt=_mean(cols["prompt_tokens"], draws),
        mean_output=_mean(cols["output_tokens"], draws),
    )
    return np.asarray(parts["total"], dtype=float) * np.ones(draws.shape[0])


Statistic = Callable[[dict[str, np.ndarray], np.ndarray, "Record | None"], np.ndarray]


def _statistic(name: str) -> Statistic:
    """How one measure is computed from the columns on a batch of draws (rows of ids)."""
    if name in QUESTION_MEASURES:
        return lambda cols, draws, cost: _mean(cols[name], draws)
    if name == "questions":
        return lambda cols, draws, cost: np.full(draws.shape[0], float(draws.shape[1]))
    if name.endswith(("_p50_ms", "_p95_ms")):
        column, p = name.split("_")[0], int(name.split("_")[1][1:])
        return lambda cols, draws, cost: _nearest_rank(cols[column], draws, p)
    if name == "tokens_per_s":
        return lambda cols, draws, cost: _tokens_per_s(cols, draws)
    if name in ("prompt_tokens", "output_tokens"):
        return lambda cols, draws, cost: _mean(cols[name], draws)
    if name == "cost_per_1000_questions":
        return _cost
    raise KeyError(name)


# --- the comparison -----------------------------------------------------------------------


def _value(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)


def _intervals(
    names: Sequence[str],
    columns: Sequence[dict[str, np.ndarray]],
    costs: Sequence[Record | None],
    resamples: int,
    seed: int,
) -> dict[str, list[tuple[float, float] | None]]:
    n = len(next(iter(columns[0].values())))
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[list[np.ndarray]]] = {m: [[] for _ in columns[1:]] for m in names}
    block = max(1, min(resamples, _BLOCK_CELLS // max(n, 1)))
    for start in range(0, resamples, block):
        # The same draws for every run and measure: that is what makes the test paired.
        draws = rng.integers(0, n, size=(min(block, resamples - start), n))
        for name in names:
            stat = _statistic(name)
            base = stat(columns[0], draws, costs[0])
            for i, (cols, cost) in enumerate(zip(columns[1:], costs[1:], strict=True)):
                diffs[name][i].append(stat(cols, draws, cost) - base)
    result: dict[str, list[tuple[float, float] | None]] = {}
    for name in names:
        result[name] = []
        for parts in diffs[name]:
            sample = np.concatenate(parts) if parts else np.array([])
            sample = sample[~np.isnan(sample)]
            if name == "questions" or sample.size == 0:
                result[name].append(None)
                continue
            low, high = np.percentile(sample, [2.5, 97.5])
            result[name].append((round(float(low), 4), round(float(high), 4)))
    return result


def compare(
    runs: Sequence[tuple[str, Sequence[Record]]],
    *,
    measures: Sequence[str] | None = None,
    costs: Sequence[Record | None] | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare runs (name, records) on the questions they all answered; the first is the
    baseline. ``costs`` gives each run's cost model (aligned with ``runs``; None for none),
    without which the cost measure is empty. Deterministic for a given ``seed``."""
    if len(runs) < 2:
        raise ValueError("A comparison needs at least two runs.")
    names = list(measures or MEASURES)
    unknown = [m for m in names if m not in MEASURES]
    if unknown:
        raise ValueError(f"Unknown measure(s): {', '.join(unknown)}.")
    costs = list(costs) if costs is not None else [None] * len(runs)
    if len(costs) != len(runs):
        raise ValueError("Give one cost model (or None) per run.")
    ids, paired = _pair(runs)
    columns = [_columns(records) for records in paired]
    whole = np.arange(len(ids))[None, :]
    rows = []
    intervals = (
        _intervals(names, columns, costs, resamples, seed)
        if ids and resamples > 0
        else {m: [None] * (len(runs) - 1) for m in names}
    )
    currencies = [cost_parameters(c).get("currency", "") if c is not None else "" for c in costs]
    for name in names:
        stat = _statistic(name)
        points = [
            stat(c, whole, cost)[0] if ids else np.nan
            for c, cost in zip(columns, costs, strict=True)
        ]
        row = MeasureRow(
            name=name,
            values=[_value(p) for p in points],
            differences=[_value(p - points[0]) for p in points[1:]],
            intervals=intervals[name],
            notes=[""] * (len(runs) - 1),
        )
        if name == "cost_per_1000_questions":
            _drop_unconverted(row, currencies)
        rows.append(row)
    return Comparison(
        runs=[name for name, _ in runs],
        question_ids=ids,
        rows=rows,
        summaries=[score(records, cost=cost) for records, cost in zip(paired, costs, strict=True)],
        per_question=_per_question(ids, [name for name, _ in runs], paired),
        records=paired,
        unpaired={name: len(records) - len(ids) for name, records in runs},
        resamples=resamples if ids else 0,
        costs=costs,
    )


def _drop_unconverted(row: MeasureRow, currencies: Sequence[str]) -> None:
    """No cost difference between currencies: converting is the team's call, not ours."""
    for i, currency in enumerate(currencies[1:]):
        if currency != currencies[0] and None not in (row.values[0], row.values[i + 1]):
            row.differences[i], row.intervals[i] = None, None
            row.notes[i] = f"different currencies ({currencies[0]} and {currency})"


# --- question by question -----------------------------------------------------------------


def _primary(
    record: Record, base: dict[str, Any], other: dict[str, Any], base_refused: bool, refused: bool
) -> tuple[str, float | None, float | None]:
    """Which per-question score decides better/worse, and its baseline and run values.

    The judge when both have a grade, else answer F1, else whether the refusal was right
    (on unanswerable questions, or when only one run refused), else recall@10.
    """
    for basis, key in (("judge", "judge_score"), ("F1", "answer_f1")):
        if base[key] is not None and other[key] is not None:
            return basis, base[key], other[key]
    answerable = bool(record.get("answerable", True))
    if not answerable or base_refused != refused:
        return "refusal", float(base_refused != answerable), float(refused != answerable)
    if base["recall_at_10"] is not None and other["recall_at_10"] is not None:
        return "recall@10", base["recall_at_10"], other["recall_at_10"]
    return "none", None, None


def _verdict(before: float | None, after: float | None) -> str:
    if before is None or after is None or abs(after - before) <= _EPSILON:
        return "same"
    return "better" if after > before else "worse"


def _per_question(
    ids: Sequence[Any], names: Sequence[str], paired: Sequence[Sequence[dict]]
) -> list[dict[str, Any]]:
    rows = []
    for position, question_id in enumerate(ids):
        records = [run[position] for run in paired]
        first = records[0]
        scores = [question_scores(r) for r in records]
        entries = []
        for name, record, own in zip(names, records, scores, strict=True):
            entry = {
                "run": name,
                "answer": record.get("answer") or "",
                "refused": bool(record.get("refused")),
                "error": record.get("error") or "",
                **{key: None if v is None else round(v, 4) for key, v in own.items()},
                "ttft_ms": record.get("ttft_ms"),
                "total_ms": record.get("total_ms"),
                "verdict": None,
                "basis": None,
            }
            if record is not first:
                basis, before, after = _primary(
                    first, scores[0], own, bool(first.get("refused")), bool(record.get("refused"))
                )
                entry.update(verdict=_verdict(before, after), basis=basis)
            entries.append(entry)
        rows.append(
            {
                "id": question_id,
                "question": first.get("question") or "",
                "language": first.get("language") or "",
                "tags": list(first.get("tags") or []),
                "answerable": bool(first.get("answerable", True)),
                "expected_answer": first.get("expected_answer") or "",
                "runs": entries,
            }
        )
    return rows


# --- the gate -----------------------------------------------------------------------------


def parse_tolerances(items: Sequence[str]) -> dict[str, float]:
    """``["answer_f1=0.02", "ttft_p95_ms=500"]`` -> {"answer_f1": 0.02, "ttft_p95_ms": 500.0}."""
    tolerances = {}
    for item in items:
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or name not in MEASURES:
            raise ValueError(
                f"{item!r} is not measure=tolerance with a known measure ({', '.join(MEASURES)})."
            )
        try:
            tolerances[name] = float(number)
        except ValueError:
            raise ValueError(f"The tolerance in {item!r} is not a number.") from None
        if tolerances[name] < 0:
            raise ValueError(f"The tolerance in {item!r} is negative.")
    return tolerances


def _number(value: float, unit: str) -> str:
    return f"{value:.0f} {unit}" if unit in ("ms", "tokens") else f"{value:.4g}"


def gate(comparison: Comparison, tolerances: Mapping[str, float]) -> list[str]:
    """One sentence per measure where a run is worse than the baseline by more than its
    tolerance (absolute, in the measure's unit; direction from ``higher_is_better``).
    A measure that has no value on either side fails too: a gate that cannot be checked
    must not pass quietly. An empty list means the change passes."""
    failures = []
    for name, tolerance in tolerances.items():
        measure = MEASURES.get(name)
        if measure is None:
            raise ValueError(f"Unknown measure {name!r}.")
        row = comparison.row(name)
        base = row.values[0]
        for run, value, diff, interval, note in zip(
            comparison.runs[1:],
            row.values[1:],
            row.differences,
            row.intervals,
            row.notes or [""] * len(row.differences),
            strict=True,
        ):
            if note:
                failures.append(f"{measure.label} ({name}) cannot be compared: {note}.")
                continue
            if base is None or value is None or diff is None:
                failures.append(
                    f"{measure.label} ({name}) has no value for "
                    f"{comparison.runs[0] if base is None else run}, so the gate cannot check it."
                )
                continue
            worse_by = -diff if measure.higher_is_better else diff
            if worse_by > tolerance + _EPSILON:
                ci = f", 95% interval {interval[0]:+.4g} to {interval[1]:+.4g}" if interval else ""
                failures.append(
                    f"{measure.label} ({name}) is worse on {run}: "
                    f"{_number(value, measure.unit)} against {_number(base, measure.unit)} on "
                    f"{comparison.runs[0]} (difference {diff:+.4g}{ci}), more than the "
                    f"tolerance of {tolerance:g}."
                )
    return failures
