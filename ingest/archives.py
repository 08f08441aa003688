"""Reading zip archives without trusting them.

Entries are streamed straight into the upload area (never extracted by their own paths),
so traversal (``../``), absolute paths and symlinks cannot place anything anywhere. Sizes
are checked against the archive's directory before reading and again while reading (the
directory can lie), which stops zip bombs; archives inside archives are refused.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from django.conf import settings

from ingest.parsing import ParseError
from ingest.parsing.containers import zip_entry_count

MAX_ENTRIES = 10_000
MAX_RATIO = 200  # uncompressed / compressed, per entry of more than RATIO_FLOOR bytes
RATIO_FLOOR = 1 << 20


class ArchiveError(ValueError):
    pass


@dataclass
class Entry:
    name: str  # archive name and the path inside it, for display
    inner_name: str  # the path inside the archive (not yet cleaned)
    stream: BinaryIO
    skipped_reason: str = ""


class _Bounded:
    """A file-like reader that refuses to deliver more than ``limit`` bytes."""

    def __init__(self, raw: BinaryIO, limit: int, name: str) -> None:
        self.raw, self.left, self.name = raw, limit, name

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise ArchiveError(
                f"{self.name} is larger than its archive says (a zip bomb?); not unpacked."
            )
        return data


def entries(archive: BinaryIO, archive_name: str) -> Iterator[Entry]:
    max_file = settings.UPLOAD_MAX_FILE_MB * 1024 * 1024
    max_total = max_file * 5
    unreadable = f"{archive_name} is damaged or not really a zip archive, so it was not unpacked."
    try:
        # The count the archive declares, before zipfile builds a directory of that size.
        declared = zip_entry_count(archive)
    except (ParseError, OSError):
        raise ArchiveError(unreadable) from None
    if declared > MAX_ENTRIES:
        raise ArchiveError(f"{archive_name} holds more than {MAX_ENTRIES:,} entries.")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ArchiveError(unreadable) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ArchiveError(f"{archive_name} holds more than {MAX_ENTRIES:,} entries.")
        total = sum(i.file_size for i in infos)
        if total > max_total:
            raise ArchiveError(
                f"{archive_name} would unpack to {total / 2**20:,.0f} MB, more than the "
                f"{max_total / 2**20:,.0f} MB allowed."
            )
        for info in infos:
            name = info.filename.replace("\\", "/")
            if info.is_dir() or name.endswith("/"):
                continue
            display = f"{archive_name}/{PurePosixPath(name).as_posix().lstrip('/')}"
            if "__MACOSX/" in name or PurePosixPath(name).name.startswith("._"):
                continue
            mode = info.external_attr >> 16
            reason = ""
            if stat.S_ISLNK(mode):
                reason = "Symbolic links inside archives are not followed."
            elif info.flag_bits & 0x1:
                reason = "This entry of the archive is password-protected."
            elif name.lower().endswith(".zip"):
                reason = "Archives inside archives are not unpacked; upload that archive itself."
            elif info.file_size > max_file:
                reason = f"Larger than the {settings.UPLOAD_MAX_FILE_MB:,} MB allowed per file."
            elif info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(
                info.compress_size, 1
            ):
                reason = "Compressed suspiciously well (a zip bomb?); not unpacked."
            if reason:
                yield Entry(display, name, _empty(), reason)
                continue
            with zf.open(info) as raw:
                yield Entry(display, name, _Bounded(raw, info.file_size, display))  # type: ignore[arg-type]


def _empty() -> BinaryIO:
    import io

    return io.BytesIO(b"")
