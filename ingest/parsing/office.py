"""Old binary Word and PowerPoint files (.doc, .ppt): LibreOffice converts them to DOCX or
PPTX, which the usual parsers read.

LibreOffice runs headless with a profile of its own in a private folder (two conversions
sharing the default profile fail), with a time limit, and inside the parse sandbox's
memory limit. unstructured's own converter is not used: it looks for any ``soffice``
process on the host and waits for it, and has no time limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.unstructured_files import parse_with_unstructured

CONVERT_TIMEOUT_SECONDS = 300
TARGET = {"doc": "docx", "ppt": "pptx"}
_profile_dir: Path | None = None


def _profile() -> Path:
    """One LibreOffice profile per process, created on first use (it takes a second)."""
    global _profile_dir
    if _profile_dir is None:
        _profile_dir = Path(tempfile.mkdtemp(prefix="appliance-soffice-"))
    return _profile_dir


def cleanup() -> None:
    global _profile_dir
    if _profile_dir is not None:
        shutil.rmtree(_profile_dir, ignore_errors=True)
        _profile_dir = None


def convert(path: Path, kind: str, workdir: Path) -> Path:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    label = "Word" if kind == "doc" else "PowerPoint"
    if soffice is None:
        raise ParseError(
            f"Reading old {label} files (.{kind}) needs LibreOffice, which is not installed "
            f"on this appliance. Save the file as .{TARGET[kind]} and upload that."
        )
    target = TARGET[kind]
    profile = _profile()
    command = [
        soffice,
        f"-env:UserInstallation=file://{profile}",
        "--headless",
        "--norestore",
        "--nolockcheck",
        "--convert-to",
        target,
        "--outdir",
        str(workdir),
        str(path),
    ]
    env = {**os.environ, "HOME": str(profile), "SAL_USE_VCLPLUGIN": "svp"}
    try:
        subprocess.run(
            command,
            capture_output=True,
            timeout=CONVERT_TIMEOUT_SECONDS,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ParseError(
            f"Converting this old {label} file took longer than "
            f"{CONVERT_TIMEOUT_SECONDS // 60} minutes; save it as .{target} and upload that."
        ) from None
    converted = workdir / f"{path.stem}.{target}"
    if not converted.exists() or converted.stat().st_size == 0:
        raise ParseError(
            f"This old {label} file could not be converted (it may be damaged or "
            f"password-protected). Save it as .{target} and upload that."
        )
    return converted


def parse_legacy(
    path: Path, kind: str, progress: ProgressCallback | None = None
) -> Iterator[Block]:
    with tempfile.TemporaryDirectory(prefix="appliance-convert-") as workdir:
        converted = convert(path, kind, Path(workdir))
        # The converted file is LibreOffice's own output, read here before the folder goes.
        yield from list(parse_with_unstructured(converted, TARGET[kind], progress))
