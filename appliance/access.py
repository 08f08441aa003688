"""The one door to documents.

Every query that returns collections, documents, chunks, citations or answers for a person
starts from these functions (through the ``visible_to`` managers and the
``get_<thing>_for_user`` helpers). Search builds its SQL from the same querysets, so the
access filter sits inside the very statement that ranks chunks.

Rules:
- A person reads a collection when they hold a reader role (employee or curator) in the
  department that owns it, in a department it is shared with, or anywhere when it is
  shared with the whole organisation.
- Auditors and operators read no documents by virtue of those roles.
- A curator manages (uploads to, deletes from, shares) only their own department's
  collections.
- Nothing is cached: a removed membership or share counts from the very next query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Exists, Q, QuerySet
from django.http import Http404

from appliance.accounts.models import READER_ROLES, Membership, Role

if TYPE_CHECKING:
    from ingest.models import Collection


def _is_person(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def reader_department_ids(user: Any) -> QuerySet:
    return Membership.objects.filter(user_id=user.pk, role__in=READER_ROLES).values("department_id")


def readable_collections_filter(user: Any) -> Q:
    """A filter on Collection rows that ``user`` may read."""
    if not _is_person(user):
        return Q(pk__in=[])
    from ingest.models import CollectionShare

    departments = reader_department_ids(user)
    shared = CollectionShare.objects.filter(department_id__in=departments).values("collection_id")
    is_reader_anywhere = Exists(Membership.objects.filter(user_id=user.pk, role__in=READER_ROLES))
    return (
        Q(department_id__in=departments)
        | Q(pk__in=shared)
        | (Q(shared_with_all=True) & is_reader_anywhere)
    )


def managed_collections_filter(user: Any) -> Q:
    """A filter on Collection rows whose documents ``user`` may change (curators)."""
    if not _is_person(user):
        return Q(pk__in=[])
    departments = Membership.objects.filter(user_id=user.pk, role=Role.CURATOR).values(
        "department_id"
    )
    return Q(department_id__in=departments)


def get_or_404(queryset: QuerySet, **lookup: Any) -> Any:
    """One object from an already access-filtered queryset; missing and forbidden alike 404."""
    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise Http404("Not found") from None


def get_collection_for_user(user: Any, pk: Any) -> Collection:
    from ingest.models import Collection

    return get_or_404(Collection.objects.visible_to(user), pk=pk)
