"""The operator's pages: departments, people, and who holds which role where.

Every change goes through ``appliance.accounts.actions`` (one audited transaction each).
Only operators reach these pages; anyone else gets the 404 of a page that does not exist,
and the attempt is audited. Operators see no documents through these pages: a role
grants what it grants (see appliance/access.py), nothing more.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from appliance import access
from appliance.access import get_or_404
from appliance.accounts import actions as accounts
from appliance.accounts import directory
from appliance.accounts.models import (
    Department,
    DirectoryAccount,
    GroupMapping,
    Membership,
    Role,
    User,
)
from appliance.web.guards import only_for

operators_only = only_for(access.is_operator, "operator page")


def _memberships() -> Prefetch:
    return Prefetch(
        "memberships",
        queryset=Membership.objects.select_related("department").order_by("department__name"),
    )


@operators_only
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    departments = Department.objects.annotate(people=Count("memberships__user", distinct=True))
    people = User.objects.order_by("username").prefetch_related(_memberships())
    return render(
        request,
        "operator/index.html",
        {"departments": departments, "people": people, "role_choices": Role.choices},
    )


@operators_only
@require_GET
def person(request: HttpRequest, user_id: int) -> HttpResponse:
    found = get_or_404(User.objects.prefetch_related(_memberships()), pk=user_id)
    return render(
        request,
        "operator/user.html",
        {"person": found, "departments": Department.objects.all(), "role_choices": Role.choices},
    )


@operators_only
@require_POST
def create_department(request: HttpRequest) -> HttpResponse:
    try:
        department, created = accounts.create_department(
            request.user, request.POST.get("name", "")[:120]
        )
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        if created:
            messages.success(
                request, _("Department “%(name)s” created.") % {"name": department.name}
            )
        else:
            messages.info(
                request,
                _("There is already a department called “%(name)s”.") % {"name": department.name},
            )
    return redirect("operator")


@operators_only
@require_POST
def create_user(request: HttpRequest) -> HttpResponse:
    username = request.POST.get("username", "").strip()
    password = request.POST.get("password", "")
    role = request.POST.get("role", "")
    department = Department.objects.filter(pk=_int(request.POST.get("department"))).first()
    problem = ""
    if not username or len(username) > 150:
        problem = _("Choose a username of 1 to 150 characters.")
    elif User.objects.filter(username=username).exists():
        problem = _("There is already someone called “%(name)s”.") % {"name": username}
    elif department is None or role not in Role.values:
        problem = _("Choose the person's department and role.")
    else:
        try:
            validate_password(password, User(username=username))
        except ValidationError as exc:
            problem = " ".join(exc.messages)
    if problem:
        messages.error(request, problem)
        return redirect("operator")
    user, _created = accounts.create_or_update_user(request.user, username, password)
    accounts.add_membership(request.user, user, department, role)
    messages.success(
        request,
        _("%(name)s can now sign in as %(role)s of %(department)s.")
        % {"name": username, "role": _role(role), "department": department.name},
    )
    return redirect("operator-user", user_id=user.pk)


@operators_only
@require_POST
def add_membership(request: HttpRequest, user_id: int) -> HttpResponse:
    found = get_or_404(User.objects.all(), pk=user_id)
    department = Department.objects.filter(pk=_int(request.POST.get("department"))).first()
    role = request.POST.get("role", "")
    if department is None or role not in Role.values:
        messages.error(request, _("Choose a department and a role."))
    elif accounts.add_membership(request.user, found, department, role):
        messages.success(
            request,
            _("%(name)s is now %(role)s of %(department)s.")
            % {"name": found, "role": _role(role), "department": department.name},
        )
    else:
        messages.info(
            request,
            _("%(name)s already is %(role)s of %(department)s.")
            % {"name": found, "role": _role(role), "department": department.name},
        )
    return redirect("operator-user", user_id=found.pk)


@operators_only
@require_POST
def remove_membership(request: HttpRequest, user_id: int, membership_id: int) -> HttpResponse:
    membership = get_or_404(
        Membership.objects.select_related("user", "department").filter(user_id=user_id),
        pk=membership_id,
    )
    try:
        accounts.remove_membership(
            request.user, membership.user, membership.department, membership.role
        )
    except accounts.RefusedChange as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _(
                "%(name)s is no longer %(role)s of %(department)s. "
                "This applies from their very next request."
            )
            % {
                "name": membership.user,
                "role": _role(membership.role),
                "department": membership.department,
            },
        )
    return redirect("operator-user", user_id=user_id)


@operators_only
@require_POST
def change_role(request: HttpRequest, user_id: int, membership_id: int) -> HttpResponse:
    membership = get_or_404(
        Membership.objects.select_related("user", "department").filter(user_id=user_id),
        pk=membership_id,
    )
    role = request.POST.get("role", "")
    try:
        if role not in Role.values:
            raise accounts.RefusedChange(_("Choose a role."))
        if accounts.change_role(request.user, membership, role):
            messages.success(
                request,
                _("%(name)s is now %(role)s of %(department)s.")
                % {
                    "name": membership.user,
                    "role": _role(role),
                    "department": membership.department,
                },
            )
    except accounts.RefusedChange as exc:
        messages.error(request, str(exc))
    return redirect("operator-user", user_id=user_id)


@operators_only
@require_POST
def set_active(request: HttpRequest, user_id: int, active: str) -> HttpResponse:
    found = get_or_404(User.objects.all(), pk=user_id)
    try:
        if active == "deactivate":
            if accounts.deactivate_user(request.user, found):
                messages.success(
                    request,
                    _("%(name)s is deactivated: they are signed out and their API tokens revoked.")
                    % {"name": found},
                )
        elif active == "activate":
            if accounts.activate_user(request.user, found):
                messages.success(request, _("%(name)s can sign in again.") % {"name": found})
        else:
            raise Http404
    except accounts.RefusedChange as exc:
        messages.error(request, str(exc))
    return redirect("operator-user", user_id=found.pk)


def _role(role: str) -> str:
    """A role as a sentence names it: "curator", "kurator"."""
    return str(Role(role).label).lower()


@operators_only
@require_GET
def group_mappings(request: HttpRequest) -> HttpResponse:
    """Directory groups and the memberships they give (applied at every directory sign-in)."""
    from django.conf import settings

    sources = []
    if getattr(settings, "AUTH_LDAP_SERVER_URI", ""):
        sources.append(f"LDAP: {settings.AUTH_LDAP_SERVER_URI}")
    if getattr(settings, "OIDC", {}):
        sources.append(f"OIDC: {settings.OIDC['issuer']}")
    return render(
        request,
        "operator/groups.html",
        {
            "mappings": GroupMapping.objects.select_related("department"),
            "departments": Department.objects.all(),
            "role_choices": Role.choices,
            "sources": sources,
            "directory_people": DirectoryAccount.objects.select_related("user").order_by(
                "user__username"
            ),
        },
    )


@operators_only
@require_POST
def add_group_mapping(request: HttpRequest) -> HttpResponse:
    department = Department.objects.filter(pk=_int(request.POST.get("department"))).first()
    group = request.POST.get("group", "")
    role = request.POST.get("role", "")
    if department is None:
        messages.error(request, _("Choose a department."))
        return redirect("operator-groups")
    try:
        mapping, created = directory.add_mapping(request.user, group, department, role)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        if created:
            messages.success(
                request,
                _(
                    "Members of that group are now %(role)s of %(department)s, from their next "
                    "sign-in (at once for those the directory already reported)."
                )
                % {"role": _role(mapping.role), "department": department.name},
            )
        else:
            messages.info(request, _("That mapping exists already."))
    return redirect("operator-groups")


@operators_only
@require_POST
def remove_group_mapping(request: HttpRequest, mapping_id: int) -> HttpResponse:
    mapping = get_or_404(GroupMapping.objects.select_related("department"), pk=mapping_id)
    directory.remove_mapping(request.user, mapping)
    messages.success(
        request,
        _(
            "That group no longer gives %(role)s of %(department)s; the memberships it gave "
            "are removed."
        )
        % {"role": _role(mapping.role), "department": mapping.department.name},
    )
    return redirect("operator-groups")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
