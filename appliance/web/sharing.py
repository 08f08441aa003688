"""Curators share their own department's collections, read-only, with other departments
or the whole organisation, and take shares back. Access changes from the very next
request: nothing caches who may read what (see appliance/access.py).

The panel on the collection page comes from the ``sharing_panel`` template tag
(``appliance/web/templatetags/sharing_tags.py``), so the collection view stays unaware.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from appliance import access
from appliance.accounts.models import Department
from ingest import actions as ingest_actions
from ingest.models import Collection, CollectionShare

EVERYONE = "all"


def panel_context(collection: Collection) -> dict[str, Any]:
    shared = list(
        CollectionShare.objects.filter(collection=collection)
        .select_related("department")
        .order_by("department__name")
    )
    taken = {s.department_id for s in shared} | {collection.department_id}
    return {
        "collection": collection,
        "shares": shared,
        "candidates": Department.objects.exclude(pk__in=taken).order_by("name"),
        "everyone": EVERYONE,
    }


@login_required
@require_POST
def change_sharing(request: HttpRequest, collection_id: int) -> HttpResponse:
    found = access.get_collection_to_manage(request.user, collection_id, "change sharing")
    target = request.POST.get("department", "")
    share = request.POST.get("action") == "share"
    if target == EVERYONE:
        if share:
            ingest_actions.share_with_organisation(request.user, found)
            messages.success(
                request,
                _("Everyone in the organisation can now read “%(name)s”.") % {"name": found.name},
            )
        else:
            ingest_actions.unshare_with_organisation(request.user, found)
            messages.success(
                request, _("“%(name)s” is no longer shared with everyone.") % {"name": found.name}
            )
        return redirect("collection", collection_id=found.pk)
    department = Department.objects.exclude(pk=found.department_id).filter(pk=_int(target)).first()
    if department is None:
        messages.error(request, _("Choose a department to share with."))
    elif share:
        ingest_actions.share_collection(request.user, found, department)
        messages.success(
            request,
            _("%(department)s can now read “%(name)s”.")
            % {"department": department.name, "name": found.name},
        )
    else:
        ingest_actions.unshare_collection(request.user, found, department)
        messages.success(
            request,
            _("%(department)s can no longer read “%(name)s”, from its very next question.")
            % {"department": department.name, "name": found.name},
        )
    return redirect("collection", collection_id=found.pk)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
