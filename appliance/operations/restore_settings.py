"""The settings file a restore puts in place: the backup's (its secret key, audit signing
key and every choice of the old host), with this host's connection settings and folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings

from appliance.operations.backup import SECRETS
from appliance.operations.common import Say, settings_file
from appliance.operations.restore_checks import RestoreError

# The settings that describe this host rather than the appliance: a restored settings file
# keeps this host's values for them, or the appliance could not reach its own database
# (deploy/up set those passwords on this host's roles) or would look for its files in the
# old host's folder.
HOST_SETTINGS = (
    "APPLIANCE_DB_HOST",
    "APPLIANCE_DB_PORT",
    "APPLIANCE_DB_NAME",
    "APPLIANCE_DB_PASSWORD",
    "APPLIANCE_DB_OWNER_PASSWORD",
    "APPLIANCE_REDIS_URL",
    "APPLIANCE_DATA_DIR",
)


def _parse_env(text: str) -> list[tuple[str | None, str]]:
    """(name or None, the line) for each line, so a merge keeps comments and order."""
    lines = []
    for line in text.splitlines():
        name, sep, _ = line.partition("=")
        stripped = name.strip()
        is_setting = sep and stripped.isidentifier() and not line.lstrip().startswith("#")
        lines.append((stripped if is_setting else None, line))
    return lines


def _value_of(lines: list[tuple[str | None, str]], name: str) -> str | None:
    for found, line in reversed(lines):
        if found == name:
            return line.partition("=")[2]
    return None


def merged_settings(restored: str, current: str | None) -> tuple[str, list[str]]:
    """The backup's settings file with this host's connection settings kept (and the data
    folder the files were restored into). Returns (text, the names set for this host)."""
    lines = _parse_env(restored)
    mine = _parse_env(current) if current is not None else []
    host_values = {name: _value_of(mine, name) for name in HOST_SETTINGS}
    host_values["APPLIANCE_DATA_DIR"] = str(settings.DATA_DIR)
    # Paths inside the old host's data folder (fetch_model writes the model's full path)
    # move with it: the same place under this host's data folder.
    old_data = (_value_of(lines, "APPLIANCE_DATA_DIR") or "").rstrip("/")
    kept = []
    out = []
    written = set()
    for name, line in lines:
        if name in host_values and host_values[name] is not None:
            if name in written:
                continue
            out.append(f"{name}={host_values[name]}")
            written.add(name)
            kept.append(name)
        elif name in host_values:
            continue  # this host does not set it: neither should the old host's value
        elif name and old_data and line.partition("=")[2].startswith(old_data + "/"):
            moved = line.partition("=")[2].removeprefix(old_data)
            out.append(f"{name}={str(settings.DATA_DIR).rstrip('/')}{moved}")
            kept.append(name)
        else:
            out.append(line)
    for name, value in host_values.items():
        if value is not None and name not in written:
            out.append(f"{name}={value}")
            kept.append(name)
    if _value_of(lines, "APPLIANCE_DEMO") is None:
        # A restored appliance is not a demo: deploy/up must not load demo people into it.
        out.append("APPLIANCE_DEMO=false")
    return "\n".join(out) + "\n", sorted(set(kept))


def _write_secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".restoring")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(staged, 0o600)
    staged.replace(path)


def restore_secrets(
    folder: Path,
    manifest: dict[str, Any],
    *,
    with_secrets: bool,
    secrets_to: Path | None,
    force: bool,
    say: Say,
) -> str:
    source = folder / SECRETS
    if SECRETS not in manifest["files"]:
        say("[7/7] settings file: the backup holds none (taken --without-secrets)")
        return "none in the backup"
    text = source.read_text(encoding="utf-8")
    if secrets_to is not None:
        if secrets_to.exists() and not force:
            raise RestoreError(f"{secrets_to} exists; choose another place or add --force.")
        _write_secret_file(secrets_to, text)
        say(f"[7/7] settings file: the backup's, as it was, written to {secrets_to} (mode 600)")
        return f"written to {secrets_to}"
    if not with_secrets:
        say(
            f"[7/7] settings file: NOT restored. The backup's secrets are in {source}. Without "
            "its APPLIANCE_AUDIT_SIGNING_KEY, audit exports signed before the backup verify "
            "only with the old public key (--public-key); without its APPLIANCE_SECRET_KEY "
            "everyone signs in again. Run restore with --with-secrets to put it in place, "
            "or --secrets-to <file> to write it elsewhere."
        )
        return "not restored"
    path = settings_file()
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    merged, kept = merged_settings(text, current)
    if current is not None:
        before = path.with_name(path.name + ".before-restore")
        _write_secret_file(before, current)
        say(f"[7/7] settings file {path} (this host's previous one is kept as {before})")
    else:
        say(f"[7/7] settings file {path}")
    _write_secret_file(path, merged)
    say(
        "    secret key, audit signing key and every other setting from the backup; "
        f"set for this host: {', '.join(kept) if kept else 'nothing'}"
    )
    return f"restored to {path}"
