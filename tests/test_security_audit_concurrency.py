"""Many writers at once: one unbroken chain, no fork, no deadlock.

Each writer is a thread with its own database connection; each event is its own
transaction, and half of the acts first lock a row of their own (as real acts do), to show
that taking the chain lock last cannot deadlock against them.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

from django.db import connection, transaction

from appliance.accounts.models import Department
from appliance.audit import actions as audit
from appliance.audit import integrity
from appliance.audit.models import Action, AuditEvent

WRITERS = int(os.environ.get("APPLIANCE_TEST_AUDIT_WRITERS", "32"))
EVENTS = int(os.environ.get("APPLIANCE_TEST_AUDIT_EVENTS", "1000"))


def _writer(number: int, departments: list[int], start: threading.Barrier, errors: list) -> None:
    rng = random.Random(number)
    try:
        start.wait()
        for i in range(EVENTS):
            with transaction.atomic():
                if i % 2:
                    # The act's own row lock first, the chain lock last (inside record).
                    Department.objects.select_for_update().get(pk=rng.choice(departments))
                audit.record(
                    Action.QUESTION, actor_name=f"writer-{number}", details={"n": number, "i": i}
                )
    except Exception as exc:  # reported by the test, with the writer that failed
        errors.append((number, repr(exc)))
    finally:
        connection.close()


def test_concurrent_writers_keep_one_unbroken_chain(live_db: Any, people: Any) -> None:
    departments = [people.hr.pk, people.finance.pk]
    before = AuditEvent.objects.count()
    errors: list[tuple[int, str]] = []
    start = threading.Barrier(WRITERS)
    threads = [
        threading.Thread(target=_writer, args=(n, departments, start, errors), daemon=True)
        for n in range(WRITERS)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    elapsed = time.monotonic() - began
    assert not any(t.is_alive() for t in threads), "a writer hung (deadlock?)"
    assert errors == []

    written = WRITERS * EVENTS
    assert AuditEvent.objects.count() == before + written
    hashes = AuditEvent.objects.values_list("prev_hash", flat=True)
    assert len(set(hashes)) == len(hashes), "two rows follow the same row: the chain forked"
    report = integrity.verify_database()
    assert report.rows == before + written
    per_writer = AuditEvent.objects.filter(actor="writer-0").values_list("details", flat=True)
    assert [d["i"] for d in per_writer] == list(range(EVENTS))  # each writer's order kept
    print(
        f"\n{WRITERS} writers x {EVENTS} events: {written} rows in {elapsed:.1f} s "
        f"({written / elapsed:.0f} events/s), chain verified"
    )
