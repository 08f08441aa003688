"""Shipped evaluation sets turned into documents and golden rows: SciFact and XQuAD.

Both read the benchmark files where they lie (``../shared/corpus``); nothing is copied into
the repository. ``ConvertedSet.write`` lays out a folder a command can upload: the
documents as UTF-8 text files under ``documents/`` and the golden set as ``golden.jsonl``,
which ``goldens.parse_file`` reads back without an error.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from inference.pilot.goldens import GoldenRow, question_key

# (name, title, text): ``name`` is the file name, ``text`` the whole body of the file.
Document = tuple[str, str, str]
T = TypeVar("T")


@dataclass
class ConvertedSet:
    documents: list[Document] = field(default_factory=list)
    rows: list[GoldenRow] = field(default_factory=list)
    description: str = ""

    def golden_bytes(self) -> bytes:
        lines = (json.dumps(row.as_dict(), ensure_ascii=False) for row in self.rows)
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    def write(self, folder: Path) -> Path:
        """Write ``documents/*.txt``, ``documents.jsonl`` (name and title of each, for an
        uploader that sets titles) and ``golden.jsonl``; returns the golden file's path."""
        documents = folder / "documents"
        documents.mkdir(parents=True, exist_ok=True)
        with (folder / "documents.jsonl").open("w", encoding="utf-8") as index:
            for name, title, text in self.documents:
                (documents / name).write_text(text, encoding="utf-8")
                index.write(json.dumps({"name": name, "title": title}, ensure_ascii=False))
                index.write("\n")
        golden = folder / "golden.jsonl"
        golden.write_bytes(self.golden_bytes())
        return golden


def _folder(corpus_dir: Path, name: str) -> Path:
    """Accept the corpus root (``../shared/corpus``) or the benchmark's own folder."""
    inside = corpus_dir / name
    return inside if inside.is_dir() else corpus_dir


def _read_jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


# --- SciFact -------------------------------------------------------------------------


def scifact(
    corpus_dir: Path,
    limit: int | None = None,
    distractors: int = 500,
    seed: int = 7,
) -> ConvertedSet:
    """SciFact's test claims that have judgements, over its abstracts (BEIR format).

    Retrieval only: SciFact judges which abstracts support or refute a claim, so rows have
    expected sources and no expected answer. With ``limit``, the first ``limit`` claims are
    kept with the abstracts they need plus ``distractors`` others chosen by ``seed``.
    """
    folder = _folder(corpus_dir, "scifact")
    judged = _qrels(folder / "qrels" / "test.tsv")
    claims = [q for q in _read_jsonl(folder / "queries.jsonl") if str(q["_id"]) in judged]
    if limit is not None:
        claims = claims[:limit]
    abstracts = list(_read_jsonl(folder / "corpus.jsonl"))
    if limit is not None:
        needed = {doc for claim in claims for doc in judged[str(claim["_id"])]}
        abstracts = _with_distractors(abstracts, needed, distractors, seed)
    rows = [
        GoldenRow(
            question=claim["text"].strip(),
            expected_sources=[
                {"document": _scifact_name(doc), "page": None} for doc in judged[str(claim["_id"])]
            ],
            language="en",
            tags=["scifact"],
        )
        for claim in claims
    ]
    documents = [
        (_scifact_name(a["_id"]), a["title"].strip(), f"{a['title'].strip()}\n\n{a['text']}\n")
        for a in abstracts
    ]
    return ConvertedSet(
        documents=documents,
        rows=_unique(rows, lambda row: row.question),
        description="SciFact (AllenAI, via BEIR) test claims: retrieval only. "
        "CC BY-NC 2.0, for testing only.",
    )


def _scifact_name(doc_id: object) -> str:
    return f"scifact-{doc_id}.txt"


def _qrels(path: Path) -> dict[str, list[str]]:
    """Claim id -> judged abstract ids (score > 0), in the file's order."""
    judged: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.split("\t")
        if number == 0 and not parts[-1].strip().isdigit():
            continue  # header
        if len(parts) >= 3 and int(parts[2]) > 0:
            judged.setdefault(parts[0], []).append(parts[1])
    return judged


def _with_distractors(
    abstracts: list[dict], needed: set[str], distractors: int, seed: int
) -> list[dict]:
    others = [str(a["_id"]) for a in abstracts if str(a["_id"]) not in needed]
    chosen = set(random.Random(seed).sample(others, min(distractors, len(others))))
    keep = needed | chosen
    return [a for a in abstracts if str(a["_id"]) in keep]


# --- XQuAD ---------------------------------------------------------------------------


@dataclass
class _Question:
    key: tuple[int, int]  # (article, paragraph): the same place in every language
    order: tuple[int, int, int, int]  # article, paragraph, question, language
    lang: str
    question: str
    answer: str


def xquad(
    corpus_dir: Path,
    languages: Sequence[str] = ("en", "de"),
    limit: int | None = None,
    unanswerable: int = 50,
    seed: int = 7,
    distractors: int = 500,
) -> ConvertedSet:
    """XQuAD paragraphs as documents, its questions as rows, some made unanswerable.

    XQuAD's languages are translations of the same paragraphs, so a paragraph left out is
    left out in every language (otherwise the German paragraph would answer the English
    question). ``unanswerable`` questions come from whole paragraphs chosen by ``seed``;
    the other questions on those paragraphs are dropped, and so is a candidate whose
    answer text appears in a paragraph that stays. ``limit`` keeps the first answerable
    questions (in article, paragraph, question order, the languages side by side) with
    every paragraph of the articles they come from (same-topic neighbours, the hard
    negatives) plus ``distractors`` paragraphs of other articles chosen by ``seed``.
    """
    folder = _folder(corpus_dir, "xquad")
    articles: dict[str, list[dict]] = {lang: _xquad_articles(folder, lang) for lang in languages}
    paragraphs: dict[tuple[str, int, int], tuple[str, str]] = {}  # -> (article title, text)
    questions: list[_Question] = []
    for li, lang in enumerate(languages):
        for ai, article in enumerate(articles[lang]):
            for pi, paragraph in enumerate(article["paragraphs"]):
                paragraphs[(lang, ai, pi)] = (article["title"], paragraph["context"])
                for qi, qa in enumerate(paragraph["qas"]):
                    answer = qa["answers"][0]["text"] if qa["answers"] else ""
                    questions.append(
                        _Question((ai, pi), (ai, pi, qi, li), lang, qa["question"].strip(), answer)
                    )
    questions.sort(key=lambda q: q.order)
    left_out, refused = _choose_unanswerable(questions, paragraphs, unanswerable, seed)
    answerable = _unique((q for q in questions if q.key not in left_out), lambda q: q.question)
    if limit is not None:
        answerable = answerable[:limit]
    places = sorted(
        (k for k in paragraphs if (k[1], k[2]) not in left_out), key=lambda k: (k[1], k[2], k[0])
    )
    if limit is not None:
        articles_asked = {q.key[0] for q in answerable}
        others = [k for k in places if k[1] not in articles_asked]
        chosen = set(random.Random(seed).sample(others, min(distractors, len(others))))
        places = [k for k in places if k[1] in articles_asked or k in chosen]
    documents = [_xquad_document(*k, *paragraphs[k]) for k in places]
    refused_ids = {id(q) for q in refused}
    keep = {id(q) for q in answerable} | refused_ids
    rows = [_xquad_row(q, paragraphs, id(q) in refused_ids) for q in questions if id(q) in keep]
    return ConvertedSet(
        documents=documents,
        rows=rows,
        description=f"XQuAD ({', '.join(languages)}; google-deepmind/xquad), CC BY-SA 4.0; "
        f"{len(refused)} questions made unanswerable by leaving their paragraphs out.",
    )


def _xquad_articles(folder: Path, lang: str) -> list[dict]:
    path = folder / f"xquad.{lang}.json"
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("xquad.*.json"))
        raise FileNotFoundError(f"no XQuAD file for “{lang}” in {folder} (found: {found})")
    return json.loads(path.read_text(encoding="utf-8"))["data"]


def _choose_unanswerable(
    questions: list[_Question],
    paragraphs: dict[tuple[str, int, int], tuple[str, str]],
    count: int,
    seed: int,
) -> tuple[set[tuple[int, int]], list[_Question]]:
    """Whole paragraphs to leave out, and ``count`` questions on them to mark unanswerable."""
    by_place: dict[tuple[int, int], list[_Question]] = {}
    for question in questions:  # sorted: the languages alternate within a paragraph
        by_place.setdefault(question.key, []).append(question)
    repeated = _repeated_keys(questions)
    places = sorted(by_place)
    random.Random(seed).shuffle(places)
    left_out: set[tuple[int, int]] = set()
    refused: list[_Question] = []
    for place in places:
        if len(refused) >= count:
            break
        left_out.add(place)
        kept_texts = [
            text.casefold()
            for (_, ai, pi), (_, text) in paragraphs.items()
            if (ai, pi) not in left_out
        ]
        for question in by_place[place]:
            if len(refused) >= count:
                break
            # A question asked elsewhere too, or whose answer a kept paragraph states,
            # may still be answerable: it would measure nothing.
            if question_key(question.question) in repeated or any(
                question.answer.casefold() in text for text in kept_texts
            ):
                continue
            refused.append(question)
    return left_out, refused


def _repeated_keys(questions: Iterable[_Question]) -> set[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for question in questions:
        key = question_key(question.question)
        (repeated if key in seen else seen).add(key)
    return repeated


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")


def _xquad_name(lang: str, article: str, paragraph: int) -> str:
    return f"xquad-{lang}-{_slug(article)}-{paragraph + 1}.txt"


def _xquad_document(lang: str, ai: int, pi: int, article: str, text: str) -> Document:
    heading = article.replace("_", " ")
    title = f"{heading} ¶{pi + 1} ({lang})"
    return (_xquad_name(lang, article, pi), title, f"{heading}\n\n{text}\n")


def _xquad_row(
    question: _Question,
    paragraphs: dict[tuple[str, int, int], tuple[str, str]],
    refused: bool,
) -> GoldenRow:
    ai, pi = question.key
    article = paragraphs[(question.lang, ai, pi)][0]
    if refused:
        return GoldenRow(
            question=question.question,
            answerable=False,
            language=question.lang,
            tags=["xquad", question.lang, "unanswerable"],
        )
    return GoldenRow(
        question=question.question,
        expected_answer=question.answer.strip(),
        expected_sources=[{"document": _xquad_name(question.lang, article, pi), "page": None}],
        language=question.lang,
        tags=["xquad", question.lang],
    )


def _unique(items: Iterable[T], question: Callable[[T], str]) -> list[T]:
    """Later repeats of a question dropped, as ``parse_file`` would refuse them."""
    seen: set[str] = set()
    unique = []
    for item in items:
        key = question_key(question(item))
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique
