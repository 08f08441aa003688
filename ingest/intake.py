"""From what a curator sends to files in the upload area: names cleaned, archives
unpacked safely, sizes bounded, content checked against the extension. No database work
here; ``actions.upload_documents`` records what this lets through.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest

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
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                # A damaged entry (bad checksum, truncated data): only this one is lost.
                log.info("archive entry %s is damaged: %s", entry.name, exc)
                yield Refused(entry.name, "This entry of the archive is damaged; not unpacked.")
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


class UploadRejected(Exception):
    """A whole request refused (too many parts): ``status`` and a message for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def incoming_files(request: HttpRequest) -> list[IncomingFile]:
    """The files of an upload request, each named by its place in a folder when the
    browser sent one (a ``paths`` field per file, in the same order)."""
    try:
        files = request.FILES.getlist("files")
        paths = request.POST.getlist("paths")
    except TooManyFilesSent:
        raise UploadRejected(
            400,
            f"One upload may carry at most {settings.UPLOAD_MAX_FILES:,} files; send the "
            "rest in another upload (the upload page does this by itself).",
        ) from None
    except (TooManyFieldsSent, RequestDataTooBig):
        raise UploadRejected(
            400, "This upload has too many form fields; send fewer files at a time."
        ) from None
    if len(paths) != len(files):
        paths = [f.name or "" for f in files]
    return [IncomingFile(path or f.name or "", f) for path, f in zip(paths, files, strict=True)]
