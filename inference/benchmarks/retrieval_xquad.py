"""Cross-lingual retrieval on XQuAD, through the appliance's own code.

XQuAD's English and German files are translations of the same 240 paragraphs with the same
1,190 questions, so each question has exactly one relevant paragraph in either language.
Three conditions per embedding model: English questions over the English paragraphs,
German over German, and German questions over the English paragraphs (what an employee
asking in their own language over documents in another one meets).

Each model's paragraphs go into a scratch collection of their own (one chunk per paragraph,
through the pipeline's chunk writer, the collection's text search language as given), the
questions run through ``inference.retrieval.search`` as a scratch person who may read only
that collection, and everything scratch is deleted afterwards.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.benchmarks.retrieval_beir import BeirSet, _load_into, ndcg_at, recall_at
from inference.benchmarks.scratch import MODES, describe, scratch_reader
from inference.retrieval import Params, search
from ingest import embedding

# (question language, paragraph language)
CONDITIONS = (("en", "en"), ("de", "de"), ("de", "en"))
NAMES = {"en": "English", "de": "German"}
DEFAULT_MODELS = ("all-MiniLM-L6-v2", "multilingual-e5-small-q4")
K = 10


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    paragraph: str


def load(folder: Path, lang: str) -> tuple[dict[str, str], list[Question]]:
    """The paragraphs (id -> text) and questions of one language. A paragraph's id is its
    place (article, paragraph), the same in every language."""
    path = folder / f"xquad.{lang}.json"
    if not path.exists():
        raise FileNotFoundError(f"no XQuAD file for {lang!r} at {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraphs: dict[str, str] = {}
    questions: list[Question] = []
    for ai, article in enumerate(data["data"]):
        for pi, paragraph in enumerate(article["paragraphs"]):
            place = f"{ai}-{pi}"
            paragraphs[place] = paragraph["context"]
            questions += [Question(qa["id"], qa["question"], place) for qa in paragraph["qas"]]
    return paragraphs, questions


def subset(questions: list[Question], wanted: int | None) -> list[Question]:
    """Every n-th question, so a subset still spans all 48 articles; all when None."""
    if not wanted or wanted >= len(questions):
        return questions
    step = len(questions) / wanted
    return [questions[int(i * step)] for i in range(wanted)]


def as_beir(paragraphs: dict[str, str]) -> BeirSet:
    """The paragraphs in the shape the SciFact loader writes (no titles: XQuAD's German
    file keeps the English article names, which would leak English into German chunks)."""
    ids = list(paragraphs)
    return BeirSet(ids, [""] * len(ids), [paragraphs[i] for i in ids], {}, {})


def evaluate(
    user: Any,
    questions: list[Question],
    vectors: np.ndarray,
    places: dict[int, str],
    params: Params,
) -> dict:
    """nDCG@10 and recall@10 per mode (one relevant paragraph per question); ``places``
    maps the scratch documents to their paragraphs."""
    scores: dict[str, dict[str, float]] = {}
    for mode in MODES:
        ndcg, recall = [], []
        started = time.perf_counter()
        for question, vector in zip(questions, vectors, strict=True):
            hits = search(user, question.text, vector, k=K, mode=mode, params=params)
            ranked = [places[h.document_id] for h in hits]
            ndcg.append(ndcg_at(ranked, {question.paragraph: 1}, K))
            recall.append(recall_at(ranked, {question.paragraph: 1}, K))
        scores[mode] = {
            "ndcg_at_10": round(float(np.mean(ndcg)), 4),
            "recall_at_10": round(float(np.mean(recall)), 4),
            "ms_per_query": round(1000 * (time.perf_counter() - started) / len(questions), 1),
        }
    return scores


def run(
    folder: Path,
    params: Params,
    out: Any,
    *,
    models: tuple[str, ...] = DEFAULT_MODELS,
    language: str = "auto",
    questions_per_condition: int | None = None,
) -> dict[str, Any]:
    paragraphs = {lang: load(folder, lang)[0] for lang in NAMES}
    questions = {lang: subset(load(folder, lang)[1], questions_per_condition) for lang in NAMES}
    out.write(
        f"XQuAD: {len(paragraphs['en'])} paragraphs per language, "
        f"{len(questions['en'])} questions per condition; collection language {language}"
    )
    results: dict[str, Any] = {}
    for model in models:
        if not embedding.is_installed(model):
            raise FileNotFoundError(
                f"the embedding model {model} is not at {embedding.path_of(model)}"
            )
        started = time.perf_counter()
        question_vectors = {
            lang: embedding.embed([q.text for q in questions[lang]], name=model, query=True)
            for lang in NAMES
        }
        out.write(f"{model}: questions embedded in {time.perf_counter() - started:.1f} s")
        results[model] = {}
        for passages in NAMES:
            data = as_beir(paragraphs[passages])
            started = time.perf_counter()
            vectors = embedding.embed(data.texts, name=model)
            with scratch_reader(f"xquad-{passages}", language=language) as (user, collection):
                collection.embedding_model = model
                collection.save(update_fields=["embedding_model"])
                places = _load_into(collection, data, vectors)
                out.write(
                    f"{model}: {NAMES[passages]} paragraphs embedded and loaded in "
                    f"{time.perf_counter() - started:.1f} s"
                )
                for asked, over in CONDITIONS:
                    if over != passages:
                        continue
                    label = f"{asked}->{over}"
                    results[model][label] = evaluate(
                        user, questions[asked], question_vectors[asked], places, params
                    )
                    for mode, figures in results[model][label].items():
                        out.write(
                            f"  {label:6} {mode:9} nDCG@10 {figures['ndcg_at_10']:.4f} "
                            f"recall@10 {figures['recall_at_10']:.4f} "
                            f"{figures['ms_per_query']:6.1f} ms/query"
                        )
    return {
        "questions_per_condition": len(questions["en"]),
        "collection_language": language,
        "results": results,
        "parameters": describe(params),
    }


def record(result: dict[str, Any], command: str, seconds: float, folder: Path) -> Path:
    """A dated record under ``folder`` with the figures as measured."""
    today = datetime.date.today().isoformat()
    path = folder / f"{today}-retrieval-xquad-cross-lingual.md"
    count = result["questions_per_condition"]
    lines = [
        f"# {today}: cross-lingual retrieval on XQuAD English and German",
        "",
        f"- **Date:** {today}.",
        f"- **Host:** {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        "shared with other work (quality figures do not depend on load; the ms/query do).",
        f"- **Command:** `{command}` ({seconds / 60:.1f} minutes).",
        f"- **Data:** XQuAD (google-deepmind/xquad, CC BY-SA 4.0): 240 paragraphs in each "
        f"language, one chunk each; {count} questions per condition"
        + (" (every n-th of 1,190, spanning all 48 articles)" if count < 1190 else "")
        + ". Each question has one relevant paragraph, so recall@10 is the share of questions "
        "whose paragraph is in the top 10.",
        f"- **Collections:** text search language `{result['collection_language']}`"
        + (
            " (each paragraph stemmed in its detected language, each question in its own)"
            if result["collection_language"] == "auto"
            else ""
        )
        + "; ranking parameters are the defaults (below).",
        "",
        "| model | condition | mode | nDCG@10 | recall@10 | ms/query |",
        "|---|---|---|---|---|---|",
    ]
    for model, conditions in result["results"].items():
        for label, modes in conditions.items():
            asked, over = label.split("->")
            condition = f"{NAMES[asked]} questions, {NAMES[over]} paragraphs"
            for mode, f in modes.items():
                lines.append(
                    f"| {model} | {condition} | {mode} | {f['ndcg_at_10']:.3f} | "
                    f"{f['recall_at_10']:.3f} | {f['ms_per_query']:.1f} |"
                )
    lines += [
        "",
        "Parameters: `" + json.dumps(result["parameters"], sort_keys=True) + "`",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
