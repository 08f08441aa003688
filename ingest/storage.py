"""Where uploaded files live: under the upload folder, named by us, never by the client."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import unicodedata
import uuid
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings

MAX_NAME = 200


def safe_display_name(name: str) -> str:
    """The file's own name for display: no folders, no control characters, bounded length."""
    name = name.replace("\\", "/").replace("\x00", "")
    name = PurePosixPath(name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    name = name.lstrip(".") or "unnamed"
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (
            (stem[: MAX_NAME - len(ext) - 1] + dot + ext)
            if dot and len(ext) < 12
            else name[:MAX_NAME]
        )
    return name


def safe_relative_name(name: str) -> str:
    """A file's place in an uploaded folder or archive, for display and for recognising
    new versions: each folder name cleaned like a file name, ``..`` and ``.`` dropped,
    never absolute, at most 300 characters (the end kept)."""
    parts = [
        safe_display_name(part)
        for part in name.replace("\\", "/").replace("\x00", "").split("/")
        if part.strip() not in ("", ".", "..")
    ]
    parts = [part for part in parts if part != "unnamed"] or ["unnamed"]
    joined = "/".join(parts)
    while len(joined) > 300 and len(parts) > 1:
        parts.pop(0)
        joined = "/".join(parts)
    return joined[-300:]


class FileTooLarge(ValueError):
    pass


def upload_root() -> Path:
    root = Path(settings.UPLOAD_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return root


def store(
    source: BinaryIO, collection_id: int, suffix: str, max_bytes: int | None = None
) -> tuple[str, str, int]:
    """Copy ``source`` into the upload area. Returns (relative path, sha256, size).
    Raises FileTooLarge (and keeps nothing) past ``max_bytes``."""
    folder = upload_root() / str(collection_id)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = (
        suffix.lower() if suffix.isascii() and len(suffix) <= 10 and suffix[1:].isalnum() else ""
    )
    relative = Path(str(collection_id)) / f"{uuid.uuid4().hex}{suffix}"
    target = upload_root() / relative
    digest = hashlib.sha256()
    size = 0
    try:
        with open(target, "xb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise FileTooLarge(f"larger than {max_bytes / 2**20:,.0f} MB")
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return str(relative), digest.hexdigest(), size


def absolute(relative: str) -> Path:
    root = upload_root().resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError("stored path escapes the upload folder")
    return path


def remove(relative: str) -> None:
    with contextlib.suppress(ValueError):
        absolute(relative).unlink(missing_ok=True)


def remove_collection_folder(collection_id: int) -> None:
    shutil.rmtree(upload_root() / str(collection_id), ignore_errors=True)
