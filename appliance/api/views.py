"""The JSON API under /api/v1/. Every lookup goes through the access policy; forbidden and
missing answer the same 404."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _

from appliance import access
from appliance.api.common import api, error, json_body, not_found
from appliance.api.serializers import collection_json, document_json, feedback_json, question_json
from appliance.audit import actions as audit
from appliance.audit import delivery
from appliance.audit import export as audit_export
from appliance.audit.models import Action
from inference import actions as inference_actions
from inference.models import Feedback
from ingest import actions as ingest_actions
from ingest.intake import UploadRejected, incoming_files
from ingest.models import Collection, Document


@api("GET")
def collections(request: HttpRequest) -> HttpResponse:
    visible = Collection.objects.visible_to(request.user).select_related("department")
    return JsonResponse({"collections": [collection_json(c) for c in visible]})


@api("GET", "POST")
def collection_documents(request: HttpRequest, collection_id: int) -> HttpResponse:
    if request.method == "GET":
        collection = access.get_collection_for_user(request.user, collection_id)
        documents = Document.objects.filter(collection=collection).order_by("-created_at")
        ids = [int(i) for i in request.GET.get("ids", "").split(",") if i.strip().isdigit()]
        if ids:  # the upload page polls only the rows it shows that are still being read
            documents = documents.filter(pk__in=ids[:500])
        return JsonResponse({"documents": [document_json(d) for d in documents]})
    collection = access.get_collection_to_manage(request.user, collection_id, "upload")
    try:
        files = incoming_files(request)
    except UploadRejected as exc:
        return error(exc.status, str(exc))
    if not files:
        return error(400, 'Send one or more files in multipart fields named "files".')
    results = ingest_actions.upload_documents(request.user, collection, files)
    body = []
    for result in results:
        if result.document is None:
            body.append(
                {
                    "id": None,
                    "title": result.name,
                    "name": result.name,
                    "status": "rejected",
                    "error": result.error,
                }
            )
        else:
            item = document_json(result.document)
            item["duplicate"] = result.duplicate
            item["new_version"] = result.new_version
            body.append(item)
    return JsonResponse({"documents": body}, status=202)


@api("GET", "DELETE")
def document(request: HttpRequest, document_id: int) -> HttpResponse:
    if request.method == "DELETE":
        found = access.get_document_to_manage(request.user, document_id, "delete")
        ingest_actions.delete_document(request.user, found)
        return HttpResponse(status=204)
    return JsonResponse(document_json(access.get_document_for_user(request.user, document_id)))


@api("POST")
def questions(request: HttpRequest) -> HttpResponse:
    try:
        body = json_body(request)
        collection_ids = body.get("collection_ids") or None
        if collection_ids is not None and not isinstance(collection_ids, list):
            raise inference_actions.InvalidQuestion("collection_ids must be a list of ids.")
        document_id = body.get("document_id")
        if document_id is not None and (
            isinstance(document_id, bool) or not isinstance(document_id, int)
        ):
            raise inference_actions.InvalidQuestion("document_id must be a document id.")
        question = inference_actions.ask(
            request.user,
            str(body.get("question", "")),
            collection_ids,
            body.get("conversation_id"),
            document_id,
        )
    except (ValueError, inference_actions.InvalidQuestion) as exc:
        return error(400, str(exc))
    return JsonResponse(
        {
            "id": question.pk,
            "status": question.status,
            "conversation_id": question.conversation_id,
            "events": f"/api/v1/questions/{question.pk}/events",
        },
        status=202,
    )


@api("GET")
def question(request: HttpRequest, question_id: int) -> HttpResponse:
    found = access.get_question_for_user(request.user, question_id)
    return JsonResponse(question_json(found, request.user))


@api("POST")
def question_cancel(request: HttpRequest, question_id: int) -> HttpResponse:
    found = access.get_question_for_user(request.user, question_id)
    inference_actions.cancel(request.user, found)
    return JsonResponse({"id": found.pk, "status": "stopping"}, status=202)


@api("GET")
def audit_events(request: HttpRequest) -> HttpResponse:
    if not access.is_auditor(request.user):
        audit.record_alone(
            Action.ACCESS_DENIED, actor=request.user, details={"attempt": "audit export"}
        )
        return not_found()
    fmt = request.GET.get("format", "jsonl")
    try:
        if fmt not in audit_export.FORMATS:
            raise audit_export.BadFilter("format must be jsonl or csv")
        filters = audit_export.Filters(
            since=audit_export.parse_time(request.GET.get("since"), "since"),
            until=audit_export.parse_time(request.GET.get("until"), "until"),
            user=request.GET.get("user", ""),
            department=request.GET.get("department", ""),
            action=request.GET.get("action", ""),
        )
    except audit_export.BadFilter as exc:
        return error(400, str(exc))
    # Spooled, so the manifest (X-Audit-Manifest header) can name the file's SHA-256;
    # bundle=zip sends the file and its manifest together, as the auditor's page does.
    return delivery.export_response(
        request.user, fmt, filters, via="api", bundle=request.GET.get("bundle") == "zip"
    )


@api("GET", "POST")
def question_feedback(request: HttpRequest, question_id: int) -> HttpResponse:
    """The caller's feedback on their answer: read it, or give (change) it."""
    found = access.get_question_for_user(request.user, question_id)
    if request.method == "GET":
        mine = Feedback.objects.filter(question=found, user_id=request.user.pk).first()
        return JsonResponse({"feedback": feedback_json(mine) if mine else None})
    try:
        body = json_body(request)
        comment = body.get("comment", "")
        if not isinstance(comment, str):
            raise inference_actions.InvalidFeedback(_("comment must be text."))
        share = body.get("share_question", False)
        if not isinstance(share, bool):
            raise inference_actions.InvalidFeedback(_("share_question must be true or false."))
        given = inference_actions.give_feedback(
            request.user, found, body.get("helpful"), comment, share
        )
    except (ValueError, inference_actions.InvalidFeedback) as exc:
        return error(400, str(exc))
    return JsonResponse(feedback_json(given))


@api("DELETE")
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    found = access.get_conversation_for_user(request.user, conversation_id)
    inference_actions.delete_conversation(request.user, found)
    return HttpResponse(status=204)
