"""The pages people use. Each looks objects up through the access policy only."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from appliance import access
from inference import actions as inference_actions
from inference.models import Conversation, Question
from ingest import actions as ingest_actions
from ingest import storage
from ingest.intake import UploadRejected, incoming_files
from ingest.models import Chunk, Collection, Document

# The Ask page lists this many documents to pick from; beyond them, a question names its
# document instead.
DOCUMENTS_TO_PICK = 1000


@login_required
@require_http_methods(["GET", "POST"])
def ask(request: HttpRequest) -> HttpResponse:
    if request.method == "GET" and not access.reads_documents(request.user):
        # Auditors and operators read no documents by virtue of their roles: their home is
        # their own page rather than an empty question box.
        if access.is_operator(request.user):
            return redirect("operator")
        if access.is_auditor(request.user):
            return redirect("audit")
    collections = Collection.objects.visible_to(request.user).select_related("department")
    if request.method == "POST":
        try:
            question = inference_actions.ask(
                request.user,
                request.POST.get("question", ""),
                request.POST.getlist("collection_ids") or None,
                request.POST.get("conversation_id") or None,
                request.POST.get("document_id") or None,
            )
        except inference_actions.InvalidQuestion as exc:
            messages.error(request, str(exc))
            return redirect("ask")
        return redirect("question", question_id=question.pk)
    recent = (
        Conversation.objects.visible_to(request.user)
        .annotate(turns=Count("questions"), last_question=Max("questions__id"))
        .order_by("-updated_at")[:20]
    )
    # Documents to ask about as a whole: those that answer (a live version), by collection.
    documents = list(
        Document.objects.visible_to(request.user)
        .filter(live_version__gt=0)
        .select_related("collection")
        .order_by("collection__name", "collection_id", "title", "id")
        .only("pk", "title", "collection__name")[: DOCUMENTS_TO_PICK + 1]
    )
    return render(
        request,
        "ask.html",
        {
            "collections": collections,
            "suggestions": suggestions(collections),
            "searched": ", ".join(c.name for c in collections),
            "recent": recent,
            "documents": documents[:DOCUMENTS_TO_PICK],
            "more_documents": len(documents) > DOCUMENTS_TO_PICK,
        },
    )


@login_required
def question(request: HttpRequest, question_id: int) -> HttpResponse:
    found = access.get_question_for_user(request.user, question_id)
    turns_so_far = (
        Question.objects.visible_to(request.user)
        .filter(conversation_id=found.conversation_id, created_at__lte=found.created_at)
        .order_by("created_at", "id")
        if found.conversation_id
        else Question.objects.filter(pk=found.pk)
    )
    turns = []
    for turn in turns_so_far:
        citations = access.visible_citations(turn, request.user)
        turns.append((turn, [c for c in citations if c.cited] or citations))
    return render(
        request,
        "question.html",
        {
            "question": found,
            "turns": turns,
            "live": not found.is_final,
            "searched": searched_names(request.user, found.scope),
        },
    )


SUGGESTIONS_SHOWN = 3


def suggestions(collections: Any) -> list[str]:
    """Up to three questions the person's collections' curators suggest, one from each
    collection in turn, so every collection gets a turn before any gets two."""
    lists = [list(c.suggested_questions or []) for c in collections]
    chosen: list[str] = []
    for round_ in range(max((len(q) for q in lists), default=0)):
        for questions in lists:
            if round_ < len(questions) and questions[round_] not in chosen:
                chosen.append(questions[round_])
    return chosen[:SUGGESTIONS_SHOWN]


def searched_names(user: Any, scope: list[int]) -> str:
    """The collections a question searched, among those the person may read now: the
    refusal's hint names only these, never one the person cannot read."""
    readable = Collection.objects.visible_to(user)
    if scope:
        readable = readable.filter(pk__in=scope)
    return ", ".join(readable.order_by("name").values_list("name", flat=True))


@login_required
def collections(request: HttpRequest) -> HttpResponse:
    visible = Collection.objects.visible_to(request.user).select_related("department")
    managed = set(Collection.objects.manageable_by(request.user).values_list("pk", flat=True))
    return render(request, "collections.html", {"collections": visible, "managed": managed})


@login_required
@require_POST
def collection_suggestions(request: HttpRequest, collection_id: int) -> HttpResponse:
    found = access.get_collection_to_manage(request.user, collection_id, "change suggestions")
    lines = request.POST.get("suggested_questions", "").splitlines()
    try:
        ingest_actions.describe_collection(request.user, found, suggested_questions=lines)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Saved the questions the Ask page suggests."))
    return redirect("collection", collection_id=found.pk)


@login_required
def collection(request: HttpRequest, collection_id: int) -> HttpResponse:
    found = access.get_collection_for_user(request.user, collection_id)
    can_manage = Collection.objects.manageable_by(request.user).filter(pk=found.pk).exists()
    documents = Document.objects.filter(collection=found).order_by("-created_at")
    page = Paginator(documents, 100).get_page(request.GET.get("page"))
    return render(
        request,
        "collection.html",
        {"collection": found, "page": page, "can_manage": can_manage},
    )


@login_required
@require_POST
def upload(request: HttpRequest, collection_id: int) -> HttpResponse:
    found = access.get_collection_to_manage(request.user, collection_id, "upload")
    try:
        files = incoming_files(request)
    except UploadRejected as exc:
        messages.error(request, str(exc))
        return redirect("collection", collection_id=found.pk)
    if not files:
        messages.error(request, _("Choose one or more files to upload."))
        return redirect("collection", collection_id=found.pk)
    results = ingest_actions.upload_documents(request.user, found, files)
    queued = sum(1 for r in results if r.document and not r.duplicate and not r.new_version)
    versions = [r.name for r in results if r.new_version]
    duplicates = [r.name for r in results if r.duplicate]
    rejected = [f"{r.name}: {r.error}" for r in results if r.error]
    if queued:
        messages.success(
            request,
            ngettext(
                "%(count)d file queued for reading.", "%(count)d files queued for reading.", queued
            )
            % {"count": queued},
        )
    if versions:
        messages.success(
            request,
            _("New versions, read while the current ones keep answering:")
            + " "
            + ", ".join(versions),
        )
    if duplicates:
        messages.info(
            request, _("Already in this collection, not added again:") + " " + ", ".join(duplicates)
        )
    for line in rejected:
        messages.error(request, line)
    return redirect("collection", collection_id=found.pk)


DOCUMENT_ACTIONS = ("delete", "retry", "cancel")


@login_required
@require_POST
def document_action(request: HttpRequest, document_id: int, action: str) -> HttpResponse:
    if action not in DOCUMENT_ACTIONS:
        raise Http404
    found = access.get_document_to_manage(request.user, document_id, action)
    collection_id = found.collection_id
    if action == "delete":
        ingest_actions.delete_document(request.user, found)
        messages.success(
            request,
            _("Deleted “%(title)s”. It no longer appears in answers.") % {"title": found.title},
        )
    elif action == "retry":
        ingest_actions.retry_document(request.user, found)
        messages.success(request, _("“%(title)s” is queued again.") % {"title": found.title})
    else:
        ingest_actions.cancel_document(request.user, found)
    return redirect("collection", collection_id=collection_id)


@login_required
def passage(request: HttpRequest, document_id: int) -> HttpResponse:
    """The cited passage, with the text around it, at its page."""
    found = access.get_document_for_user(request.user, document_id)
    chunks = Chunk.objects.visible_to(request.user).filter(document=found)
    focus_id = request.GET.get("chunk")
    page = request.GET.get("page")
    focus = None
    if focus_id and focus_id.isdigit():
        focus = chunks.filter(pk=int(focus_id)).first()
    if focus is None and page and page.isdigit():
        focus = chunks.filter(page=int(page)).order_by("ordinal").first()
    if focus is None:
        focus = chunks.order_by("ordinal").first()
    around: list[Any] = []
    if focus is not None:
        around = list(
            chunks.filter(ordinal__gte=focus.ordinal - 2, ordinal__lte=focus.ordinal + 2)
            .order_by("ordinal")
            .only("pk", "ordinal", "page", "section", "text")
        )
    return render(request, "passage.html", {"document": found, "focus": focus, "around": around})


@login_required
def document_file(request: HttpRequest, document_id: int) -> HttpResponse:
    found = access.get_document_for_user(request.user, document_id)
    try:
        handle = open(storage.absolute(found.stored_path), "rb")  # noqa: SIM115 - FileResponse closes it
    except (OSError, ValueError):
        raise Http404 from None
    return FileResponse(handle, as_attachment=True, filename=found.original_name)
