"""BM25 over the statistics ingestion keeps (``ingest.search_statistics``): the query side.

Per text search configuration in a person's scope, ``LANGUAGE_STATISTICS`` reads the
collections' totals and the question's lexemes with their document frequencies;
``bm25_candidates`` builds the statement that scores the chunks holding the rarer ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LexicalGroup:
    """The collections in a person's scope that share one text search configuration, with
    the statistics BM25 needs over exactly those collections."""

    language: str
    collection_ids: list[int]
    chunk_count: int
    total_length: int
    # (lexeme, occurrences in the question, document frequency within the group)
    terms: list[tuple[str, int, int]]

    @property
    def average_length(self) -> float:
        return self.total_length / self.chunk_count if self.chunk_count else 1.0

    def idf(self, document_frequency: int) -> float:
        """Robertson-Sparck Jones IDF as Lucene computes it (never negative)."""
        n = self.chunk_count
        return math.log(1 + (n - document_frequency + 0.5) / (document_frequency + 0.5))


# One row per text search configuration in the scope: the collections, their totals, and
# the question's lexemes under that configuration with their document frequencies. It reads
# ``scope`` (id, language), the readable collections, which the caller's statement defines
# from the access policy's own sub-select, so nothing outside it is counted. Parameters: the
# configurations the question is read with in collections of language "auto" (each passage
# stemmed in its own detected language: ``ingest.languages.question_configurations``), and
# the question's text. Under several configurations a lexeme counts once, with its largest
# number of occurrences.
LANGUAGE_STATISTICS = """
    SELECT g.language, g.ids, g.chunks, g.length, q.lexemes, q.counts, q.frequencies
    FROM (
        SELECT s.language, array_agg(s.id ORDER BY s.id) AS ids,
               coalesce(sum(l.chunk_count), 0) AS chunks,
               coalesce(sum(l.total_length), 0) AS length
        FROM scope s LEFT JOIN ingest_lexicalcollection l ON l.collection_id = s.id
        GROUP BY s.language
    ) g
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(v.lexeme ORDER BY v.lexeme), '{{}}') AS lexemes,
               coalesce(array_agg(greatest(v.positions, 1) ORDER BY v.lexeme),
                        '{{}}') AS counts,
               coalesce(array_agg(f.frequency ORDER BY v.lexeme), '{{}}') AS frequencies
        FROM (
            SELECT t.lexeme, max(cardinality(t.positions)) AS positions
            FROM unnest(CASE WHEN g.language = 'auto' THEN %s::regconfig[]
                             ELSE ARRAY[g.language::regconfig] END) r(configuration)
            CROSS JOIN LATERAL unnest(to_tsvector(r.configuration, %s)) t
            GROUP BY t.lexeme
        ) v
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(t.document_frequency), 0)::bigint AS frequency
            FROM ingest_lexicalterm t
            WHERE t.collection_id = ANY(g.ids) AND t.lexeme = v.lexeme
        ) f
    ) q
"""


def language_group(row: dict[str, Any]) -> LexicalGroup:
    """A ``LexicalGroup`` from one row of ``LANGUAGE_STATISTICS`` as a JSON object."""
    return LexicalGroup(
        language=row["language"],
        collection_ids=[int(i) for i in row["ids"]],
        chunk_count=int(row["chunks"]),
        total_length=int(row["length"]),
        terms=[
            (lexeme, int(count), int(frequency))
            for lexeme, count, frequency in zip(
                row["lexemes"], row["counts"], row["frequencies"], strict=True
            )
        ],
    )


def tsquery_literal(lexemes: list[str]) -> str:
    """An OR of lexemes as tsquery input: already normalised, so cast, never re-parsed by a
    configuration. Quotes and backslashes are doubled as the input syntax wants."""
    quoted = ("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)
    return " | ".join(quoted)


def candidate_terms(
    terms: list[tuple[str, int, int]], budget: int, *, common: int | None = None
) -> list[str]:
    """The lexemes whose chunks are scored, rarest first (always at least one): all of them
    while their postings together stay within ``budget``, leaving out any found in more than
    ``common`` chunks. A chunk that holds only a question's commonest lexemes scores too low
    to reach the top (their IDF is small); every lexeme still adds to the score of the
    chunks that are found, so the scores themselves are exact BM25."""
    present = sorted((t for t in terms if t[2] > 0), key=lambda t: (t[2], t[0]))
    chosen: list[str] = []
    postings = 0
    for lexeme, _, frequency in present:
        if chosen and (postings + frequency > budget or (common and frequency > common)):
            break
        chosen.append(lexeme)
        postings += frequency
    return chosen


# BM25 of the chunks that hold any candidate lexeme, within one configuration's collections
# and the person's scope. Term frequencies come from the tsvector's positions: the
# question's lexemes are marked with weight A (everything else reset to D) and filtered, so
# only those few entries are unnested per chunk.
BM25_CANDIDATES = """
    SELECT c.id,
           sum(q.weight * t.tf * (%s + 1)
               / (t.tf + %s * (1 - %s + %s * lc.length / %s))) AS score
    FROM ingest_chunk c
    JOIN ingest_lexicalchunk lc ON lc.chunk_id = c.id  -- only live chunks have one
    CROSS JOIN LATERAL (
        SELECT e.lexeme, greatest(cardinality(e.positions), 1) AS tf
        FROM unnest(ts_filter(setweight(setweight(c.search_vector, 'D'), 'A', %s::text[]),
                              '{{a}}')) e
    ) t
    JOIN unnest(%s::text[], %s::float8[]) AS q(lexeme, weight) ON q.lexeme = t.lexeme
    WHERE c.search_vector @@ %s::tsquery
      AND c.collection_id = ANY(%s::bigint[])
      AND c.collection_id IN ({scope})
    GROUP BY c.id
    ORDER BY score DESC, c.id
    LIMIT %s
"""


@dataclass(frozen=True)
class Bm25:
    k1: float = 1.2
    b: float = 0.75
    # Postings (summed document frequencies) the candidate lexemes may reach, and the share
    # of the scope's chunks above which a lexeme finds no candidates; see ``candidate_terms``.
    # 500: SciFact scores the same as with 1000 (nDCG@10 0.692 full text, 0.724 hybrid), and
    # at 1M chunks a large department's hybrid p95 fell by about 4 ms (docs/benchmarks/).
    candidate_budget: int = 500
    common_share: float = 0.05


def bm25_candidates(
    group: LexicalGroup, bm25: Bm25, scope: str, scope_params: tuple, depth: int
) -> tuple[str, list[Any]] | None:
    """SQL and parameters of the group's BM25 top ``depth``; None when no lexeme of the
    question occurs in the group."""
    common = int(bm25.common_share * group.chunk_count) if bm25.common_share < 1 else None
    candidates = candidate_terms(group.terms, bm25.candidate_budget, common=common)
    if not candidates:
        return None
    lexemes = [lexeme for lexeme, _, frequency in group.terms if frequency > 0]
    weights = [group.idf(frequency) for _, _, frequency in group.terms if frequency > 0]
    params = [
        bm25.k1,
        bm25.k1,
        bm25.b,
        bm25.b,
        group.average_length,
        lexemes,
        lexemes,
        weights,
        tsquery_literal(candidates),
        group.collection_ids,
        *scope_params,
        depth,
    ]
    return BM25_CANDIDATES.format(scope=scope), params
