"""Editing the appliance's settings file (var/appliance.env) from commands."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.db import transaction

from appliance.audit import actions as audit
from appliance.audit.models import Action


def settings_file() -> Path:
    return Path(os.environ.get("APPLIANCE_ENV_FILE", settings.BASE_DIR / "var" / "appliance.env"))


def set_values(values: dict[str, str]) -> None:
    path = settings_file()
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    remaining = dict(values)
    out = []
    for line in lines:
        name = line.split("=", 1)[0].strip()
        if name in remaining:
            out.append(f"{name}={remaining.pop(name)}")
        else:
            out.append(line)
    out.extend(f"{k}={v}" for k, v in remaining.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    # The new file is written aside, the change audited, and the file swapped in last,
    # inside the audit row's transaction: a failed swap leaves neither change nor row.
    staged = path.with_name(path.name + ".new")
    # The file holds secrets: the new one keeps the old one's permissions (0600 if new).
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(out) + "\n")
    os.chmod(staged, mode)
    with transaction.atomic():
        audit.record(
            Action.SETTINGS_CHANGE,
            actor_name=audit.command_actor(),
            details={
                "file": str(path),
                "values": {k: _shown(k, v) for k, v in values.items()},
            },
        )
        os.replace(staged, path)


def _shown(name: str, value: str) -> str:
    # Secrets never enter the audit log; that they changed does.
    secret = any(word in name for word in ("SECRET", "PASSWORD", "KEY", "TOKEN"))
    return "(changed, not shown)" if secret else value
