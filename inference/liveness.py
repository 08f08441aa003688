"""Two threads an answer worker runs beside each answer, both talking to Redis about it.

- ``AliveSignal`` says "still answering" every few seconds, so a long prompt read (a big
  model on a CPU reads for many seconds before its first token) is never taken for a dead
  worker; the signal stops only when the process does.
- ``StopListener`` waits for the stop button, so the model checks a flag after each token
  instead of asking Redis (a round trip per token, which a fast model feels) and still
  stops within one token of the click.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from inference import events

log = logging.getLogger(__name__)


class AliveSignal:
    def __init__(self, question: Any) -> None:
        self.question = question
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alive", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                events.mark_alive(self.question)
            except Exception:
                log.warning("could not signal that question %s is alive", self.question.pk)
            if self.stop.wait(events.ALIVE_SECONDS / 4):
                return

    def __enter__(self) -> AliveSignal:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class StopListener:
    """Used as ``with StopListener(question) as stop:``; ``stop`` is an Event set when
    someone asks to stop this answer (also when they asked before the listener started)."""

    WAIT_SECONDS = 1

    def __init__(self, question: Any) -> None:
        self.question = question
        self.requested = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stop-listener", daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                if events.wait_for_stop(self.question, self.WAIT_SECONDS):
                    self.requested.set()
                    return
            except Exception:
                log.warning("could not listen for a stop of question %s", self.question.pk)
                if self.done.wait(self.WAIT_SECONDS):
                    return

    def __enter__(self) -> threading.Event:
        self.thread.start()
        return self.requested

    def __exit__(self, *exc: object) -> None:
        self.done.set()  # the listener returns within WAIT_SECONDS; nobody waits for it
