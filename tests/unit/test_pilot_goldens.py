"""Reading golden-set files: good rows kept, each bad row or bad file told why.

Pure Python: no database. Files are built in the tests as bytes, as a browser would send
them.
"""

from __future__ import annotations

import json
import random

import pytest

from inference.pilot.goldens import (
    MAX_FILE_BYTES,
    MAX_QUESTION_CHARS,
    MAX_ROWS,
    GoldenRow,
    ParsedGoldens,
    RowError,
    check_sources,
    detect_language,
    document_matches,
    find_document,
    looks_like_formula,
    parse_file,
)


def csv_file(text: str, name: str = "golden.csv") -> ParsedGoldens:
    return parse_file(name, text.encode("utf-8"))


def jsonl_file(*objects: object, name: str = "golden.jsonl") -> ParsedGoldens:
    text = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
    return parse_file(name, text.encode("utf-8"))


def messages(parsed: ParsedGoldens) -> dict[int, str]:
    return {e.line: e.message for e in parsed.errors}


# --- good files ----------------------------------------------------------------------


@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_it_reads_csv_with_any_common_separator(separator: str) -> None:
    header = separator.join(["Question", "Expected answer", "expected_sources", "answerable"])
    row = separator.join(["How many vacation days do I get?", "25", "handbook.pdf#p12", "yes"])
    parsed = csv_file(f"{header}\n{row}\n", name="g.tsv" if separator == "\t" else "g.csv")

    assert parsed.fatal is None and parsed.errors == [] and parsed.format == "csv"
    assert parsed.rows == [
        GoldenRow(
            question="How many vacation days do I get?",
            expected_answer="25",
            expected_sources=[{"document": "handbook.pdf", "page": 12}],
            answerable=True,
            language="en",
            tags=[],
        )
    ]


def test_it_reads_csv_sources_pages_and_tags_in_every_written_form() -> None:
    parsed = csv_file(
        "question,expected_sources,tags,language\n"
        '"Where is the travel policy?","handbook.pdf#p12; travel-policy.docx;'
        ' Guide#3; notes.txt:7",travel; hr,en\n'
        '"What about hotels?","Handbook.PDF#P 2","travel,hotels",en\n'
    )

    assert parsed.errors == []
    first, second = parsed.rows
    assert first.expected_sources == [
        {"document": "handbook.pdf", "page": 12},
        {"document": "travel-policy.docx", "page": None},
        {"document": "Guide", "page": 3},
        {"document": "notes.txt", "page": 7},
    ]
    assert first.tags == ["travel", "hr"]
    assert second.expected_sources == [{"document": "Handbook.PDF", "page": 2}]
    assert second.tags == ["travel", "hotels"]


def test_it_reads_json_lines_with_sources_as_strings_or_objects() -> None:
    parsed = jsonl_file(
        {
            "question": "Wie viele Urlaubstage habe ich?",
            "expected_answer": "30",
            "expected_sources": ["handbuch.pdf#p4", {"document": "Reise", "page": 2}],
            "answerable": "ja",
            "tags": ["hr"],
            "id": "ignored",
        },
        {"question": "Hvor mange feriedager har jeg i året?", "answerable": False, "tags": "hr"},
        name="golden.json",
    )

    assert parsed.fatal is None and parsed.errors == [] and parsed.format == "jsonl"
    german, norwegian = parsed.rows
    assert german.expected_sources == [
        {"document": "handbuch.pdf", "page": 4},
        {"document": "Reise", "page": 2},
    ]
    assert german.language == "de" and german.answerable is True
    assert norwegian.answerable is False and norwegian.tags == ["hr"]


def test_as_dict_has_exactly_the_six_fields() -> None:
    row = GoldenRow(question="Q?", expected_sources=[{"document": "a", "page": None}])
    assert row.as_dict() == {
        "question": "Q?",
        "expected_answer": "",
        "expected_sources": [{"document": "a", "page": None}],
        "answerable": True,
        "language": "",
        "tags": [],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("False", False),
        ("YES", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("ja", True),
        ("Nei", False),
        ("", True),
    ],
)
def test_it_reads_answerable_words(value: str, expected: bool) -> None:
    parsed = csv_file(f"question,answerable\nIs there a dress code at work?,{value}\n")
    assert parsed.errors == []
    assert parsed.rows[0].answerable is expected


def test_it_keeps_given_languages_as_iso_codes() -> None:
    parsed = csv_file(
        "question,language\nFirst question here?,EN-us\nAndre spørsmål her?,no\n"
        "Tredje spørsmål her?,nb\nQuatrième question?,fr\n"
    )
    assert [r.language for r in parsed.rows] == ["en", "nb", "nb", "fr"]


def test_it_detects_languages_the_same_way_every_time() -> None:
    text = (
        "question\nHow many vacation days does an employee get per year?\n"
        "Wie viele Urlaubstage bekommt ein Mitarbeiter im Jahr?\n"
        "Hvem godkjenner reiseregningen min?\nHei?\n12345\n"
    )
    first = [r.language for r in csv_file(text).rows]
    again = [r.language for r in csv_file(text).rows]
    assert first == again == ["en", "de", "nb", "", ""]


def test_detect_language_maps_norwegian_to_bokmal() -> None:
    assert detect_language("Hva er reglene for reiser til utlandet for ansatte?") == "nb"


# --- bad rows beside good ones -------------------------------------------------------


def test_bad_rows_are_reported_and_every_good_row_is_kept() -> None:
    parsed = csv_file(
        "question,expected_answer,answerable,language\n"
        "What is the travel allowance?,200,yes,\n"  # line 2: good
        ",an answer without a question,,\n"  # line 3: empty question
        "Who approves expenses?,The manager,maybe,\n"  # line 4: answerable unreadable
        "what is the   TRAVEL allowance?,dup,,\n"  # line 5: same as line 2
        "When is payday?,The 20th,no,english\n"  # line 6: language not a code
        "Where do I send receipts?,To finance,,en\n"  # line 7: good
    )

    assert parsed.fatal is None
    assert [r.question for r in parsed.rows] == [
        "What is the travel allowance?",
        "Where do I send receipts?",
    ]
    assert parsed.lines == [2, 7]
    found = messages(parsed)
    assert set(found) == {3, 4, 5, 6}
    assert "question is empty" in found[3]
    assert "“maybe”" in found[4] and "true or false" in found[4]
    assert "same question as row 2" in found[5]
    assert "“english”" in found[6] and "ISO 639-1" in found[6]
    assert str(parsed.errors[0]) == "row 3: the question is empty"


def test_line_numbers_are_those_of_the_file_with_blank_lines_and_multiline_cells() -> None:
    parsed = csv_file(
        'question,expected_answer\n\n"First question here?","one\ntwo\nthree"\n,empty\n'
    )
    assert parsed.lines == [3]
    assert messages(parsed) == {6: "the question is empty"}


def test_a_question_over_the_limit_is_refused_with_its_length() -> None:
    long_question = "Why " * (MAX_QUESTION_CHARS // 4) + "?"
    parsed = jsonl_file({"question": long_question}, {"question": "Short and fine?"})
    assert [r.question for r in parsed.rows] == ["Short and fine?"]
    assert "4,001 characters" in parsed.errors[0].message
    assert "4,000" in parsed.errors[0].message


def test_a_row_with_more_cells_than_the_header_says_to_quote() -> None:
    parsed = csv_file('question\nWho, exactly, approves this?\n"Who, then?"\n')
    assert [r.question for r in parsed.rows] == ["Who, then?"]
    assert "quotes" in messages(parsed)[2]


def test_json_lines_that_are_not_objects_are_refused_one_by_one() -> None:
    text = (
        '{"question": "A good question here?"}\n'
        '["question", "in a list"]\n'
        '"just a string"\n'
        "42\n"
        '{"question": "broken",\n'
        '{"question": "Another good one?"}\n'
    )
    parsed = parse_file("g.jsonl", text.encode())
    assert [r.question for r in parsed.rows] == ["A good question here?", "Another good one?"]
    found = messages(parsed)
    assert set(found) == {2, 3, 4, 5}
    assert "list, not an object" in found[2]
    assert "string, not an object" in found[3]
    assert "int, not an object" in found[4]
    assert "not valid JSON" in found[5]


@pytest.mark.parametrize(
    ("sources", "words"),
    [
        ("handbook.pdf#p0", "whole number from 1"),
        ("handbook.pdf#pX", "handbook.pdf#p12"),
    ],
)
def test_an_unreadable_page_is_a_row_error(sources: str, words: str) -> None:
    parsed = csv_file(f"question,expected_sources\nWhere is it written?,{sources}\n")
    assert parsed.rows == []
    assert words in parsed.errors[0].message


def test_json_sources_without_a_document_are_refused() -> None:
    parsed = jsonl_file({"question": "Where?", "expected_sources": [{"page": 3}]})
    assert '"document"' in parsed.errors[0].message


# --- formula injection ---------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        '=HYPERLINK("http://evil.example","click")',
        "=1+1",
        "+1+1",
        "-2+3",
        "@SUM(A1:A2)",
        "-cmd|' /C calc'!A0",
        "\t=1+1",
        "\r@SUM(1)",
        "-A1",
    ],
)
def test_a_cell_that_looks_like_a_formula_refuses_its_row(cell: str) -> None:
    text = (
        "question,expected_answer\n"
        "A good question first?,fine\n"
        f'"{cell.replace(chr(34), chr(34) * 2)}",x\n'
        "What is our formula for overtime?,=B2*1.5\n"
    )
    parsed = csv_file(text)
    assert [r.question for r in parsed.rows] == ["A good question first?"]
    first, last = parsed.errors
    assert first.line == 3 and "question cell looks like a spreadsheet formula" in first.message
    # A carriage return inside the quoted cell is a line break to an editor too.
    assert last.line == 4 + cell.count("\r")
    assert "expected_answer cell looks like a spreadsheet formula" in last.message


@pytest.mark.parametrize(
    "cell",
    ["- list item about travel", "-40", "+47 22 00 00 00", "@alice asked this", "50%", "a=b?"],
)
def test_ordinary_text_that_starts_like_a_formula_is_kept(cell: str) -> None:
    assert not looks_like_formula(cell)
    parsed = csv_file(f"question,expected_answer\nWhat does the note say?,{cell}\n")
    assert parsed.errors == []
    assert parsed.rows[0].expected_answer == cell


# --- bad files -----------------------------------------------------------------------


def test_a_missing_question_column_is_fatal_and_names_the_columns_found() -> None:
    parsed = csv_file("Spørsmål;Svar;Kilder\nHva?;Ja;x\n")
    assert parsed.rows == []
    assert parsed.fatal is not None
    assert "no “question” column" in parsed.fatal
    assert "“Spørsmål”, “Svar”, “Kilder”" in parsed.fatal


def test_json_lines_without_any_question_key_is_fatal_naming_the_keys() -> None:
    parsed = jsonl_file({"query": "What?", "answer": "x"})
    assert parsed.fatal is not None
    assert "no “question” column" in parsed.fatal and "“query”, “answer”" in parsed.fatal


def test_a_file_in_another_encoding_is_fatal_and_says_how_to_save_it() -> None:
    data = "question\nHvor mange feriedager får jeg?\n".encode("cp1252")
    parsed = parse_file("golden.csv", data)
    assert parsed.rows == []
    assert parsed.fatal is not None
    assert "not UTF-8 text: save it as UTF-8 (CSV UTF-8 in Excel)" in parsed.fatal
    assert "line 2" in parsed.fatal


def test_utf16_from_excel_is_fatal_with_the_same_advice() -> None:
    parsed = parse_file("golden.csv", "question\nHva?\n".encode("utf-16"))
    assert parsed.fatal is not None and "CSV UTF-8 in Excel" in parsed.fatal


def test_utf8_with_a_byte_order_mark_is_read() -> None:
    parsed = parse_file(
        "golden.csv", "question\nHvor mange feriedager får jeg?\n".encode("utf-8-sig")
    )
    assert parsed.fatal is None
    assert parsed.rows[0].question == "Hvor mange feriedager får jeg?"


def test_a_file_over_the_size_limit_is_fatal_with_its_size() -> None:
    data = b"question\n" + b"What is the policy on this matter?\n" * (MAX_FILE_BYTES // 35 + 10)
    parsed = parse_file("golden.csv", data)
    assert parsed.fatal is not None
    assert f"{len(data) / 1024 / 1024:.1f} MB" in parsed.fatal and "5 MB" in parsed.fatal


def test_ten_megabytes_of_random_bytes_is_fatal() -> None:
    data = random.Random(16).randbytes(10 * 1024 * 1024)
    parsed = parse_file("golden.csv", data)
    assert parsed.rows == [] and parsed.errors == []
    assert parsed.fatal is not None and "10.0 MB" in parsed.fatal


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (random.Random(3).randbytes(50_000), "binary file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "binary file"),
        (b"PK\x03\x04" + bytes(100), "Excel workbook"),
        ("question\n" + "\x01\x02\x03\x04" * 100 + "\n", "binary file"),
    ],
)
def test_binary_content_is_fatal(data: bytes | str, words: str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    parsed = parse_file("golden.csv", raw)
    assert parsed.fatal is not None and words in parsed.fatal


@pytest.mark.parametrize("data", [b"", b"  \n\n", b"\xef\xbb\xbf\n"])
def test_an_empty_file_is_fatal(data: bytes) -> None:
    parsed = parse_file("golden.csv", data)
    assert parsed.fatal is not None and "empty" in parsed.fatal


def test_an_unknown_extension_is_fatal_and_names_the_formats() -> None:
    parsed = parse_file("golden.xlsx", b"question\nWhat?\n")
    assert parsed.fatal is not None and ".csv" in parsed.fatal and ".jsonl" in parsed.fatal


def test_content_decides_the_format_whatever_the_extension() -> None:
    as_jsonl = parse_file("golden.csv", b'{"question": "Which format is this file?"}\n')
    as_csv = parse_file("golden.jsonl", b"question\nWhich format is this file?\n")
    assert as_jsonl.format == "jsonl" and as_csv.format == "csv"
    assert as_jsonl.rows == as_csv.rows


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[{"question": "What?"}]', "one JSON array"),
        ('{\n  "question": "What?"\n}\n', "one object per line"),
    ],
)
def test_json_that_is_not_json_lines_is_fatal_and_says_how(text: str, words: str) -> None:
    parsed = parse_file("golden.json", text.encode())
    assert parsed.fatal is not None and words in parsed.fatal


def test_more_rows_than_allowed_is_fatal() -> None:
    lines = "".join(f"Question number {n}?,en\n" for n in range(MAX_ROWS + 1))
    parsed = csv_file("question,language\n" + lines)
    assert parsed.rows == []
    assert (
        parsed.fatal is not None and "5,001 questions" in parsed.fatal and "5,000" in parsed.fatal
    )


def test_exactly_the_row_limit_is_read() -> None:
    lines = "".join(f"Question number {n}?,en\n" for n in range(MAX_ROWS))
    parsed = csv_file("question,language\n" + lines)
    assert parsed.fatal is None and len(parsed.rows) == MAX_ROWS


# --- expected sources against readable documents ------------------------------------


READABLE = {"handbook.pdf": 1, "travel policy": 2, "reiseregler.docx": 3}


def test_sources_naming_no_readable_document_get_one_sentence_for_missing_and_forbidden() -> None:
    parsed = csv_file(
        "question,expected_sources\n"
        "Where is the dress code?,Handbook#p3\n"
        "What are the travel rules?,travel policy.PDF; Reiseregler\n"
        "What are the salaries?,salaries.xlsx\n"  # forbidden to this runner
        "What is the moon made of?,moon.pdf; handbook.pdf\n"  # does not exist
    )
    errors = check_sources(parsed.rows, READABLE, parsed.lines)
    assert [str(e) for e in errors] == [
        "row 4: no document called “salaries.xlsx” in the collections you can read",
        "row 5: no document called “moon.pdf” in the collections you can read",
    ]


def test_check_sources_counts_rows_from_one_without_lines() -> None:
    rows = [GoldenRow("Q1?"), GoldenRow("Q2?", expected_sources=[{"document": "x", "page": 1}])]
    assert check_sources(rows, READABLE) == [
        RowError(2, "no document called “x” in the collections you can read")
    ]


@pytest.mark.parametrize(
    ("expected", "title", "name", "matches"),
    [
        ("Travel policy", "Travel Policy", "tp.pdf", True),
        ("Travel policy", "", "travel policy.pdf", True),
        ("travel policy.pdf", "Travel  policy", "", True),
        ("TRAVEL-POLICY.DOCX", "", "travel-policy.docx", True),
        ("policy.pdf", "", "policy.docx", False),
        ("Report v2", "", "report v2.1", False),
        ("Travel", "Travel policy", "travel policy.pdf", False),
        ("", "", "", False),
    ],
)
def test_document_matches(expected: str, title: str, name: str, matches: bool) -> None:
    assert document_matches(expected, title, name) is matches


def test_find_document_follows_document_matches() -> None:
    keys = ["handbook.pdf", "travel policy", "report.v2", "notes.txt", "guide"]
    readable = {key: n for n, key in enumerate(keys, start=1)}
    for expected in [*keys, "Handbook", "travel policy.pdf", "report.v2.pdf", "notes", "x.md"]:
        by_rule = {n for key, n in readable.items() if document_matches(expected, key, key)}
        found = find_document(expected, readable)
        assert (found in by_rule) if by_rule else found is None, expected


def test_json_text_holding_unicode_line_separators_stays_one_line() -> None:
    parsed = jsonl_file(
        {"question": "What does this say?", "expected_answer": "one\u2028two\x85three"},
        {"question": "And this one here?"},
    )
    assert parsed.errors == []
    assert parsed.rows[0].expected_answer == "one\u2028two\x85three"
    assert parsed.lines == [1, 2]


def test_windows_line_endings_are_read() -> None:
    parsed = parse_file("g.csv", b"question;answerable\r\nWhat is the dress code?;nei\r\n")
    assert parsed.errors == [] and parsed.rows[0].answerable is False


def test_json_values_of_the_wrong_kind_are_row_errors() -> None:
    parsed = jsonl_file(
        {"question": "What is the answer here?", "expected_answer": ["a", "list"]},
        {"question": "Is this answerable at all?", "answerable": "perhaps"},
        {"question": "Which tags are these?", "tags": {"a": 1}},
        {
            "question": "A fine question to keep?",
            "answerable": 0,
            "expected_answer": 42,
            "language": "en",
        },
    )
    found = messages(parsed)
    assert "expected_answer must be text" in found[1]
    assert "“perhaps”" in found[2]
    assert "tags must be" in found[3]
    assert parsed.rows == [GoldenRow("A fine question to keep?", "42", [], False, "en", [])]


def test_a_quote_that_never_closes_loses_only_its_own_row() -> None:
    parsed = csv_file(
        "question,expected_answer\n"
        "First question here?,one\n"
        '"Open quote never closed,two\n'
        "Third question here?,three\n"
        'Fourth "quoted" question?,four\n'
        '"Quoted" then more words?,five\n'
        '"Fine, quoted question?","six ""with"" quotes"\n'
    )
    assert [(line, r.question) for line, r in zip(parsed.lines, parsed.rows, strict=True)] == [
        (2, "First question here?"),
        (4, "Third question here?"),
        (5, 'Fourth "quoted" question?'),
        (7, "Fine, quoted question?"),
    ]
    assert parsed.rows[-1].expected_answer == 'six "with" quotes'
    found = messages(parsed)
    assert set(found) == {3, 6}
    assert "quote marks in this row do not pair up" in found[3]


def test_a_quote_left_open_at_the_end_of_the_file_keeps_the_rows_after_it() -> None:
    parsed = csv_file('question\nGood one first?\n"Never closed\nLast good question?\n')
    assert [r.question for r in parsed.rows] == ["Good one first?", "Last good question?"]
    assert list(messages(parsed)) == [3]
