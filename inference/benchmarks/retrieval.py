"""``python manage.py benchmark retrieval``: quality on BEIR SciFact (``--beir``), quality
across languages on XQuAD (``--xquad``), or latency and recall of the access-filtered query
on synthetic data (``--synthetic N``).

All go through ``inference.retrieval.search``, as a scratch person who may read only the
scratch data, and remove that data afterwards. Neither writes audit rows: the people,
departments and collections they create are scaffolding, not acts of anyone.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from inference.benchmarks import retrieval_beir, retrieval_synthetic, retrieval_xquad
from inference.retrieval import Params


def add_arguments(parser: CommandParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--beir", type=Path, help="a BEIR folder, e.g. ../shared/corpus/scifact")
    what.add_argument("--synthetic", type=int, metavar="N", help="N synthetic chunks")
    what.add_argument(
        "--xquad",
        type=Path,
        help="the XQuAD folder, e.g. ../shared/corpus/xquad: English, German and German "
        "questions over English paragraphs, per embedding model",
    )
    parser.add_argument(
        "--models",
        default=",".join(retrieval_xquad.DEFAULT_MODELS),
        help="xquad: embedding models to compare, comma-separated",
    )
    parser.add_argument(
        "--language",
        default="auto",
        help="xquad: the scratch collections' text search language (auto: per passage)",
    )
    parser.add_argument(
        "--questions-per-condition",
        type=int,
        help="xquad: a spread subset of the 1,190 questions (default: all)",
    )
    parser.add_argument("--record", type=Path, help="xquad: write a dated record into this folder")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also print a tuning grid (BEIR: ranking; synthetic: graph search and exact scans)",
    )
    parser.add_argument("--queries", type=int, default=400, help="synthetic: queries timed")
    parser.add_argument("--seed", type=int, default=7, help="synthetic: random seed")
    parser.add_argument(
        "--structure",
        choices=("documents", "isotropic"),
        default="documents",
        help="synthetic: vectors shaped like text embeddings (chunks of documents of topics), "
        "or cluster centres plus noise in every direction (a worst case for the graph)",
    )
    tuning = parser.add_argument_group("ranking (defaults from settings)")
    tuning.add_argument("--k1", type=float, help="BM25 k1")
    tuning.add_argument("--b", type=float, help="BM25 b")
    tuning.add_argument("--rrf-k", type=float, help="reciprocal rank fusion constant")
    tuning.add_argument("--dense-weight", type=float)
    tuning.add_argument("--lexical-weight", type=float)
    tuning.add_argument("--depth", type=int, help="candidates per ranking before fusion")
    tuning.add_argument("--budget", type=int, help="BM25 candidate postings budget")
    tuning.add_argument("--common-share", type=float, help="BM25: no candidates from lexemes above")
    tuning.add_argument("--ef-search", type=int)
    tuning.add_argument("--exact-max", type=int, help="largest scope read without the index")


def params_from(options: dict[str, Any]) -> Params:
    params = Params.from_settings()
    bm25 = params.bm25
    if options.get("k1") is not None:
        bm25 = replace(bm25, k1=options["k1"])
    if options.get("b") is not None:
        bm25 = replace(bm25, b=options["b"])
    if options.get("budget") is not None:
        bm25 = replace(bm25, candidate_budget=options["budget"])
    if options.get("common_share") is not None:
        bm25 = replace(bm25, common_share=options["common_share"])
    changes = {
        field: options[option]
        for option, field in (
            ("rrf_k", "rrf_k"),
            ("dense_weight", "dense_weight"),
            ("lexical_weight", "lexical_weight"),
            ("depth", "depth"),
            ("ef_search", "ef_search"),
            ("exact_max", "exact_scan_max_chunks"),
        )
        if options.get(option) is not None
    }
    return replace(params, bm25=bm25, **changes)


class _Lines:
    """Writes whole lines to the command's output."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, line: str) -> None:
        self.out.write(line)
        self.out.flush()


def run(options: dict[str, Any], out: Any) -> None:
    params = params_from(options)
    lines = _Lines(out)
    if options.get("beir"):
        folder = options["beir"].resolve()
        if not (folder / "corpus.jsonl").exists():
            raise CommandError(f"{folder} holds no BEIR corpus.jsonl")
        result = retrieval_beir.run(folder, params, lines, sweep=options["sweep"])
    elif options.get("xquad"):
        result = _xquad(options, params, lines)
    else:
        if options["synthetic"] < 1000:
            raise CommandError("--synthetic needs at least 1000 chunks")
        result = retrieval_synthetic.run(
            options["synthetic"],
            params,
            lines,
            queries=options["queries"],
            seed=options["seed"],
            sweep=options["sweep"],
            structure=options["structure"],
        )
    if options.get("json"):
        out.write(json.dumps(result, sort_keys=True))


def _xquad(options: dict[str, Any], params: Params, lines: _Lines) -> dict[str, Any]:
    folder = options["xquad"].resolve()
    models = tuple(m.strip() for m in options["models"].split(",") if m.strip())
    started = time.perf_counter()
    try:
        result = retrieval_xquad.run(
            folder,
            params,
            lines,
            models=models,
            language=options["language"],
            questions_per_condition=options.get("questions_per_condition"),
        )
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if options.get("record"):
        path = retrieval_xquad.record(
            result, _xquad_command(options), time.perf_counter() - started, options["record"]
        )
        lines.write(f"record written to {path}")
    return result


def _xquad_command(options: dict[str, Any]) -> str:
    """The command line that gives this run's figures, for its record."""
    words = ["python manage.py benchmark retrieval --xquad", str(options["xquad"])]
    if options["models"] != ",".join(retrieval_xquad.DEFAULT_MODELS):
        words += ["--models", options["models"]]
    if options["language"] != "auto":
        words += ["--language", options["language"]]
    if options.get("questions_per_condition"):
        words += ["--questions-per-condition", str(options["questions_per_condition"])]
    return " ".join(words)
