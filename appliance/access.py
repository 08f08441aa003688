"""The access policy: every rule about who may see or change what, and the doors that apply
them. Nothing else in the appliance decides access.

Rules:
1. A person reads a collection when they hold a reader role (employee or curator) in the
   department that owns it, in a department it is shared with, or anywhere when it is
   shared with the whole organisation. Documents, passages (chunks) and citations are
   readable exactly when their collection is.
2. Auditors and operators read no documents by virtue of those roles; the audit pages are
   for auditors, the operator pages for operators.
3. A curator manages (uploads to, deletes from, retries, shares) only their own
   department's collections.
4. Questions, their answers and conversations are private to the person who asked.
5. Only active, signed-in people hold any right.
6. Nothing is cached: a removed membership or share counts from the very next query.
7. Golden sets and pilot runs belong to a department; its curators keep and run them. A
   run answers as a chosen person would, but never from more than the curator who starts
   it may read (``pilot_run_scope``).

How a refusal looks, whichever door (page or API) it comes through:
- What a person may not read does not exist for them: the same 404 as a wrong id, byte for
  byte, so ids cannot be probed.
- What they may read but not change (an employee uploading, a reader deleting) is refused
  with 403 and a sentence saying who may, and the attempt is audited (``refuse``).
- A page for a role they do not hold answers 404 and the attempt is audited
  (``appliance.web.guards.only_for``).

Lists start from the ``visible_to`` / ``manageable_by`` querysets, which are built from the
filters below; one object comes through a ``get_<thing>_for_user`` helper. Search builds its
SQL from the same querysets, so the access filter sits inside the very statement that ranks
chunks.

The models of documents and answers are named by label (``"ingest.Collection"``), as a
foreign key names them, not imported: their packages build on this core, so an import would
run against the direction of the packages (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, Model, Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from appliance.accounts.models import READER_ROLES, Membership, Role
from appliance.audit import actions as audit
from appliance.audit.models import Action


def _model(label: str) -> type[Model]:
    return apps.get_model(label)


# --- people -------------------------------------------------------------------------------


def is_person(user: Any) -> bool:
    """Signed in and active (rule 5)."""
    return bool(user is not None and user.is_authenticated and user.is_active)


def holds_role(user: Any, *roles: str) -> bool:
    return is_person(user) and Membership.objects.filter(user_id=user.pk, role__in=roles).exists()


def is_auditor(user: Any) -> bool:
    return holds_role(user, Role.AUDITOR)


def is_operator(user: Any) -> bool:
    return holds_role(user, Role.OPERATOR)


def is_curator(user: Any) -> bool:
    """Curates some department's collections (and so keeps its golden sets, rule 7)."""
    return holds_role(user, Role.CURATOR)


def reads_documents(user: Any) -> bool:
    """Holds a reader role somewhere (rule 2: other roles alone read nothing)."""
    return holds_role(user, *READER_ROLES)


# --- filters: what the querysets are built from -------------------------------------------


def _reader_department_ids(user: Any) -> QuerySet:
    return Membership.objects.filter(user_id=user.pk, role__in=READER_ROLES).values("department_id")


def readable_collections_filter(user: Any) -> Q:
    """Collection rows ``user`` may read (rule 1)."""
    if not is_person(user):
        return Q(pk__in=[])
    departments = _reader_department_ids(user)
    shares = _model("ingest.CollectionShare").objects
    shared = shares.filter(department_id__in=departments).values("collection_id")
    is_reader_anywhere = Exists(Membership.objects.filter(user_id=user.pk, role__in=READER_ROLES))
    return (
        Q(department_id__in=departments)
        | Q(pk__in=shared)
        | (Q(shared_with_all=True) & is_reader_anywhere)
    )


def managed_collections_filter(user: Any) -> Q:
    """Collection rows whose documents ``user`` may change (rule 3)."""
    if not is_person(user):
        return Q(pk__in=[])
    departments = Membership.objects.filter(user_id=user.pk, role=Role.CURATOR)
    return Q(department_id__in=departments.values("department_id"))


def in_readable_collection(user: Any, path: str = "collection") -> Q:
    """Rows of a model inside collections (documents, chunks, citations through
    ``document__collection``) that ``user`` may read: readable exactly when their
    collection is (rule 1)."""
    collections = _model("ingest.Collection").objects.filter(readable_collections_filter(user))
    return Q(**{f"{path}__in": collections})


def in_managed_collection(user: Any, path: str = "collection") -> Q:
    collections = _model("ingest.Collection").objects.filter(managed_collections_filter(user))
    return Q(**{f"{path}__in": collections})


def owned_filter(user: Any) -> Q:
    """Questions and conversations of ``user`` (rule 4)."""
    if not is_person(user):
        return Q(pk__in=[])
    return Q(user_id=user.pk)


def feedback_for_curator_filter(user: Any) -> Q:
    """Feedback rows ``user`` reads as a curator (rule 8): on answers with a source in a
    collection they curate."""
    if not is_person(user):
        return Q(pk__in=[])
    managed = _model("ingest.Collection").objects.filter(managed_collections_filter(user))
    sourced = _model("inference.Citation").objects.filter(document__collection__in=managed)
    return Q(question_id__in=sourced.values("question_id"))


def curated_citations(question: Any, user: Any) -> list[Any]:
    """The question's sources in collections ``user`` curates: what a curator reading
    feedback may see of an answer's sources (rule 8)."""
    managed = in_managed_collection(user, "document__collection")
    return list(question.citations.filter(managed).order_by("n"))


def pilot_filter(user: Any, path: str = "") -> Q:
    """Golden sets (or, through ``path``, their runs) that ``user`` keeps (rule 7)."""
    if not is_person(user):
        return Q(pk__in=[])
    prefix = f"{path}__" if path else ""
    departments = Membership.objects.filter(user_id=user.pk, role=Role.CURATOR)
    return Q(**{f"{prefix}department_id__in": departments.values("department_id")})


def pilot_run_scope(starter: Any) -> list[int] | None:
    """The collections a pilot run may search, beyond its person's own access: all that
    ``starter`` may read; None when the run was started by an operator's command (no
    person to bound it); ``[0]``, a scope of nothing, when they read none."""
    if starter is None:
        return None
    collections = _model("ingest.Collection").objects.filter(readable_collections_filter(starter))
    return sorted(collections.values_list("pk", flat=True)) or [0]


# --- doors: one object for one person -----------------------------------------------------


def get_or_404(queryset: QuerySet, **lookup: Any) -> Any:
    """One object from an already access-filtered queryset; missing and forbidden alike 404."""
    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise Http404("Not found") from None


def get_collection_for_user(user: Any, pk: Any) -> Any:
    collections = _model("ingest.Collection").objects.visible_to(user)
    return get_or_404(collections.select_related("department"), pk=pk)


def get_document_for_user(user: Any, pk: Any) -> Any:
    return get_or_404(_model("ingest.Document").objects.visible_to(user), pk=pk)


def get_question_for_user(user: Any, pk: Any) -> Any:
    return get_or_404(_model("inference.Question").objects.visible_to(user), pk=pk)


def get_conversation_for_user(user: Any, pk: Any) -> Any:
    return get_or_404(_model("inference.Conversation").objects.visible_to(user), pk=pk)


def get_feedback_for_curator(user: Any, pk: Any) -> Any:
    """One feedback row a curator reads (rule 8); any other is a 404 like a missing one."""
    found = _model("inference.Feedback").objects.for_curator(user)
    return get_or_404(found.select_related("question"), pk=pk)


class Refused(PermissionDenied):
    """``user`` may read the object but not do this to it (see ``refuse``)."""


def refuse(user: Any, attempt: str, message: str, obj: Any = None) -> NoReturn:
    """Audit a refused attempt on something the person may read, and refuse it (403)."""
    audit.record_alone(Action.ACCESS_DENIED, actor=user, obj=obj, details={"attempt": attempt})
    raise Refused(message)


def get_collection_to_manage(user: Any, pk: Any, attempt: str) -> Any:
    """A collection ``user`` curates: 404 when they may not read it, an audited 403 when
    they may read but not change it."""
    found = get_collection_for_user(user, pk)
    if not _model("ingest.Collection").objects.manageable_by(user).filter(pk=found.pk).exists():
        refuse(
            user,
            attempt,
            _("Only curators of this collection's department may change it."),
            found,
        )
    return found


def get_document_to_manage(user: Any, pk: Any, attempt: str) -> Any:
    """A document in a collection ``user`` curates; refusals as ``get_collection_to_manage``."""
    found = get_document_for_user(user, pk)
    if not _model("ingest.Document").objects.manageable_by(user).filter(pk=found.pk).exists():
        refuse(
            user,
            attempt,
            _("Only curators of this document's department may change it."),
            found,
        )
    return found


def visible_citations(question: Any, user: Any) -> list[Any]:
    """The question's citations whose documents ``user`` may read now (access can change
    after asking: a source they lost drops out of every page, API answer and rebuilt
    conversation)."""
    readable = in_readable_collection(user, "document__collection")
    return list(question.citations.filter(readable).order_by("n"))
