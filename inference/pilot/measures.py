"""What a pilot run measures: retrieval, answers, citations, refusals, speed and cost.

Everything here works on plain per-question records (dicts, one per golden question, as
the run engine writes them), so it needs no database and is tested on hand-made records.
The fields read are: ``id``, ``language``, ``tags``, ``answerable``, ``expected_answer``,
``expected_sources`` ([{"document", "page"}]), ``answer``, ``refused``,
``answer_language``, ``out_of_scope``, ``retrieved`` and ``cited`` ([{"title", "name",
"page"}], in rank order), ``ttft_ms``, ``total_ms``, ``prompt_tokens``, ``output_tokens``,
``judge_score`` and ``error``.

A measure that does not apply to a question (recall without expected sources, refusal
accuracy on an answerable question) is ``None`` for it and is left out of the mean, so a
mean always says "over the questions where it applies".
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Measure:
    label: str
    definition: str  # shown on the page next to the figure
    higher_is_better: bool
    unit: str  # "" for shares (0..1), else "ms", "tokens", "tokens/s", "currency", "questions"


def _m(label: str, definition: str, higher: bool = True, unit: str = "") -> Measure:
    return Measure(label, definition, higher, unit)


MEASURES: dict[str, Measure] = {
    "questions": _m(
        "Questions",
        "Golden questions answered (in a comparison: the questions every run answered).",
        unit="questions",
    ),
    "recall_at_10": _m(
        "Recall@10",
        "Share of a question's expected sources found among the first 10 passages retrieved. "
        "Over questions that list expected sources.",
    ),
    "ndcg_at_10": _m(
        "nDCG@10",
        "Ranking quality of the first 10 passages: each expected source counts once, at the "
        "first rank where it appears, worth 1/log2(rank + 1), divided by the best possible "
        "total. 1 means every expected source is at the top.",
    ),
    "mrr": _m(
        "MRR",
        "1 divided by the rank of the first retrieved passage that belongs to an expected "
        "source; 0 when none is in the first 10.",
    ),
    "answer_f1": _m(
        "Answer F1",
        "Word overlap between the answer and the expected answer (harmonic mean of word "
        "precision and recall), after lowercasing and removing punctuation, articles and "
        "citation marks. A refusal scores 0. Over answerable questions with an expected answer.",
    ),
    "exact_match": _m(
        "Exact match",
        "1 when the expected answer, normalised as for F1, equals the answer or appears in "
        "it as a whole phrase and the answer is short (at most 40 words, or twice the "
        "expected answer). SQuAD's strict equality would fail nearly every generated sentence.",
    ),
    "judge_score": _m(
        "Judge score",
        "The judge configuration's grade of the answer, from 0 to 1. Its prompt and output "
        "are kept with each answer so a person can check it.",
    ),
    "citation_precision": _m(
        "Citation precision",
        "Share of the passages an answer cites that belong to an expected source. Over "
        "questions with citations and expected sources.",
    ),
    "citation_recall": _m(
        "Citation recall",
        "Share of a question's expected sources that the answer cites. Over questions with "
        "expected sources.",
    ),
    "refusal_accuracy": _m(
        "Refusal accuracy",
        "Share of unanswerable questions where the appliance said it could not find the "
        "answer in the documents. Unanswerable: answerable = false in the golden set, or "
        "every expected source is a document the run's person may not read.",
    ),
    "false_refusal_rate": _m(
        "False refusals",
        "Share of answerable questions where the appliance said it could not find the "
        "answer. Lower is better.",
        higher=False,
    ),
    "answer_language_match": _m(
        "Answer in the question's language",
        "Share of answers written in the question's language, over questions where both "
        "languages are known.",
    ),
    "ttft_p50_ms": _m(
        "Time to first token, p50",
        "Median time from sending the question to the first answer token (nearest rank).",
        higher=False,
        unit="ms",
    ),
    "ttft_p95_ms": _m(
        "Time to first token, p95",
        "95 in 100 questions got their first answer token within this time (nearest rank).",
        higher=False,
        unit="ms",
    ),
    "total_p50_ms": _m(
        "Total time, p50",
        "Median time from sending the question to the end of the answer (nearest rank).",
        higher=False,
        unit="ms",
    ),
    "total_p95_ms": _m(
        "Total time, p95",
        "95 in 100 answers were complete within this time (nearest rank).",
        higher=False,
        unit="ms",
    ),
    "tokens_per_s": _m(
        "Output tokens per second",
        "Output tokens divided by the time spent writing them (total time minus time to "
        "first token), summed over the questions where both times are known.",
        unit="tokens/s",
    ),
    "prompt_tokens": _m(
        "Prompt tokens",
        "Mean tokens sent to the model per question: instructions, passages and question.",
        higher=False,
        unit="tokens",
    ),
    "output_tokens": _m(
        "Output tokens",
        "Mean tokens the model wrote per question.",
        higher=False,
        unit="tokens",
    ),
    "cost_per_1000_questions": _m(
        "Cost per 1,000 questions",
        "Local: the hardware price spread over its amortisation months and the questions "
        "asked per month, plus energy (watts times seconds per answer times price per kWh). API: "
        "mean input and output tokens times the price list. In the cost model's currency.",
        higher=False,
        unit="currency",
    ),
}

# The measures scored question by question (the rest are computed over a whole run).
QUESTION_MEASURES = (
    "recall_at_10",
    "ndcg_at_10",
    "mrr",
    "answer_f1",
    "exact_match",
    "judge_score",
    "citation_precision",
    "citation_recall",
    "refusal_accuracy",
    "false_refusal_rate",
    "answer_language_match",
)

# --- documents ----------------------------------------------------------------------------

# A file extension: a dot, a letter, up to four more letters or digits (".pdf", ".docx",
# ".jsonl"). Requiring a letter keeps "Budget 2.1" from losing its ".1".
_EXTENSION = re.compile(r"\.[a-z][a-z0-9]{0,4}$")


def _doc_key(name: str) -> str:
    return " ".join(str(name or "").casefold().split())


def _same_document(expected: str, got: str) -> bool:
    if not expected or not got:
        return False
    # Either side may lack the extension ("policy" names "policy.pdf"), never both differ.
    return (
        expected == got
        or _EXTENSION.sub("", expected) == got
        or expected == _EXTENSION.sub("", got)
    )


def _page(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def document_matches(expected: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    """Whether a retrieved or cited passage ``got`` ({"title", "name", "page"}) belongs to
    the expected source ``expected`` ({"document", "page"}).

    The expected document equals the passage's title or file name, case-insensitively,
    also when one side lacks the file extension; when the expected page is given, the
    passage's page must be the same.
    """
    wanted = _doc_key(expected.get("document", ""))
    # "document" is how stored run answers name a passage's document; records carry
    # "title" and "name", and either may match.
    names = [_doc_key(got.get(key, "")) for key in ("title", "name", "document")]
    if not any(_same_document(wanted, name) for name in names):
        return False
    page = _page(expected.get("page"))
    return page is None or page == _page(got.get("page"))


# --- retrieval ----------------------------------------------------------------------------


def _credited_ranks(expected: Sequence[Mapping], retrieved: Sequence[Mapping]) -> list[int]:
    """The 1-based ranks at which expected sources are first found, each source once.

    A passage counts for at most one expected source (the first not yet found that it
    matches), so listing a document twice never scores above the ideal.
    """
    found: set[int] = set()
    ranks = []
    for rank, passage in enumerate(retrieved, start=1):
        for index, source in enumerate(expected):
            if index not in found and document_matches(source, passage):
                found.add(index)
                ranks.append(rank)
                break
    return ranks


def _retrieval_scores(record: Mapping[str, Any], k: int) -> tuple[float, float, float]:
    expected = record.get("expected_sources") or []
    top = (record.get("retrieved") or [])[:k]
    found = sum(1 for source in expected if any(document_matches(source, p) for p in top))
    recall = found / len(expected)
    dcg = sum(1 / math.log2(rank + 1) for rank in _credited_ranks(expected, top))
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(expected), k) + 1))
    first = next(
        (rank for rank, p in enumerate(top, 1) if any(document_matches(s, p) for s in expected)),
        None,
    )
    return recall, dcg / ideal, (1 / first if first else 0.0)


# --- answers ------------------------------------------------------------------------------

ARTICLES: dict[str, frozenset[str]] = {
    "en": frozenset({"a", "an", "the"}),
    "de": frozenset({"der", "die", "das", "ein", "eine"}),
    "no": frozenset({"en", "ei", "et", "den", "det", "de"}),
}
# For a question in another or an unknown language, every listed article is dropped.
_ALL_ARTICLES = frozenset().union(*ARTICLES.values())

# The appliance's numbered citation marks ("[1]", "[2, 3]") are not words of the answer.
_CITATION_MARK = re.compile(r"\[\s*\d+(?:\s*[,;\u2013-]\s*\d+)*\s*\]")

# Exact match accepts the expected phrase inside an answer of at most this many words (or
# twice the expected answer's), so that listing every candidate does not count as exact.
SHORT_ANSWER_WORDS = 40


def language_code(code: str | None) -> str:
    """The primary language of an ISO code ("en-GB" -> "en"); Norwegian nb/nn -> "no"."""
    primary = re.split(r"[-_]", (code or "").strip().lower())[0]
    return "no" if primary in ("nb", "nn") else primary


def normalise_answer(text: str, language: str = "") -> list[str]:
    """Lowercase, drop citation marks, punctuation, symbols and articles; split on space."""
    text = _CITATION_MARK.sub(" ", text or "").casefold()
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    articles = ARTICLES.get(language_code(language), _ALL_ARTICLES)
    return [word for word in kept.split() if word not in articles]


def token_f1(expected: Sequence[str], answer: Sequence[str]) -> float:
    if not expected or not answer:
        return float(expected == answer)  # both empty: agree; one empty: nothing shared
    common = sum((Counter(expected) & Counter(answer)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(answer), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(expected: Sequence[str], answer: Sequence[str]) -> float:
    if list(expected) == list(answer):
        return 1.0
    if not expected or len(answer) > max(SHORT_ANSWER_WORDS, 2 * len(expected)):
        return 0.0
    # Padded with spaces so the phrase matches whole words only ("art" not in "party").
    return float(f" {' '.join(expected)} " in f" {' '.join(answer)} ")


# --- per question -------------------------------------------------------------------------


def question_scores(record: Mapping[str, Any], k: int = 10) -> dict[str, float | None]:
    """Each per-question measure for one record, ``None`` where it does not apply.

    The retrieval keys carry the cut-off: ``recall_at_{k}`` and ``ndcg_at_{k}``.
    """
    scores: dict[str, float | None] = dict.fromkeys(
        (f"recall_at_{k}", f"ndcg_at_{k}", *QUESTION_MEASURES[2:]), None
    )
    # Sources the run's person may not read are not theirs to find or cite: the question
    # is measured as one they should be refused (runner.record sets answerable false).
    expected = [] if record.get("out_of_scope") else record.get("expected_sources") or []
    answerable = bool(record.get("answerable", True))
    refused = bool(record.get("refused"))
    if expected:
        scores[f"recall_at_{k}"], scores[f"ndcg_at_{k}"], scores["mrr"] = _retrieval_scores(
            record, k
        )
        cited = record.get("cited") or []
        wanted = sum(1 for s in expected if any(document_matches(s, c) for c in cited))
        scores["citation_recall"] = wanted / len(expected)
        if cited:
            good = sum(1 for c in cited if any(document_matches(s, c) for s in expected))
            scores["citation_precision"] = good / len(cited)
    if answerable and (record.get("expected_answer") or "").strip():
        language = record.get("language") or ""
        gold = normalise_answer(record["expected_answer"], language)
        # A refusal's own sentence shares words with many answers; it counts as no answer.
        said = [] if refused else normalise_answer(record.get("answer") or "", language)
        scores["answer_f1"] = token_f1(gold, said)
        scores["exact_match"] = exact_match(gold, said)
    if record.get("judge_score") is not None:
        scores["judge_score"] = float(record["judge_score"])
    if answerable:
        scores["false_refusal_rate"] = float(refused)
    else:
        scores["refusal_accuracy"] = float(refused)
    asked, said_in = (
        language_code(record.get("language")),
        language_code(record.get("answer_language")),
    )
    if asked and said_in:
        scores["answer_language_match"] = float(asked == said_in)
    return scores


# --- speed --------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: int) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, -(-p * len(ordered) // 100))  # ceil without float rounding
    return ordered[rank - 1]


def generation_seconds(record: Mapping[str, Any]) -> float | None:
    ttft, total = record.get("ttft_ms"), record.get("total_ms")
    if ttft is None or total is None:
        return None
    return max(total - ttft, 0) / 1000


def tokens_per_second(records: Iterable[Mapping[str, Any]]) -> float | None:
    tokens = seconds = 0.0
    for record in records:
        spent = generation_seconds(record)
        if spent is not None:
            tokens += record.get("output_tokens") or 0
            seconds += spent
    return tokens / seconds if seconds > 0 else None


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


# --- cost ---------------------------------------------------------------------------------

DEFAULT_LOCAL_COST: dict[str, Any] = {
    "kind": "local",
    "hardware_price": 4000,
    "amortisation_months": 36,
    "questions_per_month": 20000,
    "watts": 350,
    "price_per_kwh": 0.15,
    "currency": "EUR",
}

# Examples to start an API cost model from, not a price feed: list prices per million
# tokens change often, so each entry is dated and marked as an example to check.
_PRICE_NOTE = "Example list price; check the provider's current price list."
EXAMPLE_API_PRICES: list[dict[str, Any]] = [
    {"name": name, "provider": provider, "input_per_million": i, "output_per_million": o}
    | {"currency": "USD", "as_of": "2026-12-01", "example": True, "note": _PRICE_NOTE}
    for name, provider, i, o in (
        ("gpt-4.1-mini", "OpenAI", 0.40, 1.60),
        ("gpt-4o", "OpenAI", 2.50, 10.00),
        ("claude-sonnet", "Anthropic", 3.00, 15.00),
        ("mistral-large", "Mistral AI", 2.00, 6.00),
    )
]

_LOCAL_KEYS = ("hardware_price", "amortisation_months", "questions_per_month", "watts")
_API_KEYS = ("input_per_million", "output_per_million")


def cost_parameters(cost: Mapping[str, Any]) -> dict[str, Any]:
    """The cost model with defaults filled in and numbers checked.

    ``kind`` is "local" (the default; missing figures take ``DEFAULT_LOCAL_COST``) or
    "api" (``input_per_million`` and ``output_per_million`` required). Raises ValueError
    with the field's name for a missing or bad figure.
    """
    kind = cost.get("kind") or "local"
    if kind == "local":
        params = {**DEFAULT_LOCAL_COST, **{k: v for k, v in cost.items() if v not in (None, "")}}
        keys = (*_LOCAL_KEYS, "price_per_kwh")
    elif kind == "api":
        params = {"currency": "USD", **cost}
        keys = _API_KEYS
    else:
        raise ValueError(f'Cost model kind must be "local" or "api", not {kind!r}.')
    for key in keys:
        try:
            params[key] = float(params[key])
        except KeyError:
            raise ValueError(f"The API cost model needs {key}.") from None
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be a number, not {params[key]!r}.") from None
        if params[key] < 0:
            raise ValueError(f"{key} must not be negative.")
    for key in ("amortisation_months", "questions_per_month"):
        if kind == "local" and params[key] == 0:
            raise ValueError(f"{key} must be above 0 (the hardware price is divided by it).")
    return params


def cost_parts(
    params: Mapping[str, Any], *, mean_total_s: Any, mean_prompt: Any, mean_output: Any
) -> dict[str, Any]:
    """Cost per 1,000 questions in parts, from validated parameters and per-question means.

    Plain arithmetic, so the means may be numbers or numpy arrays (the bootstrap passes
    arrays of resampled means).
    """
    if params["kind"] == "api":
        inputs = mean_prompt * params["input_per_million"] / 1e6 * 1000
        outputs = mean_output * params["output_per_million"] / 1e6 * 1000
        return {"input": inputs, "output": outputs, "total": inputs + outputs}
    hardware = (
        params["hardware_price"]
        / params["amortisation_months"]
        / params["questions_per_month"]
        * 1000
    )
    # watts times seconds = joules; 3.6e6 joules make a kWh.
    energy = params["watts"] * mean_total_s * params["price_per_kwh"] / 3.6e6 * 1000
    return {"hardware": hardware, "energy": energy, "total": hardware + energy}


def cost_breakdown(
    cost: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The cost per 1,000 questions, its parts and the figures it came from, for the page.

    ``None`` without a cost model; the total is ``None`` for a local model when no
    question has a known total time (the energy cannot be estimated).
    """
    if cost is None:
        return None
    params = cost_parameters(cost)
    mean_total_s = _mean(r["total_ms"] / 1000 for r in records if r.get("total_ms") is not None)
    mean_prompt = _mean(float(r.get("prompt_tokens") or 0) for r in records) or 0.0
    mean_output = _mean(float(r.get("output_tokens") or 0) for r in records) or 0.0
    result: dict[str, Any] = {"kind": params["kind"], "currency": params.get("currency", "")}
    if params["kind"] == "local" and mean_total_s is None:
        result.update(hardware=None, energy=None, total=None)
    else:
        result.update(
            cost_parts(
                params,
                mean_total_s=mean_total_s or 0.0,
                mean_prompt=mean_prompt,
                mean_output=mean_output,
            )
        )
    result.update(
        mean_total_seconds=mean_total_s,
        mean_prompt_tokens=mean_prompt,
        mean_output_tokens=mean_output,
        parameters=params,
    )
    return {key: _round(value) for key, value in result.items()}


def cost_per_1000(
    cost: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]]
) -> float | None:
    """What 1,000 questions like these cost under the cost model (None without one)."""
    breakdown = cost_breakdown(cost, records)
    return breakdown["total"] if breakdown else None


# --- a whole run --------------------------------------------------------------------------


def _measures(
    records: Sequence[Mapping[str, Any]], cost: Mapping[str, Any] | None, k: int
) -> dict[str, Any]:
    per_question = [question_scores(r, k) for r in records]
    names = (f"recall_at_{k}", f"ndcg_at_{k}", *QUESTION_MEASURES[2:])
    result: dict[str, Any] = {"questions": len(records)}
    result.update({name: _mean(s[name] for s in per_question) for name in names})
    ttft = [r["ttft_ms"] for r in records if r.get("ttft_ms") is not None]
    total = [r["total_ms"] for r in records if r.get("total_ms") is not None]
    result.update(
        ttft_p50_ms=percentile(ttft, 50),
        ttft_p95_ms=percentile(ttft, 95),
        total_p50_ms=percentile(total, 50),
        total_p95_ms=percentile(total, 95),
        tokens_per_s=tokens_per_second(records),
        prompt_tokens=_mean(float(r.get("prompt_tokens") or 0) for r in records),
        output_tokens=_mean(float(r.get("output_tokens") or 0) for r in records),
        cost_per_1000_questions=cost_per_1000(cost, records),
        errors=sum(1 for r in records if r.get("error")),
    )
    return {key: _round(value) for key, value in result.items()}


def _groups(records: Iterable[Mapping[str, Any]], keys_of: Any) -> dict[str, list]:
    groups: dict[str, list] = {}
    for record in records:
        for key in keys_of(record):
            groups.setdefault(key, []).append(record)
    return dict(sorted(groups.items()))


def score(
    records: Sequence[Mapping[str, Any]], *, cost: Mapping[str, Any] | None = None, k: int = 10
) -> dict[str, Any]:
    """Every measure over a run's records, and the same per language and per tag.

    Means are over the questions where a measure applies; ``None`` when none does. Floats
    are rounded to 4 decimals. ``errors`` counts questions whose answer failed (they stay
    in every measure: a failure is a bad answer, not a missing one). Groups carry the cost
    too, since questions in one language can cost more tokens than in another. Languages are
    grouped as the golden set spells them, questions without one under "unknown";
    untagged questions are in no tag group.
    """
    result = _measures(records, cost, k)
    result["currency"] = cost_parameters(cost).get("currency", "") if cost is not None else ""
    by_language = _groups(records, lambda r: [(r.get("language") or "").lower() or "unknown"])
    by_tag = _groups(records, lambda r: sorted({str(t) for t in r.get("tags") or []}))
    result["by_language"] = {key: _measures(group, cost, k) for key, group in by_language.items()}
    result["by_tag"] = {key: _measures(group, cost, k) for key, group in by_tag.items()}
    return result
