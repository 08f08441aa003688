"""Known vulnerabilities of the installed Python packages, from an advisory file on disk.

pip-audit asks an online service (PyPI or OSV) for every package; the appliance stays
offline, so the operator carries the advisories in instead: OSV's export of the PyPI
ecosystem (https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip, one OSV JSON
record per advisory, the Python Packaging Advisory Database and GitHub's among them),
downloaded on any machine with internet access and copied to ``var/advisories/``. Nothing
here opens a network connection.

Accepted: that zip, a folder of OSV ``.json`` files (or zips), or one ``.json`` file holding
a record or a list of records. Matching follows the OSV schema: an ``affected`` entry of the
PyPI ecosystem names the package; its ``versions`` list, or its ``ECOSYSTEM`` ranges of
``introduced`` / ``fixed`` / ``last_affected`` / ``limit`` events, compared as PEP 440
versions, decide whether the installed version is affected.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from django.conf import settings
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


class AdvisoryFileError(Exception):
    pass


def default_location() -> Path:
    return Path(settings.DATA_DIR) / "advisories"


@dataclass
class Finding:
    package: str
    version: str
    advisory: str
    aliases: list[str]
    summary: str
    fixed_in: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "advisory": self.advisory,
            "aliases": self.aliases,
            "summary": self.summary,
            "fixed_in": self.fixed_in,
        }


@dataclass
class Database:
    source: Path
    records: int
    newest: datetime | None  # the latest "modified" of any record: how fresh the file is


def _records_in_json(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, dict):
        yield data
    elif isinstance(data, list):
        yield from (item for item in data if isinstance(item, dict))


def _records_in_zip(path: Path) -> Iterator[dict[str, Any]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            try:
                yield from _records_in_json(json.loads(archive.read(info)))
            except ValueError:
                continue  # one unreadable record does not hide the others


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".zip"))
        if not found:
            raise AdvisoryFileError(f"{path} holds no .json or .zip advisory files")
        for item in found:
            yield from read_records(item)
        return
    if not path.is_file():
        raise AdvisoryFileError(f"there is no advisory file at {path}")
    if zipfile.is_zipfile(path):
        yield from _records_in_zip(path)
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdvisoryFileError(f"{path} is neither an OSV zip nor JSON ({exc})") from None
    yield from _records_in_json(data)


def installed_packages() -> dict[str, tuple[str, str]]:
    """canonical name -> (name as installed, version) for this interpreter's packages."""
    found: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), (name, dist.version))
    return found


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except (InvalidVersion, TypeError):
        return None


_ZERO = Version("0")


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """OSV's rule: walk the events in version order; an ``introduced`` at or below the
    version opens, a ``fixed`` or ``limit`` at or below it closes, a ``last_affected``
    below it closes."""
    parsed = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            if kind in event:
                value = _ZERO if event[kind] == "0" else _version(event[kind])
                if value is not None:
                    parsed.append((value, kind))
    # At one version, a closing event is applied after an opening one.
    order = {"introduced": 0, "fixed": 1, "last_affected": 1, "limit": 1}
    affected = False
    for value, kind in sorted(parsed, key=lambda item: (item[0], order[item[1]])):
        if kind == "introduced":
            affected = affected or version >= value
        elif version > value or (version == value and kind != "last_affected"):
            affected = False
    return affected


def _affects(affected: dict[str, Any], version: Version, raw: str) -> bool:
    if raw in affected.get("versions", []):
        return True
    listed = {_version(v) for v in affected.get("versions", [])}
    if version in listed:
        return True
    return any(
        _in_range(version, r.get("events", []))
        for r in affected.get("ranges", [])
        if r.get("type") == "ECOSYSTEM"
    )


def _fixed_versions(affected: dict[str, Any], version: Version) -> list[str]:
    fixed = []
    for r in affected.get("ranges", []):
        for event in r.get("events", []):
            value = _version(event.get("fixed", ""))
            if value is not None and value > version:
                fixed.append(str(value))
    return sorted(set(fixed), key=Version)


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def audit(
    path: Path, packages: dict[str, tuple[str, str]] | None = None
) -> tuple[Database, list[Finding]]:
    """Every (package, advisory) pair where the installed version is affected."""
    packages = installed_packages() if packages is None else packages
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    count = 0
    newest: datetime | None = None
    for record in read_records(path):
        count += 1
        modified = _parse_time(record.get("modified"))
        if modified is not None and (newest is None or modified > newest):
            newest = modified
        if record.get("withdrawn"):
            continue
        for affected in record.get("affected", []):
            package = affected.get("package", {})
            if str(package.get("ecosystem", "")).split(":")[0] != "PyPI":
                continue
            key = canonicalize_name(str(package.get("name", "")))
            if key not in packages:
                continue
            name, raw = packages[key]
            version = _version(raw)
            if version is None or not _affects(affected, version, raw):
                continue
            advisory = str(record.get("id", "?"))
            if (key, advisory) in seen:
                continue
            seen.add((key, advisory))
            findings.append(
                Finding(
                    package=name,
                    version=raw,
                    advisory=advisory,
                    aliases=[str(a) for a in record.get("aliases", [])],
                    summary=str(record.get("summary") or record.get("details", ""))[:200],
                    fixed_in=_fixed_versions(affected, version),
                )
            )
    if count == 0:
        raise AdvisoryFileError(f"{path} holds no advisories")
    findings.sort(key=lambda f: (f.package.lower(), f.advisory))
    return Database(path, count, newest), findings


def summarise(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    by_package: dict[str, list[Finding]] = {}
    for finding in findings:
        by_package.setdefault(f"{finding.package} {finding.version}", []).append(finding)
    return by_package
