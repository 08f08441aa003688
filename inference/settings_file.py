"""Editing the appliance's settings file (var/appliance.env) from commands."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings


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
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
