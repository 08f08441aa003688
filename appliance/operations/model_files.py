"""The model files on this host: which the catalogue knows, which are in use, their sizes
and SHA-256, so a backup records them and the doctor can compare them with the catalogue.

Hashing gpt-oss-20b reads 12 GB (about half a minute), so checksums are remembered by
path, size and modification time in ``DATA_DIR/cache/model-sha256.json``; a file that
changes size or time is read again, and ``fresh=True`` reads every file again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from appliance.operations.common import Say, human_bytes, sha256_file
from inference.catalog import CATALOG
from ingest import embedding


@dataclass
class ModelFile:
    path: str  # relative to the models folder when inside it, else absolute
    size: int
    sha256: str


@dataclass
class ModelEntry:
    kind: str  # "language" or "embedding"
    name: str
    location: str  # file or folder on this host
    present: bool
    in_use: bool
    pinned_sha256: str = ""  # what the catalogue pins, for a language model
    files: list[ModelFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cache_path() -> Path:
    return Path(settings.DATA_DIR) / "cache" / "model-sha256.json"


class _Checksums:
    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh
        self.changed = False
        try:
            self.known: dict[str, Any] = json.loads(_cache_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.known = {}

    def of(self, path: Path, say: Say | None) -> tuple[int, str]:
        stat = path.stat()
        key = str(path.resolve())
        stamp = [stat.st_size, stat.st_mtime_ns]
        seen = self.known.get(key)
        if not self.fresh and seen and seen.get("stamp") == stamp:
            return stat.st_size, str(seen["sha256"])
        if say and stat.st_size > 500 * 2**20:
            say(f"    reading {path.name} ({human_bytes(stat.st_size)}) for its SHA-256 …")
        digest = sha256_file(path)
        self.known[key] = {"stamp": stamp, "sha256": digest}
        self.changed = True
        return stat.st_size, digest

    def save(self) -> None:
        if not self.changed:
            return
        try:
            target = _cache_path()
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_name(target.name + ".new")
            staged.write_text(json.dumps(self.known, indent=1), encoding="utf-8")
            staged.replace(target)
        except OSError:
            pass  # only a cache: the next run reads the files again


def _shown(path: Path) -> str:
    models_dir = Path(settings.MODELS_DIR).resolve()
    resolved = path.resolve()
    return str(resolved.relative_to(models_dir)) if models_dir in resolved.parents else str(path)


def _files_of(location: Path, checksums: _Checksums, say: Say | None) -> list[ModelFile]:
    if location.is_file():
        paths = [location]
    else:
        paths = sorted(p for p in location.rglob("*") if p.is_file())
    files = []
    for path in paths:
        size, digest = checksums.of(path, say)
        files.append(ModelFile(_shown(path), size, digest))
    return files


def inventory(
    embedding_models: Iterable[str] = (),
    *,
    hashed: bool = True,
    fresh: bool = False,
    say: Say | None = None,
) -> list[ModelEntry]:
    """Every language model of the catalogue, the configured one (even outside it), and
    the embedding models named (those collections use) beside the configured one."""
    checksums = _Checksums(fresh)
    entries: list[ModelEntry] = []
    configured = Path(settings.LLM_MODEL_PATH)
    languages: dict[str, tuple[Path, str]] = {
        spec.name: (Path(settings.MODELS_DIR) / spec.filename, spec.sha256)
        for spec in CATALOG.values()
    }
    languages[settings.LLM_MODEL] = (configured, settings.LLM_SPEC.sha256)
    for name, (location, pinned) in sorted(languages.items()):
        entry = ModelEntry(
            "language",
            name,
            str(location),
            location.is_file(),
            in_use=name == settings.LLM_MODEL and settings.LLM_BACKEND == "local",
            pinned_sha256=pinned,
        )
        if entry.present:
            entry.files = (
                _files_of(location, checksums, say)
                if hashed
                else [ModelFile(_shown(location), location.stat().st_size, "")]
            )
        entries.append(entry)
    names = {settings.EMBEDDING_MODEL, *(n for n in embedding_models if n)}
    for name in sorted(names):
        location = embedding.path_of(name)
        entry = ModelEntry(
            "embedding", name, str(location), embedding.is_installed(name), in_use=True
        )
        if entry.present and hashed:
            entry.files = _files_of(location, checksums, say)
        entries.append(entry)
    if settings.RERANKER_MODEL_PATH:
        location = Path(settings.RERANKER_MODEL_PATH)
        entry = ModelEntry("reranker", location.name, str(location), location.is_dir(), True)
        if entry.present and hashed:
            entry.files = _files_of(location, checksums, say)
        entries.append(entry)
    checksums.save()
    return entries
