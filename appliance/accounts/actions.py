"""Changes to departments, people, memberships and tokens, each audited in its transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from appliance.accounts.models import ApiToken, Department, Membership, Role, User, hash_token
from appliance.audit import actions as audit
from appliance.audit.models import Action


def create_department(actor: Any, name: str) -> tuple[Department, bool]:
    name = name.strip()
    if not name:
        raise ValueError("A department needs a name.")
    with transaction.atomic():
        department, created = Department.objects.get_or_create(name=name)
        if created:
            audit.record(
                Action.DEPARTMENT_CREATE, actor=actor, obj=department, details={"name": name}
            )
    return department, created


def set_chat_retention(actor: Any, department: Department, days: int | None) -> None:
    """How many days the department's members' conversations are kept (None: the
    organisation's setting). The shortest period that applies to a person wins."""
    if days is not None and days < 1:
        raise ValueError("Chat retention is a number of days, at least 1 (or none).")
    with transaction.atomic():
        department.chat_retention_days = days
        department.save(update_fields=["chat_retention_days"])
        audit.record(
            Action.SETTINGS_CHANGE,
            actor=actor,
            obj=department,
            details={"setting": "chat_retention_days", "value": days},
        )


def create_or_update_user(
    actor: Any, username: str, password: str | None = None, *, email: str = ""
) -> tuple[User, bool]:
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
        if created:
            audit.record(Action.USER_CREATE, actor=actor, obj=user, subject=user)
    return user, created


def add_membership(actor: Any, user: User, department: Department, role: str) -> bool:
    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}; use one of {', '.join(Role.values)}.")
    with transaction.atomic():
        _, created = Membership.objects.get_or_create(user=user, department=department, role=role)
        if created:
            audit.record(
                Action.MEMBERSHIP_ADD,
                actor=actor,
                obj=user,
                subject=user,
                details={"department": department.name, "role": role},
            )
    return created


class RefusedChange(ValueError):
    """A change that would leave the appliance unmanageable; the message says why."""


def _guard_last_operator(user: User, *, losing: Membership | None = None) -> None:
    """Someone must remain who can manage people: refuse to take away the last active
    operator. Runs inside the change's transaction, with the operators' rows locked."""
    operators = Membership.objects.select_for_update(of=("self",)).filter(
        role=Role.OPERATOR, user__is_active=True
    )
    remaining = operators.exclude(user=user) if losing is None else operators.exclude(pk=losing.pk)
    if not remaining.exists() and operators.exists():
        raise RefusedChange(
            "This is the last active operator. Make someone else an operator first."
        )


def remove_membership(actor: Any, user: User, department: Department, role: str) -> bool:
    with transaction.atomic():
        found = Membership.objects.filter(user=user, department=department, role=role).first()
        if found is not None and role == Role.OPERATOR:
            _guard_last_operator(user, losing=found)
        deleted, _ = Membership.objects.filter(user=user, department=department, role=role).delete()
        if deleted:
            audit.record(
                Action.MEMBERSHIP_REMOVE,
                actor=actor,
                obj=user,
                subject=user,
                details={"department": department.name, "role": role},
            )
    return bool(deleted)


def change_role(actor: Any, membership: Membership, role: str) -> bool:
    """Give a membership another role (one event, not a removal and an addition)."""
    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}; use one of {', '.join(Role.values)}.")
    with transaction.atomic():
        locked = Membership.objects.select_for_update(of=("self",)).select_related(
            "user", "department"
        )
        current = locked.filter(pk=membership.pk).first()
        if current is None or current.role == role:
            return False
        if Membership.objects.filter(
            user_id=current.user_id, department_id=current.department_id, role=role
        ).exists():
            raise RefusedChange(f"{current.user} already has that role in {current.department}.")
        if current.role == Role.OPERATOR:
            _guard_last_operator(current.user, losing=current)
        old = current.role
        current.role = role
        current.save(update_fields=["role"])
        audit.record(
            Action.ROLE_CHANGE,
            actor=actor,
            obj=current.user,
            subject=current.user,
            details={
                "department": current.department.name,
                "from": old,
                "to": role,
            },
        )
    return True


def deactivate_user(actor: Any, user: User) -> bool:
    """The person can no longer sign in or use a token; their open sessions stop working
    on their next request (an inactive user is never authenticated)."""
    if getattr(actor, "pk", None) == user.pk:
        raise RefusedChange("You cannot deactivate yourself.")
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if not locked.is_active:
            return False
        if Membership.objects.filter(user=locked, role=Role.OPERATOR).exists():
            _guard_last_operator(locked)
        locked.is_active = False
        locked.save(update_fields=["is_active"])
        revoked = ApiToken.objects.filter(user=locked, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit.record(
            Action.USER_DEACTIVATE,
            actor=actor,
            obj=locked,
            subject=locked,
            details={"tokens_revoked": revoked},
        )
    user.is_active = False
    return True


def activate_user(actor: Any, user: User) -> bool:
    with transaction.atomic():
        updated = User.objects.filter(pk=user.pk, is_active=False).update(is_active=True)
        if updated:
            audit.record(Action.USER_ACTIVATE, actor=actor, obj=user, subject=user)
    user.is_active = True
    return bool(updated)


def create_api_token(actor: Any, user: User, name: str = "") -> str:
    """A new token for ``user``; the raw value is returned once and never stored."""
    raw = ApiToken.new_raw_key()
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name, key_hash=hash_token(raw))
        audit.record(
            Action.TOKEN_CREATE,
            actor=actor,
            obj=token,
            subject=user,
            details={"name": name},
        )
    return raw


def choose_languages(
    actor: Any, user: User, *, language: str | None = None, answer_language: str | None = None
) -> bool:
    """Save a person's page language and answer language ("" for none: the browser's, the
    question's); None leaves one as it is. A change is a change of the person, audited."""
    changes = {
        field: value
        for field, value in (("language", language), ("answer_language", answer_language))
        if value is not None and value != getattr(user, field)
    }
    if not changes:
        return False
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(**changes)
        audit.record(
            Action.SETTINGS_CHANGE,
            actor=actor,
            obj=user,
            subject=user,
            details={"person": changes},
        )
    for field, value in changes.items():
        setattr(user, field, value)
    return True
