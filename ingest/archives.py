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

MAX_ENTRIES = 10_000
MAX_RATIO = 200  # uncompressed / compressed, per entry


class ArchiveError(ValueError):
    pass


@dataclass
class Entry:
    name: str  # the path inside the archive, for display
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
            raise ArchiveError(f"{self.name} is larger than its archive says (a zip bomb?)")
        return data


def entries(archive: BinaryIO, archive_name: str) -> Iterator[Entry]:
    max_file = settings.UPLOAD_MAX_FILE_MB * 1024 * 1024
    max_total = max_file * 5
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise ArchiveError(f"{archive_name} is not a readable zip archive.") from None
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
            if stat.S_ISLNK(mode):
                yield Entry(display, _empty(), "symbolic links inside archives are not followed")
                continue
            if info.flag_bits & 0x1:
                yield Entry(display, _empty(), "this entry is password-protected")
                continue
            if name.lower().endswith(".zip"):
                yield Entry(display, _empty(), "archives inside archives are not unpacked")
                continue
            if info.file_size > max_file:
                yield Entry(display, _empty(), f"larger than {settings.UPLOAD_MAX_FILE_MB} MB")
                continue
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                yield Entry(display, _empty(), "compressed suspiciously well (a zip bomb?)")
                continue
            with zf.open(info) as raw:
                yield Entry(display, _Bounded(raw, info.file_size, display))  # type: ignore[arg-type]


def _empty() -> BinaryIO:
    import io

    return io.BytesIO(b"")
