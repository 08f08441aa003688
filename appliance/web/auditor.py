"""The auditor's page: filter and page through the log, download an export with its signed
manifest, and check an export someone hands back.

Only auditors see any of it; everyone else gets the same 404 as for a page that does not
exist, and the attempt is itself audited.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from appliance.access import is_auditor
from appliance.audit import delivery, signing
from appliance.audit import export as audit_export
from appliance.audit.models import Action
from appliance.web.guards import only_for

auditors_only = only_for(is_auditor, "audit page")


def filters_from(params: Any) -> audit_export.Filters:
    return audit_export.Filters(
        since=audit_export.parse_time(params.get("since"), "From"),
        until=audit_export.parse_time(params.get("until"), "Until"),
        user=params.get("user", "").strip(),
        department=params.get("department", "").strip(),
        action=params.get("action", "").strip(),
    )


def _page(request: HttpRequest, verification: dict[str, Any] | None = None) -> HttpResponse:
    try:
        filters = filters_from(request.GET)
    except audit_export.BadFilter as exc:
        messages.error(request, str(exc))
        filters = audit_export.Filters()
    events = audit_export.filtered(filters).order_by("-id")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit.html",
        {
            "page": page,
            "filters": filters,
            "actions": Action.choices,
            "query": query.urlencode(),
            "public_key": signing.public_key_hex(),
            "verification": verification,
        },
    )


@auditors_only
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    return _page(request)


@auditors_only
@require_GET
def audit_download(request: HttpRequest) -> HttpResponse:
    """The filtered log as a zip: the export file and its signed manifest."""
    fmt = request.GET.get("format", "csv")
    try:
        if fmt not in audit_export.FORMATS:
            raise audit_export.BadFilter("Choose CSV or JSON Lines.")
        filters = filters_from(request.GET)
    except audit_export.BadFilter as exc:
        messages.error(request, str(exc))
        return _page(request)
    return delivery.export_response(request.user, fmt, filters, via="web", bundle=True)


@auditors_only
@require_POST
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Check an uploaded export (the zip, or file + manifest) against this appliance's key."""
    try:
        manifest = delivery.verify_upload(
            bundle=request.FILES.get("bundle"),
            file=request.FILES.get("export"),
            manifest=request.FILES.get("manifest"),
        )
    except (delivery.UploadRejected, audit_export.VerificationFailed) as exc:
        result = {"intact": False, "reason": str(exc)}
    else:
        result = {"intact": True, "manifest": manifest}
    return _page(request, verification=result)
