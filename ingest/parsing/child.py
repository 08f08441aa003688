"""The parse sandbox's child process: ``python -m ingest.parsing.child --memory-mb N``.

It reads one JSON request per line on stdin (``{"path", "kind", "language"}``) and
answers on stdout with one JSON message per line: ``{"t": "b", ...}`` per block,
``{"t": "p", "done", "total"}`` for progress, then ``{"t": "end", "rss_mb"}`` or
``{"t": "error", "message"}``. JSON rather than pickle: a parser subverted by a hostile
file must not be able to make the worker run code.

Its address space is capped (RLIMIT_AS), so a file that makes a parser balloon kills this
process, not the worker; the worker also kills it (and its helpers: LibreOffice,
tesseract, pandoc, which share its process group) when a parse runs over time. If the
worker dies, a watchdog notices the new parent and ends the whole group.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

MEMORY_ERROR = "memory"
MEMORY_EXIT = 3
# Set aside at start and let go on MemoryError, so the child can still say why it stops.
_reserve: bytearray | None = None


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)  # the worker is gone: so are we and our helpers


def _send(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, ensure_ascii=False) + "\n")


def _handle(request: dict[str, Any], out: TextIO) -> None:
    # The parsers load after main() has capped this process's memory and redirected
    # stdout, so nothing they import at load time escapes the sandbox's limits.
    from ingest.parsing.base import ParseError
    from ingest.parsing.dispatch import parse

    def progress(done: int, total: int | None) -> None:
        _send(out, {"t": "p", "done": done, "total": total})
        out.flush()

    try:
        blocks = parse(
            Path(request["path"]), request["kind"], progress, request.get("language", "english")
        )
        for block in blocks:
            _send(
                out,
                {
                    "t": "b",
                    "text": block.text,
                    "page": block.page,
                    "heading": block.heading,
                    "kind": block.kind,
                },
            )
    except ParseError as exc:
        _send(out, {"t": "error", "message": str(exc)})
    except MemoryError:
        _out_of_memory(out)
    except RecursionError:
        _send(out, {"t": "error", "message": "This file is nested too deeply to be read."})
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        _send(out, {"t": "error", "message": "", "exception": type(exc).__name__})
    else:
        _send(out, {"t": "end", "rss_mb": _resident_mb()})
    out.flush()


def _resident_mb() -> int:
    """This process's resident memory now, in MB.

    Not ``ru_maxrss``: Linux carries the parent's peak across fork and exec into it, so a
    child of a worker holding 2 GB of models would report 2 GB and be replaced after every
    file."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):  # no /proc: the peak is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // (1 << 20)


def _out_of_memory(out: TextIO | None) -> None:
    global _reserve
    _reserve = None
    try:
        if out is not None:
            _send(out, {"t": "error", "message": MEMORY_ERROR, "fatal": True})
            out.flush()
    finally:
        os._exit(MEMORY_EXIT)  # the heap may be in any state now: start afresh


def main() -> None:
    global _reserve
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args()
    # The protocol owns the real stdout; anything a library prints goes to stderr (the log).
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1 << 16)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # tesseract: one thread beside the embedder
    threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    _limit_memory(args.memory_mb)
    _reserve = bytearray(16 << 20)

    def uncaught(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        # A MemoryError anywhere else (a library's thread, an atexit hook) ends us plainly.
        if issubclass(kind, MemoryError):
            _out_of_memory(out)
        sys.__excepthook__(kind, value, tb)

    def uncaught_in_thread(args: Any) -> None:
        if issubclass(args.exc_type, MemoryError):
            _out_of_memory(out)
        threading.__excepthook__(args)

    sys.excepthook = uncaught
    threading.excepthook = uncaught_in_thread
    import pypdfium2  # noqa: F401  (PDFs are the common case: load before the first request)

    for line in sys.stdin:
        if line.strip():
            try:
                _handle(json.loads(line), out)
            except BrokenPipeError:  # the worker went away mid-file: nobody to tell
                os._exit(0)
    from ingest.parsing import office  # loaded by the first request, if not before

    office.cleanup()


if __name__ == "__main__":
    main()
