"""What the retrieval benchmarks share: the modes they compare, how a run names its
settings, and the scratch person and collection each runs as."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from appliance.accounts.models import Department, Membership, Role, User
from inference.retrieval import Params
from ingest.models import Collection, Document

MODES: tuple[Any, ...] = ("dense", "fulltext", "hybrid")
SCRATCH_PREFIX = "benchmark-retrieval-"


def describe(params: Params) -> dict[str, Any]:
    return asdict(params)


@contextmanager
def scratch_reader(name: str, *, language: str) -> Iterator[tuple[Any, Any]]:
    """A department, a collection and an employee who reads only that collection; all
    removed afterwards (and any left behind by an interrupted earlier run)."""
    remove_scratch()
    tag = f"{SCRATCH_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    department = Department.objects.create(name=tag)
    collection = Collection.objects.create(name=tag, department=department, language=language)
    user = User.objects.create(username=tag, is_active=True)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    Membership.objects.create(user=user, department=department, role=Role.EMPLOYEE)
    try:
        yield user, collection
    finally:
        remove_scratch()


def remove_scratch() -> None:
    collections = Collection.objects.filter(department__name__startswith=SCRATCH_PREFIX)
    Document.objects.filter(collection__in=collections).delete()
    collections.delete()
    User.objects.filter(username__startswith=SCRATCH_PREFIX).delete()
    Department.objects.filter(name__startswith=SCRATCH_PREFIX).delete()
