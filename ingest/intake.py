"""From what a curator sends to files in the upload area: names cleaned, archives
unpacked safely, sizes bounded, content checked against the extension. No database work
here; ``actions.upload_documents`` records what this lets through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings

from ingest import archives, storage
from ingest.parsing import ParseError, UnsupportedFile, kind_for_name, sniff

log = logging.getLogger(__name__)


@dataclass
class IncomingFile:
    """A file as sent. ``name`` may hold folders ("policies/leave.pdf") when it came from
    a folder; they are kept (cleaned) so a later upload of the same place is a new
    version of the same document."""

    name: str
    stream: BinaryIO


@dataclass
class Stored:
    name: str  # cleaned, with folders
    kind: str
    relative: str  # where it lies under the upload folder
    sha256: str
    size: int


@dataclass
class Refused:
    name: str
    reason: str


def receive(collection_id: int, files: Iterable[IncomingFile]) -> Iterator[Stored | Refused]:
    """Each file stored, or refused with its reason; zip archives give their entries."""
    for incoming in files:
        name = storage.safe_relative_name(incoming.name)
        try:
            kind = kind_for_name(name)
        except UnsupportedFile as exc:
            yield Refused(name, str(exc))
            continue
        if kind == "zip":
            yield from _archive(collection_id, incoming.stream, name)
            continue
        yield _store(collection_id, incoming.stream, name, kind)


def _archive(collection_id: int, stream: BinaryIO, name: str) -> Iterator[Stored | Refused]:
    # Entries keep their folders inside the archive, not the archive's own name: the same
    # folder sent as a zip or as a folder gives the same documents.
    folder = str(PurePosixPath(name).parent)
    prefix = "" if folder == "." else folder + "/"
    try:
        for entry in archives.entries(stream, PurePosixPath(name).name):
            inner = storage.safe_relative_name(prefix + entry.inner_name)
            if entry.skipped_reason:
                yield Refused(entry.name, entry.skipped_reason)
                continue
            try:
                kind = kind_for_name(inner)
            except UnsupportedFile as exc:
                yield Refused(entry.name, str(exc))
                continue
            try:
                yield _store(collection_id, entry.stream, inner, kind, shown=entry.name)
            except archives.ArchiveError as exc:
                yield Refused(entry.name, str(exc))
    except archives.ArchiveError as exc:
        yield Refused(name, str(exc))


def _store(
    collection_id: int, stream: BinaryIO, name: str, kind: str, shown: str = ""
) -> Stored | Refused:
    max_bytes = settings.UPLOAD_MAX_FILE_MB * 1024 * 1024
    try:
        relative, sha256, size = storage.store(
            stream, collection_id, Path(name).suffix, max_bytes=max_bytes
        )
    except storage.FileTooLarge:
        return Refused(
            shown or name,
            f"The file is larger than the {settings.UPLOAD_MAX_FILE_MB:,} MB allowed per file.",
        )
    try:
        sniff.check_file(storage.absolute(relative), kind, name)
    except ParseError as exc:
        storage.remove(relative)
        return Refused(shown or name, str(exc))
    return Stored(name=name, kind=kind, relative=relative, sha256=sha256, size=size)
