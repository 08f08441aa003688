"""Reading a golden-set file that a curator uploads (CSV or JSON Lines), without a database.

``parse_file`` never raises on bad input: a file that cannot be read at all gets ``fatal``
(why, and what to do), and each bad row gets its own ``RowError`` while every good row is
kept. Line numbers are the ones a person sees in a text editor (the header is line 1; a
CSV record whose quoted cell spans several lines is counted from its first line).

CSV: a header row, then one question per row; comma, semicolon or tab, found from the
header. Unknown columns are ignored. JSON Lines: one object per line, unknown keys ignored.
Which parser reads a file follows its content (a ``.json`` file holding JSON Lines is
read as JSON Lines); the extension only has to be one of ``SUFFIXES``.

More than ``MAX_ROWS`` questions is fatal: a golden set silently cut short would measure
something other than what the curator meant.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from inference.language import detect_language

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ROWS = 5_000
MAX_QUESTION_CHARS = 4_000
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
FIELDS = ("question", "expected_answer", "expected_sources", "answerable", "language", "tags")

UTF8_HELP = "save it as UTF-8 (CSV UTF-8 in Excel) and upload it again"
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "ja", "j"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "nei", "nein"})


@dataclass
class GoldenRow:
    question: str
    expected_answer: str = ""
    expected_sources: list[dict[str, Any]] = field(default_factory=list)
    answerable: bool = True
    language: str = ""
    tags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "expected_answer": self.expected_answer,
            "expected_sources": [dict(s) for s in self.expected_sources],
            "answerable": self.answerable,
            "language": self.language,
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"row {self.line}: {self.message}"


@dataclass
class ParsedGoldens:
    rows: list[GoldenRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    fatal: str | None = None
    # The file line of each kept row (parallel to ``rows``), for ``check_sources``.
    lines: list[int] = field(default_factory=list)
    format: str = ""  # "csv" or "jsonl"

    @property
    def ok(self) -> bool:
        return self.fatal is None and not self.errors


@dataclass
class _Record:
    """One row as read from the file, before its fields are checked."""

    line: int
    fields: dict[str, Any]
    problem: str = ""  # why the row cannot be read at all
    from_csv: bool = False  # a spreadsheet may open it again: refuse formulas


class RowProblem(ValueError):
    """One cell or field of one row is wrong; the message is shown to the curator."""


# --- the file as a whole -------------------------------------------------------------


def parse_file(name: str, data: bytes) -> ParsedGoldens:
    text, fatal = _decode(name, data)
    if fatal:
        return ParsedGoldens(fatal=fatal)
    assert text is not None
    if _looks_like_json(text):
        records, fatal = _jsonl_records(text)
        kind = "jsonl"
    else:
        records, fatal = _csv_records(text)
        kind = "csv"
    parsed = ParsedGoldens(format=kind)
    if fatal:
        parsed.fatal = fatal
        return parsed
    if len(records) > MAX_ROWS:
        parsed.fatal = (
            f"the file has {len(records):,} questions; a golden set holds at most {MAX_ROWS:,}: "
            "split it into smaller golden sets"
        )
        return parsed
    _validate(records, parsed)
    return parsed


def _decode(name: str, data: bytes) -> tuple[str | None, str | None]:
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUFFIXES:
        shown = suffix or "no extension"
        return None, (
            f"“{name}” has {shown}; upload a CSV file (.csv, .tsv) or JSON Lines (.jsonl)"
        )
    if len(data) > MAX_FILE_BYTES:
        return None, (
            f"the file is {len(data) / 1024 / 1024:.1f} MB; the limit is "
            f"{MAX_FILE_BYTES // 1024 // 1024} MB: split it into smaller files"
        )
    if not data.strip():
        return None, "the file is empty: it needs a header row and at least one question"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, f"the file is UTF-16 text, not UTF-8 text: {UTF8_HELP}"
    if data.startswith(b"PK\x03\x04"):
        return None, (
            "this is an Excel workbook or a zip file, not text: in Excel choose "
            "File > Save As > CSV UTF-8 and upload that"
        )
    if b"\x00" in data:
        return None, "this is a binary file, not text: upload a CSV or JSON Lines file"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return (
            None,
            f"the file is not UTF-8 text: {UTF8_HELP} (line {line} is the first that is not)",
        )
    if not text.strip():
        return None, "the file is empty: it needs a header row and at least one question"
    if _control_share(text) > 0.01:
        return None, "this is a binary file, not text: upload a CSV or JSON Lines file"
    return text, None


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _control_share(text: str) -> float:
    return len(_CONTROL.findall(text)) / len(text)


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def _normalise_key(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().lstrip("\ufeff").lower())


def _missing_question(found: Iterable[str]) -> str:
    names = ", ".join(f"“{n}”" for n in found if n) or "none"
    return f"there is no “question” column (columns found: {names}): add a header row naming it"


# --- CSV -----------------------------------------------------------------------------


QUOTES_PROBLEM = (
    "the quote marks in this row do not pair up: put a cell that holds quotes, the "
    'separator or line breaks in quotes, and write each quote inside it as two ("")'
)


def _csv_records(text: str) -> tuple[list[_Record], str | None]:
    header_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = max(",;\t", key=header_line.count)
    header: list[str] | None = None
    records: list[_Record] = []
    for start, cells in _csv_rows(text, delimiter):
        if header is None:
            if cells is None:
                return [], f"the header row cannot be read: {QUOTES_PROBLEM}"
            header = [_normalise_key(c) for c in cells]
            if "question" not in header:
                return [], _missing_question(c.strip() for c in cells)
        elif cells is None:
            records.append(_Record(start, {}, QUOTES_PROBLEM, from_csv=True))
        else:
            records.append(_csv_record(start, header, cells))
    if header is None:
        return [], "the file is empty: it needs a header row and at least one question"
    return records, None


def _csv_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | None]]:
    """(first line, cells) of each non-blank record; cells None where quotes do not pair.

    Strict parsing, because the lenient one lets a quote that never closes swallow every
    later row into one cell without a word. When a record that fails ran over several
    lines, its first line's quote was the stray one: reading starts again on the next
    line, so the rows below it are kept.
    """
    # newline="" as the csv module asks: a line break inside a quoted cell stays in it.
    lines = io.StringIO(text, newline="").readlines()
    offset = 0
    while offset < len(lines):
        reader = csv.reader(iter(lines[offset:]), delimiter=delimiter, strict=True)
        end = offset
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield start, None
                if offset + reader.line_num > start:  # a stray quote ran on past its line
                    offset = start
                    break
                end = offset + reader.line_num
                continue
            end = offset + reader.line_num
            if any(c.strip() for c in cells):
                yield start, cells


def _csv_record(line: int, header: list[str], cells: list[str]) -> _Record:
    fields: dict[str, Any] = {}
    for key, value in zip(header, cells, strict=False):
        if key in FIELDS and key not in fields:
            fields[key] = value
    problem = ""
    if any(c.strip() for c in cells[len(header) :]):
        # Most often a comma inside an unquoted question that split it in two.
        problem = (
            f"the row has {len(cells)} cells, more than the header: "
            "put quotes around a cell that contains the separator"
        )
    return _Record(line, fields, problem, from_csv=True)


_FUNCTION_CALL = re.compile(r"^\s*[A-Za-z_][\w.]*\s*\(")
_ARITHMETIC = re.compile(r"^[\s\d.,$:A-Za-z()%^*/+\-]*[\d)]\s*$")
_NUMBER = re.compile(r"^\s*[+\-]?\d[\d\s.,]*%?\s*$")
_CELL_REF = re.compile(r"\$?[A-Za-z]{1,3}\$?\d+")


def looks_like_formula(cell: str) -> bool:
    """True when a spreadsheet would run the cell as a formula (CSV injection).

    "=" always starts a formula. "+", "-" and "@" do when a formula follows (a function
    call, arithmetic, a cell reference or a DDE link), so "-40" and "- a list item" stay
    text. Leading tabs and carriage returns are looked through, since some programs strip
    them before deciding.
    """
    body = cell.lstrip("\t\r")
    looked_through = body != cell
    if not body:
        return False
    if body[0] == "=":
        return True
    if body[0] in "+-@":
        rest = body[1:]
    elif looked_through:
        rest = body
    else:
        return False
    if "|" in rest and "!" in rest:  # DDE: -cmd|' /C calc'!A0
        return True
    if _FUNCTION_CALL.match(rest):
        return True
    if _NUMBER.match(body) or rest[:1].isspace():
        return False
    return bool(_ARITHMETIC.match(rest)) and (
        any(op in rest for op in "+-*/^") or bool(_CELL_REF.fullmatch(rest.strip()))
    )


# --- JSON Lines ----------------------------------------------------------------------


def _jsonl_records(text: str) -> tuple[list[_Record], str | None]:
    whole = _whole_json(text)
    if isinstance(whole, list):
        return [], (
            "the file is one JSON array; write one JSON object per line (JSON Lines), "
            'e.g. {"question": "…", "expected_answer": "…"}'
        )
    if isinstance(whole, dict) and text.strip().count("\n"):
        return [], "the file is one JSON object over several lines; write one object per line"
    records: list[_Record] = []
    keys_seen: dict[str, None] = {}
    # Only "\n" ends a line: JSON text may hold U+2028 and friends, which splitlines cuts at.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append(_Record(number, {}, f"this line is not valid JSON ({exc.msg})"))
            continue
        if not isinstance(value, dict):
            kind = type(value).__name__.replace("dict", "object").replace("str", "string")
            problem = f'this line is a JSON {kind}, not an object like {{"question": "…"}}'
            records.append(_Record(number, {}, problem))
            continue
        fields = {_normalise_key(str(k)): v for k, v in value.items()}
        keys_seen.update(dict.fromkeys(fields))
        records.append(_Record(number, fields))
    if keys_seen and "question" not in keys_seen:
        return [], _missing_question(keys_seen)
    return records, None


def _whole_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


# --- one row -------------------------------------------------------------------------


def _validate(records: list[_Record], parsed: ParsedGoldens) -> None:
    first_line_of: dict[str, int] = {}
    for record in records:
        line = record.line
        try:
            row = _row(record)
        except RowProblem as exc:
            parsed.errors.append(RowError(line, str(exc)))
            continue
        key = question_key(row.question)
        if key in first_line_of:
            message = f"the same question as row {first_line_of[key]}: keep one of them"
            parsed.errors.append(RowError(line, message))
            continue
        first_line_of[key] = line
        parsed.rows.append(row)
        parsed.lines.append(line)


def question_key(question: str) -> str:
    """What makes two questions the same: case and spacing do not count."""
    return " ".join(question.split()).casefold()


def _row(record: _Record) -> GoldenRow:
    if record.problem:
        raise RowProblem(record.problem)
    fields = record.fields
    if record.from_csv:
        for key in FIELDS:
            value = fields.get(key)
            if isinstance(value, str) and looks_like_formula(value):
                raise RowProblem(
                    f"the {key} cell looks like a spreadsheet formula ({_short(value)}); "
                    "formulas are refused for safety: write it as plain text"
                )
    question = _text(fields.get("question"), "question")
    if not question:
        raise RowProblem("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise RowProblem(
            f"the question is {len(question):,} characters long; the limit is "
            f"{MAX_QUESTION_CHARS:,}: shorten it"
        )
    language = _language(fields.get("language"))
    return GoldenRow(
        question=question,
        expected_answer=_text(fields.get("expected_answer"), "expected_answer"),
        expected_sources=parse_sources(fields.get("expected_sources")),
        answerable=_answerable(fields.get("answerable")),
        language=language if language is not None else detect_language(question),
        tags=_tags(fields.get("tags")),
    )


def _short(value: str) -> str:
    shown = value.strip()
    return f"“{shown[:40]}…”" if len(shown) > 40 else f"“{shown}”"


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowProblem(f"{key} must be text, not {json.dumps(value)[:40]}")
    return str(value).strip()


def _answerable(value: Any) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, bool):
        return value
    word = str(value).strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise RowProblem(
        f"answerable is {_short(str(value))}; write true or false (yes/no, 1/0 and ja/nei work too)"
    )


def _language(value: Any) -> str | None:
    """The language a curator gave, as an ISO 639-1 code; None when none was given."""
    code = _text(value, "language").lower()
    if not code:
        return None
    match = re.fullmatch(r"([a-z]{2})(?:[-_][a-z0-9]+)*", code)
    if not match:
        raise RowProblem(
            f"language {_short(code)} is not a two-letter ISO 639-1 code such as en, de or nb"
        )
    return _iso_code(match.group(1))


def _iso_code(code: str) -> str:
    # Bokmål is what Norwegian means here; "no" and "nb" must land in one group.
    return "nb" if code == "no" else code.split("-")[0]


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = re.split(r"[;,]", value)
    elif isinstance(value, list):
        items = value
    else:
        raise RowProblem("tags must be text like “travel; hr” or a list of strings")
    tags: dict[str, None] = {}
    for item in items:
        if isinstance(item, dict | list):
            raise RowProblem("each tag must be a word or short text, not a list or object")
        tag = str(item).strip()
        if tag:
            tags[tag] = None
    return list(tags)


# --- expected sources ----------------------------------------------------------------

_PAGE_SUFFIX = re.compile(r"^(?P<doc>.*?)\s*(?:#\s*p?|:)\s*(?P<page>\d+)$", re.IGNORECASE)


def parse_sources(value: Any) -> list[dict[str, Any]]:
    """``handbook.pdf#p12; policy.docx`` or a JSON list into [{"document", "page"}]."""
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = [p for p in re.split(r"[;\n]", value) if p.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise RowProblem(
            "expected_sources must be text like “handbook.pdf#p12; policy.docx” or a list"
        )
    sources: list[dict[str, Any]] = []
    for item in items:
        source = _source(item)
        if source not in sources:
            sources.append(source)
    return sources


def _source(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        document = item.get("document")
        if not isinstance(document, str) or not document.strip():
            raise RowProblem('each expected source needs a "document" (its name or title)')
        return {"document": document.strip(), "page": _page(item.get("page"), document)}
    if not isinstance(item, str):
        raise RowProblem('each expected source must be text or {"document": …, "page": …}')
    text = item.strip()
    match = _PAGE_SUFFIX.match(text)
    if match and match.group("doc"):
        return {"document": match.group("doc"), "page": _page(match.group("page"), text)}
    if "#" in text:
        raise RowProblem(
            f"the page in {_short(text)} cannot be read: write it like handbook.pdf#p12"
        )
    return {"document": text, "page": None}


def _page(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise RowProblem(f"the page of {_short(where)} must be a whole number from 1")
    return int(value)


# --- expected sources against the documents the runner may read ----------------------

_EXTENSION = re.compile(r"\.[a-z][a-z0-9]{0,4}$")


def _plain(name: str) -> str:
    return " ".join(name.split()).casefold()


def _without_extension(name: str) -> str | None:
    """The name without its file extension, or None when it has none."""
    match = _EXTENSION.search(name)
    return name[: match.start()].rstrip() if match else None


def _names_match(a: str, b: str) -> bool:
    a, b = _plain(a), _plain(b)
    if not a or not b:
        return False
    return a == b or _without_extension(a) == b or _without_extension(b) == a


def document_matches(expected: str, title: str, name: str) -> bool:
    """Whether a golden set's source names this document: by title or file name, case
    and spacing ignored, and equal when only one side has the file extension
    ("Travel policy" matches "travel policy.pdf", but "a.pdf" does not match "a.docx")."""
    return _names_match(expected, title) or _names_match(expected, name)


def find_document(expected: str, readable: dict[str, int]) -> int | None:
    """The id of the readable document ``expected`` names (keys: lower-cased titles or
    file names), by the rule of ``document_matches``."""
    return _ReadableIndex(readable).find(expected)


class _ReadableIndex:
    """``readable`` looked up by the ``document_matches`` rule in constant time."""

    def __init__(self, readable: dict[str, int]) -> None:
        self.exact: dict[str, int] = {}
        self.stems: dict[str, int] = {}  # keys that had an extension, without it
        for key, document_id in readable.items():
            plain = _plain(key)
            self.exact.setdefault(plain, document_id)
            stem = _without_extension(plain)
            if stem:
                self.stems.setdefault(stem, document_id)

    def find(self, expected: str) -> int | None:
        plain = _plain(expected)
        if not plain:
            return None
        stem = _without_extension(plain)
        for found in (
            self.exact.get(plain),
            self.exact.get(stem) if stem else None,
            self.stems.get(plain),
        ):
            if found is not None:
                return found
        return None


def check_sources(
    rows: Sequence[GoldenRow],
    readable: dict[str, int],
    lines: Sequence[int] | None = None,
) -> list[RowError]:
    """One error per expected source that names no document the runner may read.

    ``readable`` holds only documents the runner may read, so a forbidden document and a
    missing one get the same sentence. ``lines`` (``ParsedGoldens.lines``) gives the file
    line of each row; without it rows are counted from 1.
    """
    index = _ReadableIndex(readable)
    errors: list[RowError] = []
    for position, row in enumerate(rows):
        line = lines[position] if lines is not None else position + 1
        for source in row.expected_sources:
            document = source["document"]
            if index.find(document) is None:
                message = f"no document called “{document}” in the collections you can read"
                errors.append(RowError(line, message))
    return errors
