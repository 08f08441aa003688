"""Parsing in a child process with a memory cap and a time limit, blocks streamed back.

A hostile or broken file (a decompression bomb, a parser stuck in a loop, a crash in C
code) then costs one child process, never the ingest worker: the worker reports a reason
and goes on with the next file. The child lives on between documents, so the few
seconds of importing unstructured are paid once per worker, not once per file; it is
replaced after a crash, a time-out, or when it has grown large.

Blocks arrive while the child is still parsing, so the worker embeds the first chunks of
a long document while later pages are still being read.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.child import MEMORY_ERROR, MEMORY_EXIT

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
QUEUE_MESSAGES = 4096  # read-ahead: about 400 pages of a dense PDF
RECYCLE_RSS_MB = 1536  # a child that grew past this is replaced after its document
RECYCLE_DOCUMENTS = 500


class _Child:
    def __init__(self, memory_mb: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_THREAD_LIMIT": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ingest.parsing.child",
                "--memory-mb",
                str(memory_mb),
                "--parent",
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            process_group=0,  # its own group: a time-out ends its helpers with it
        )
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_MESSAGES)
        self.blocked_seconds = 0.0  # time the reader waited on a full queue (the consumer)
        self.documents = 0
        self.rss_mb = 0
        self.reader = threading.Thread(target=self._read, name="parse-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("parse sandbox sent a line that is not JSON: %r", line[:200])
                continue
            started = time.monotonic()
            self.messages.put(message)
            self.blocked_seconds += time.monotonic() - started
        self.messages.put(None)  # the child is gone

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, request: dict[str, Any]) -> None:
        stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        stdin.write((json.dumps(request) + "\n").encode())
        stdin.flush()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


class Sandbox:
    """One child at a time; ``parse`` is not reentrant (a worker reads one file at a time)."""

    def __init__(self, memory_mb: int, time_limit_seconds: float) -> None:
        self.memory_mb = memory_mb
        self.time_limit = time_limit_seconds
        self._child: _Child | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None

    def _ready_child(self) -> _Child:
        child = self._child
        if child is not None and (
            not child.alive()
            or child.rss_mb > RECYCLE_RSS_MB
            or child.documents >= RECYCLE_DOCUMENTS
        ):
            child.kill()
            child = None
        if child is None:
            child = self._child = _Child(self.memory_mb)
        return child

    def parse(
        self,
        path: Path,
        kind: str,
        progress: ProgressCallback | None = None,
        language: str = "english",
        time_limit: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Block]:
        """Blocks of the file, as ``parsing.parse`` gives them, read in the child. Setting
        ``cancel`` stops the reading within a second (the child is then replaced)."""
        if not self._lock.acquire(timeout=5):
            raise RuntimeError("the parse sandbox reads one file at a time")
        try:
            yield from self._parse(
                path, kind, progress, language, time_limit or self.time_limit, cancel
            )
        finally:
            self._lock.release()

    def _parse(
        self,
        path: Path,
        kind: str,
        progress: ProgressCallback | None,
        language: str,
        time_limit: float,
        cancel: threading.Event | None,
    ) -> Iterator[Block]:
        child = self._ready_child()
        request = {"path": str(path), "kind": kind, "language": language}
        try:
            child.send(request)
        except (BrokenPipeError, OSError):  # it died while idle: one fresh try
            child.kill()
            child = self._child = _Child(self.memory_mb)
            child.send(request)
        child.documents += 1
        started = time.monotonic()
        blocked_before = child.blocked_seconds
        finished = False
        try:
            while True:
                # Only the child's own time counts: waiting for the consumer does not.
                spent = time.monotonic() - started - (child.blocked_seconds - blocked_before)
                try:
                    message = child.messages.get(timeout=min(max(time_limit - spent, 0.01), 0.5))
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        raise ParseError("The reading of this file was stopped.") from None
                    if time.monotonic() - started - (child.blocked_seconds - blocked_before) < (
                        time_limit
                    ):
                        continue
                    raise ParseError(
                        f"Reading this file took longer than the {_duration(time_limit)} "
                        "allowed, so it was stopped. Split it into smaller files or save it in "
                        "a simpler format."
                    ) from None
                if message is None:
                    raise ParseError(self._death_reason(child))
                kind_of = message.get("t")
                if kind_of == "b":
                    yield Block(
                        text=message["text"],
                        page=message.get("page"),
                        heading=message.get("heading", ""),
                        kind=message.get("kind", "text"),
                    )
                elif kind_of == "p":
                    if progress is not None:
                        progress(int(message["done"]), message.get("total"))
                elif kind_of == "end":
                    child.rss_mb = int(message.get("rss_mb") or 0)
                    finished = True
                    return
                elif kind_of == "error":
                    finished = not message.get("fatal")
                    raise ParseError(self._error_text(message, kind))
        finally:
            if not finished:
                # Stopped early (time-out, crash, or the consumer gave up): the child may
                # still be busy with this file, so it cannot serve the next one.
                child.kill()
                if self._child is child:
                    self._child = None

    def _error_text(self, message: dict[str, Any], kind: str) -> str:
        text = str(message.get("message") or "")
        if text == MEMORY_ERROR:
            return self._memory_reason()
        if not text:
            return (
                f"An unexpected error stopped the reading of this {kind.upper()} file "
                f"({message.get('exception', 'error')}). Retry it; if it fails again, tell "
                "your IT team (details are in the ingest log)."
            )
        return text

    def _memory_reason(self) -> str:
        return (
            f"Reading this file needed more than the {self.memory_mb:,} MB of memory allowed "
            "for one file, so it was stopped. It may be malformed or far larger inside than "
            "it looks; try a re-saved or smaller copy."
        )

    def _death_reason(self, child: _Child) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(5)
        code = child.process.returncode
        log.warning("parse sandbox died with exit code %s", code)
        if code in (MEMORY_EXIT, -signal.SIGKILL):
            # Our own MemoryError exit, or the kernel's out-of-memory killer (we kill only
            # on time-outs, which are reported before we get here).
            return self._memory_reason()
        return (
            "The program reading this file crashed on it (or ran out of the "
            f"{self.memory_mb:,} MB of memory allowed for one file), so it was stopped. The "
            "file may be damaged; try a re-saved copy."
        )


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} second{'s' if round(seconds) != 1 else ''}"


_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared(memory_mb: int, time_limit_seconds: float) -> Sandbox:
    """The sandbox of this process (one per ingest worker process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sandbox(memory_mb, time_limit_seconds)
            atexit.register(_shared.close)
        _shared.memory_mb, _shared.time_limit = memory_mb, time_limit_seconds
        return _shared
