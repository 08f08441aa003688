"""The audit export over HTTP, the same for the auditor's page and the API, and checking an
uploaded export.

An export is written to a temporary file first (``export.write_export``, exactly what
``manage.py audit_export`` writes), because its manifest needs the file's SHA-256 before
anything is sent. The API sends the file with its manifest in the ``X-Audit-Manifest``
header (or both in a zip with ``bundle=zip``); the page always sends the zip.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.http import FileResponse
from django.utils import timezone

from appliance.audit import actions as audit
from appliance.audit import export
from appliance.audit.models import Action

MANIFEST_SUFFIX = ".manifest.json"
_MAX_MANIFEST_BYTES = 1 << 20


def export_response(
    actor: Any, fmt: str, filters: export.Filters, *, via: str, bundle: bool
) -> FileResponse:
    """Audit the export, write it, and answer with it. ``via``: "web" or "api"."""
    audit.record_alone(
        Action.AUDIT_EXPORT,
        actor=actor,
        details={"format": fmt, "filters": filters.as_dict(), "via": via, "bundle": bundle},
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    name = f"audit-{stamp}.{fmt}"
    workdir = Path(tempfile.mkdtemp(prefix="audit-export-"))
    try:
        path = workdir / name
        summary = export.write_export(path, fmt, filters)
        if bundle:
            zipped = workdir / f"audit-{stamp}.zip"
            with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.write(path, name)
                archive.write(Path(f"{path}{MANIFEST_SUFFIX}"), name + MANIFEST_SUFFIX)
            handle = open(zipped, "rb")  # noqa: SIM115 - FileResponse closes it
            response = FileResponse(
                handle, as_attachment=True, filename=zipped.name, content_type="application/zip"
            )
        else:
            handle = open(path, "rb")  # noqa: SIM115 - FileResponse closes it
            response = FileResponse(
                handle,
                as_attachment=True,
                filename=name,
                content_type="text/csv; charset=utf-8"
                if fmt == "csv"
                else "application/x-ndjson; charset=utf-8",
            )
        # ASCII-only JSON on one line: a valid header value.
        response["X-Audit-Manifest"] = json.dumps(
            summary.manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        response["Cache-Control"] = "no-store"
        return response
    finally:
        # The open handle keeps the file readable after its name is gone.
        shutil.rmtree(workdir, ignore_errors=True)


class UploadRejected(ValueError):
    pass


def _copy_limited(source: BinaryIO, target: Path, limit: int, what: str) -> None:
    copied = 0
    with open(target, "wb") as out:
        while block := source.read(1 << 20):
            copied += len(block)
            if copied > limit:
                raise UploadRejected(f"The {what} is larger than this appliance accepts.")
            out.write(block)


def verify_upload(
    *,
    bundle: BinaryIO | None = None,
    file: BinaryIO | None = None,
    manifest: BinaryIO | None = None,
) -> dict[str, Any]:
    """Check an uploaded export: a zip as the page offers it, or the file and its manifest
    separately. Returns the manifest; raises UploadRejected or export.VerificationFailed."""
    limit = settings.UPLOAD_MAX_FILE_MB * (1 << 20)
    with tempfile.TemporaryDirectory(prefix="audit-verify-") as tmp:
        work = Path(tmp)
        data, meta = work / "export", work / "export.manifest.json"
        if bundle is not None:
            _unpack(bundle, work, data, meta, limit)
        elif file is not None and manifest is not None:
            _copy_limited(file, data, limit, "export")
            _copy_limited(manifest, meta, _MAX_MANIFEST_BYTES, "manifest")
        else:
            raise UploadRejected(
                "Choose the zip you downloaded, or both the export file and its manifest."
            )
        return export.verify_export(data, meta)


def _unpack(bundle: BinaryIO, work: Path, data: Path, meta: Path, limit: int) -> None:
    archive_path = work / "bundle.zip"
    _copy_limited(bundle, archive_path, limit, "zip")
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = archive.namelist()
            manifests = [n for n in names if n.endswith(MANIFEST_SUFFIX)]
            if len(manifests) != 1 or manifests[0][: -len(MANIFEST_SUFFIX)] not in names:
                raise UploadRejected(
                    "The zip must hold one export and its manifest (<file>.manifest.json), "
                    "as downloaded from this page."
                )
            inner = manifests[0][: -len(MANIFEST_SUFFIX)]
            # Read through size limits, whatever the zip claims (no zip bombs).
            with archive.open(inner) as source:
                _copy_limited(source, data, limit, "export")
            with archive.open(manifests[0]) as source:
                _copy_limited(source, meta, _MAX_MANIFEST_BYTES, "manifest")
    except zipfile.BadZipFile:
        raise UploadRejected("That file is not a zip archive.") from None
