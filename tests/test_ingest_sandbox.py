"""The parse sandbox: a file that exhausts memory, runs too long or crashes its reader
costs one child process, never the worker, and the next file is read as usual."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.parsing import ParseError
from ingest.parsing.sandbox import RECYCLE_RSS_MB, Sandbox
from tests.conftest import DOCUMENTS
from tests.support.stack import wait_for

SLOW = DOCUMENTS / "winter-sports.epub"  # pandoc and unstructured take many seconds on it
QUICK = DOCUMENTS / "pdf" / "reliance.pdf"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    running = Sandbox(memory_mb=4096, time_limit_seconds=300)
    yield running
    running.close()


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                continue
    return members


def test_blocks_come_back_with_pages_and_the_child_serves_the_next_file(
    sandbox: Sandbox,
) -> None:
    first = list(sandbox.parse(QUICK, "pdf"))
    child = sandbox._child
    second = list(sandbox.parse(DOCUMENTS / "fake-email.msg", "msg"))
    assert {b.page for b in first} == {1, 2, 3}
    assert any("test email" in b.text.lower() for b in second)
    assert sandbox._child is child  # one child, reused: unstructured is imported once


def test_a_parse_error_comes_back_as_the_reason_and_the_child_lives_on(
    sandbox: Sandbox,
) -> None:
    list(sandbox.parse(QUICK, "pdf"))
    child = sandbox._child
    with pytest.raises(ParseError, match="Password-protected PDF"):
        list(sandbox.parse(DOCUMENTS / "pdf" / "password.pdf", "pdf"))
    assert sandbox._child is child and child.alive()


def test_the_reader_is_kept_while_the_worker_holds_much_memory(sandbox: Sandbox) -> None:
    # An ingest worker holds the embedding model and torch. Its memory is not the reader's:
    # the reader is replaced only when it grows large itself.
    ballast = bytearray((RECYCLE_RSS_MB + 256) << 20)
    for page in range(0, len(ballast), 4096):
        ballast[page] = 1  # resident, not merely reserved
    list(sandbox.parse(QUICK, "pdf"))
    child = sandbox._child
    assert child is not None and 0 < child.rss_mb < RECYCLE_RSS_MB
    list(sandbox.parse(QUICK, "pdf"))
    assert sandbox._child is child
    del ballast


def test_a_file_that_needs_too_much_memory_stops_only_its_reader(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    paragraph = "All happy families are alike; each unhappy family is unhappy in its own way. "
    huge.write_text((paragraph * 3 + "\n\n") * 180_000)  # 40 MB of text
    sandbox = Sandbox(memory_mb=1200, time_limit_seconds=300)
    try:
        with pytest.raises(ParseError, match="more than the 1,200 MB of memory"):
            list(sandbox.parse(huge, "txt"))
        assert len(list(sandbox.parse(QUICK, "pdf"))) > 10  # a fresh reader took over
    finally:
        sandbox.close()


def test_a_parse_over_its_time_limit_is_stopped_with_its_helpers(sandbox: Sandbox) -> None:
    list(sandbox.parse(QUICK, "pdf"))
    child = sandbox._child
    started = time.monotonic()
    with pytest.raises(ParseError, match="took longer than"):
        list(sandbox.parse(SLOW, "epub", time_limit=2))
    assert time.monotonic() - started < 15
    assert not child.alive()
    wait_for(lambda: not group_members(child.process.pid), timeout=10, message="helpers gone")
    assert len(list(sandbox.parse(QUICK, "pdf"))) > 10


def test_time_spent_waiting_for_the_consumer_does_not_count(sandbox: Sandbox) -> None:
    blocks = sandbox.parse(QUICK, "pdf", time_limit=1.5)
    first = next(blocks)
    time.sleep(2.5)  # the worker busy embedding: the reader waits, not parses
    rest = list(blocks)
    assert first.page == 1 and rest


def test_a_reader_that_crashes_is_reported_and_replaced(sandbox: Sandbox) -> None:
    list(sandbox.parse(QUICK, "pdf"))
    first = sandbox._child
    assert first is not None
    blocks = sandbox.parse(SLOW, "epub")

    def reading_slow() -> bool:
        # The child the slow file went to: the same one (now on its second file), or a new
        # one when the first was recycled after the quick file (it may grow past the limit).
        child = sandbox._child
        return child is not None and child.documents == (2 if child is first else 1)

    def crash() -> None:
        wait_for(reading_slow, timeout=10, message="the slow file to reach a reader")
        time.sleep(1)
        os.kill(sandbox._child.process.pid, signal.SIGSEGV)  # type: ignore[union-attr]

    threading.Thread(target=crash, daemon=True).start()
    with pytest.raises(ParseError, match="crashed on it"):
        list(blocks)
    assert len(list(sandbox.parse(QUICK, "pdf"))) > 10


def test_the_reader_ends_with_the_worker_that_started_it() -> None:
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import threading
                import time
                from pathlib import Path
                from ingest.parsing.sandbox import Sandbox
                sandbox = Sandbox(4096, 300)
                blocks = sandbox.parse(Path({str(SLOW)!r}), "epub")
                def show():
                    while sandbox._child is None:
                        time.sleep(0.05)
                    print(sandbox._child.process.pid, flush=True)
                threading.Thread(target=show, daemon=True).start()
                list(blocks)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        child_pid = int(worker.stdout.readline())  # type: ignore[union-attr]
        assert Path(f"/proc/{child_pid}").exists()
        time.sleep(1)
        worker.kill()  # SIGKILL: no clean-up code runs in the worker
        worker.wait(10)
        wait_for(
            lambda: not group_members(child_pid), timeout=10, message="the orphaned reader to end"
        )
    finally:
        if worker.poll() is None:
            worker.kill()
