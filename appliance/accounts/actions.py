"""Changes to departments, people, memberships and tokens, each audited in its transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction

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


def create_or_update_user(
    actor: Any, username: str, password: str | None = None, *, email: str = ""
) -> tuple[User, bool]:
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
        if created:
            audit.record(Action.USER_CREATE, actor=actor, obj=user, details={"username": username})
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
                details={"user": user.username, "department": department.name, "role": role},
            )
    return created


def remove_membership(actor: Any, user: User, department: Department, role: str) -> bool:
    with transaction.atomic():
        deleted, _ = Membership.objects.filter(user=user, department=department, role=role).delete()
        if deleted:
            audit.record(
                Action.MEMBERSHIP_REMOVE,
                actor=actor,
                obj=user,
                details={"user": user.username, "department": department.name, "role": role},
            )
    return bool(deleted)


def create_api_token(actor: Any, user: User, name: str = "") -> str:
    """A new token for ``user``; the raw value is returned once and never stored."""
    raw = ApiToken.new_raw_key()
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name, key_hash=hash_token(raw))
        audit.record(
            Action.TOKEN_CREATE,
            actor=actor,
            obj=token,
            details={"user": user.username, "name": name},
        )
    return raw
