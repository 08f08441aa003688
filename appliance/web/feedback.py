"""Feedback on answers and the employee's own conversations.

Employees rate an answer (thumbs up or down, an optional comment, and whether curators may
read the question) and delete their conversations. Curators read the feedback on answers
that drew on their collections (``appliance.access`` rule 8) and turn a shared question
into a golden-set entry of the pilot workbench.

The question page gets its tools (copy, link, the feedback form) from the ``answer_tools``
template tag (``templatetags/feedback_tags.py``), so ``views.question`` stays unaware.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from appliance import access
from appliance.web.guards import only_for
from inference import actions as inference_actions
from inference.models import Citation, Feedback
from inference.pilot import actions as pilot_actions
from inference.pilot.models import GoldenSet

curators_only = only_for(access.is_curator, "feedback page")

FEEDBACK_PER_PAGE = 50


@login_required
@require_POST
def give(request: HttpRequest, question_id: int) -> HttpResponse:
    """The feedback form without JavaScript: save, then back to the answer."""
    found = access.get_question_for_user(request.user, question_id)
    helpful = {"yes": True, "no": False}.get(request.POST.get("helpful", ""))
    try:
        inference_actions.give_feedback(
            request.user,
            found,
            helpful,
            request.POST.get("comment", ""),
            request.POST.get("share_question") == "on",
        )
    except inference_actions.InvalidFeedback as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Thank you: your feedback is saved."))
    return redirect(reverse("question", args=[found.pk]) + f"#feedback-{found.pk}")


@login_required
@require_POST
def delete_conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    found = access.get_conversation_for_user(request.user, conversation_id)
    inference_actions.delete_conversation(request.user, found)
    messages.success(request, _("The conversation is deleted, with its questions and answers."))
    return redirect("ask")


def curated_feedback(user: Any) -> Any:
    """Feedback a curator reads, each with the sources in the collections they curate
    (one query for all, not one per row)."""
    managed = access.in_managed_collection(user, "document__collection")
    return (
        Feedback.objects.for_curator(user)
        .select_related("question")
        .prefetch_related(
            Prefetch(
                "question__citations",
                queryset=Citation.objects.filter(managed).order_by("n"),
                to_attr="curated",
            )
        )
    )


@curators_only
@require_GET
def curator_page(request: HttpRequest) -> HttpResponse:
    found = curated_feedback(request.user)
    rating = request.GET.get("rating", "")
    if rating in ("up", "down"):
        found = found.filter(helpful=rating == "up")
    page = Paginator(found, FEEDBACK_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "curator_feedback.html",
        {
            "page": page,
            "rating": rating,
            "golden_sets": GoldenSet.objects.visible_to(request.user).select_related("department"),
        },
    )


@curators_only
@require_POST
def to_golden_set(request: HttpRequest, feedback_id: int) -> HttpResponse:
    """A shared question becomes an entry of one of the curator's golden sets (its next
    version). A question the asker did not share is refused like a missing one: the
    curator never saw its words."""
    feedback = access.get_feedback_for_curator(request.user, feedback_id)
    back = redirect(reverse("curator-feedback") + f"#feedback-{feedback.pk}")
    if not feedback.share_question:
        messages.error(request, _("The asker did not share this question."))
        return back
    golden_set = GoldenSet.objects.visible_to(request.user).filter(
        pk=_int(request.POST.get("golden_set"))
    )
    golden_set = golden_set.first()
    if golden_set is None:
        messages.error(request, _("Choose one of your golden sets."))
        return back
    sources = [
        {"document": c.title, "page": c.page}
        for c in access.curated_citations(feedback.question, request.user)
        if c.cited
    ]
    try:
        version = pilot_actions.add_asked_question(
            request.user,
            golden_set,
            feedback.question.text,
            expected_answer=request.POST.get("expected_answer", ""),
            expected_sources=sources,
            answerable=request.POST.get("answerable") == "on",
            feedback_id=feedback.pk,
        )
    except pilot_actions.GoldenEntryRefused as exc:
        messages.error(request, str(exc))
        return back
    messages.success(
        request,
        _("Added the question to %(version)s.") % {"version": version},
    )
    return back


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
