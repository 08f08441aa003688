"""Drafting golden questions on a golden set's page: a curator asks the appliance's model
for candidate questions from a collection's passages, watches them arrive, and accepts,
edits or rejects each (``inference.pilot.drafts``).

The golden set comes through its curators' door (``GoldenSet.objects.visible_to``), so a
set of another department is the 404 of a missing one; the collection through the reader's
door (``Collection.objects.visible_to``), so a collection the curator may not read is
refused exactly as a missing one is.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from appliance import access
from appliance.accounts.models import Department, Role
from appliance.web.guards import only_for
from inference.pilot import actions, drafts
from inference.pilot.models import DraftBatch, DraftStatus, GoldenSet
from ingest.models import Chunk, Collection

curators_only = only_for(access.is_curator, "pilot page")

BATCHES_SHOWN = 10
DRAFTS_SHOWN = 100
DEFAULT_COUNT = 10


def _golden_set_for(request: HttpRequest, golden_set_id: int) -> GoldenSet:
    return access.get_or_404(GoldenSet.objects.visible_to(request.user), pk=golden_set_id)


def _back(golden_set: GoldenSet) -> HttpResponse:
    return redirect(reverse("pilot-golden-set", args=[golden_set.pk]) + "#drafts")


def context(user: Any, golden_set: GoldenSet) -> dict[str, Any]:
    """What the golden set's page shows of drafting: the collections to draft from, recent
    batches with their progress, and the drafts waiting for review with their passages."""
    pending = list(
        golden_set.drafts.filter(status=DraftStatus.PENDING).order_by("created_at", "id")[
            :DRAFTS_SHOWN
        ]
    )
    counts = dict(
        golden_set.drafts.order_by()
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    # The passage beside each draft, through the reader's door: a passage replaced by a
    # newer version of its document, or no longer readable, is simply not shown.
    passages = dict(
        Chunk.objects.visible_to(user)
        .filter(pk__in=[draft.chunk_id for draft in pending])
        .values_list("pk", "text")
    )
    batches = list(
        DraftBatch.objects.filter(golden_set=golden_set).order_by("-created_at", "-id")[
            :BATCHES_SHOWN
        ]
    )
    return {
        "draft_collections": Collection.objects.visible_to(user).select_related("department"),
        "draft_batches": batches,
        "drafting": any(not batch.is_final for batch in batches),
        "pending_drafts": [(draft, passages.get(draft.chunk_id, "")) for draft in pending],
        "pending_count": counts.get(DraftStatus.PENDING, 0),
        "more_drafts": counts.get(DraftStatus.PENDING, 0) > len(pending),
        "accepted_drafts": counts.get(DraftStatus.ACCEPTED, 0),
        "rejected_drafts": counts.get(DraftStatus.REJECTED, 0),
        "max_drafts": drafts.MAX_DRAFTS,
        "default_draft_count": DEFAULT_COUNT,
    }


@curators_only
@require_POST
def request_drafts(request: HttpRequest, golden_set_id: int) -> HttpResponse:
    found = _golden_set_for(request, golden_set_id)
    collection = (
        Collection.objects.visible_to(request.user)
        .filter(pk=_int(request.POST.get("collection")))
        .first()
    )
    count = _int(request.POST.get("count"))
    if collection is None or count is None or not 1 <= count <= drafts.MAX_DRAFTS:
        messages.error(
            request,
            _("Choose a collection you can read and a number of questions from 1 to %(most)d.")
            % {"most": drafts.MAX_DRAFTS},
        )
        return _back(found)
    batch = actions.request_drafts(request.user, found, collection, count)
    if batch is None:
        messages.error(
            request,
            _(
                "“%(name)s” has no passage left to draft from: it holds no ready "
                "document, or every passage was drafted for this set before."
            )
            % {"name": collection.name},
        )
        return _back(found)
    fewer = (
        f" (the collection has {batch.total} passage{'s' if batch.total != 1 else ''} "
        "not drafted before)"
        if batch.total < count
        else ""
    )
    messages.success(
        request,
        f"Drafting up to {batch.total} question{'s' if batch.total != 1 else ''} from "
        f"“{collection.name}”{fewer}. They appear below as the model writes them; "
        "nothing joins the set until you accept it.",
    )
    return _back(found)


@curators_only
@require_GET
def progress(request: HttpRequest, golden_set_id: int) -> JsonResponse:
    found = _golden_set_for(request, golden_set_id)
    batches = DraftBatch.objects.filter(golden_set=found).order_by("-created_at", "-id")
    return JsonResponse(
        {
            "batches": [
                {
                    "id": batch.pk,
                    "status": batch.status,
                    "label": batch.get_status_display(),
                    "done": batch.done,
                    "total": batch.total,
                    "drafted": batch.drafted,
                    "percent": batch.progress_percent,
                    "final": batch.is_final,
                }
                for batch in batches[:BATCHES_SHOWN]
            ],
            "pending": found.drafts.filter(status=DraftStatus.PENDING).count(),
        }
    )


@curators_only
@require_POST
def stop(request: HttpRequest, golden_set_id: int) -> HttpResponse:
    found = _golden_set_for(request, golden_set_id)
    batch = DraftBatch.objects.filter(golden_set=found, pk=_int(request.POST.get("batch"))).first()
    if batch is not None and actions.stop_drafting(request.user, batch):
        messages.success(request, _("Drafting stopped; the drafts written so far are kept below."))
    return _back(found)


@curators_only
@require_POST
def review(request: HttpRequest, golden_set_id: int) -> HttpResponse:
    found = _golden_set_for(request, golden_set_id)
    decisions = []
    for value in request.POST.getlist("draft"):
        draft_id = _int(value)
        if draft_id is None:
            continue
        action = request.POST.get(f"decision-{draft_id}", drafts.KEEP)
        if action not in (drafts.KEEP, drafts.ACCEPT, drafts.REJECT):
            action = drafts.KEEP
        decisions.append(
            drafts.Decision(
                draft_id=draft_id,
                action=action,
                question=request.POST.get(f"question-{draft_id}", ""),
                expected_answer=request.POST.get(f"answer-{draft_id}", ""),
            )
        )
    outcome = actions.review_drafts(request.user, found, decisions)
    for problem in outcome.problems:
        messages.error(request, problem)
    said = []
    if outcome.version is not None:
        n = len(outcome.accepted)
        said.append(
            f"{n} question{'s' if n != 1 else ''} accepted into version {outcome.version.number}"
        )
    edited_only = [pk for pk in outcome.edited if pk not in outcome.accepted]
    if edited_only:
        said.append(f"{len(edited_only)} edit{'s' if len(edited_only) != 1 else ''} saved")
    if outcome.rejected:
        said.append(f"{len(outcome.rejected)} rejected")
    if said:
        messages.success(request, "; ".join(said).capitalize() + ".")
    elif not outcome.problems:
        messages.info(request, _("Nothing was changed: choose Accept or Reject, or edit a draft."))
    return _back(found)


@curators_only
@require_POST
def create_empty(request: HttpRequest) -> HttpResponse:
    """A golden set with no questions yet, to draft its questions into."""
    department = (
        Department.objects.filter(memberships__user=request.user, memberships__role=Role.CURATOR)
        .filter(pk=_int(request.POST.get("department")))
        .first()
    )
    name = " ".join((request.POST.get("name") or "").split())[:200]
    if department is None or not name:
        messages.error(request, _("Give the new golden set a name and a department."))
        return redirect("pilot")
    existing = GoldenSet.objects.filter(department=department, name=name).first()
    if existing is not None:
        messages.info(
            request,
            _("%(department)s already has a golden set called “%(name)s”.")
            % {"department": department.name, "name": name},
        )
        return _back(existing)
    version = actions.create_golden_set(
        request.user, name, department, [], note="empty, to draft questions into"
    )
    messages.success(
        request,
        _("Created “%(name)s”. Draft its questions from a collection below.") % {"name": name},
    )
    return _back(version.golden_set)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
