"""Log lines are one JSON object each, carry the ids bound to the work at hand, and keep
what people wrote out unless the debug setting says otherwise."""

from __future__ import annotations

import json
import logging
import sys

from django.test import override_settings

from appliance import logs


def line(logger: str = "appliance.test", **kwargs: object) -> dict:
    record = logging.LogRecord(
        logger, logging.INFO, __file__, 1, "question %s: %s", (7, "done"), None
    )
    for name, value in kwargs.items():
        setattr(record, name, value)
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text
    return json.loads(text)


def test_a_line_is_one_json_object_with_the_bound_ids_and_the_extras() -> None:
    with logs.bound(request_id="r-123456789", question_id=7):
        entry = line(event="answer.finished", ttft_ms=812)
    assert entry["message"] == "question 7: done"
    assert entry["level"] == "INFO" and entry["logger"] == "appliance.test"
    assert entry["request_id"] == "r-123456789" and entry["question_id"] == 7
    assert entry["event"] == "answer.finished" and entry["ttft_ms"] == 812
    assert entry["time"].endswith("+00:00") and isinstance(entry["pid"], int)
    assert "request_id" not in line()  # unbound again after the block


def test_a_traceback_stays_inside_its_one_line() -> None:
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = logs.JsonFormatter().format(record)
    assert len(text.splitlines()) == 1
    assert "ValueError: first\nsecond" in json.loads(text)["exception"]


def test_nested_bindings_add_up_and_unwind() -> None:
    with logs.bound(request_id="outer-request"):
        with logs.bound(document_id=3):
            assert logs.current() == {"request_id": "outer-request", "document_id": 3}
        assert logs.current() == {"request_id": "outer-request"}
    assert logs.current() == {}


def test_question_text_is_left_out_unless_the_debug_setting_is_on() -> None:
    secret = "Is Mallory on the redundancy list?"
    assert logs.content(secret) == "<34 characters, not logged>"
    with override_settings(LOG_CONTENT=True):
        assert logs.content(secret) == secret
