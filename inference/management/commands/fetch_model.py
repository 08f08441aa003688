"""Put the production model in place: download it (on a host that may reach the internet)
or take a file carried in by hand, verify its SHA-256, and point the settings at it."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.catalog import CATALOG, ModelSpec
from inference.settings_file import set_values


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def published_sha256(spec: ModelSpec) -> str:
    """The SHA-256 the publisher lists for the file (the Git LFS object id on the hub)."""
    if not spec.checksum_url:
        return ""
    with urllib.request.urlopen(spec.checksum_url, timeout=30) as response:  # noqa: S310 - https
        entries = json.load(response)
    for entry in entries:
        if entry.get("path") == spec.filename and entry.get("lfs", {}).get("oid"):
            return str(entry["lfs"]["oid"]).lower()
    return ""


def _https(url: str) -> str:
    if not url.startswith("https://"):
        raise CommandError("Only https:// addresses are accepted.")
    return url


class Command(BaseCommand):
    help = (
        "Install a model from the catalogue (gpt-oss-20b): --from-file takes a GGUF carried in "
        "by hand (give its published --sha256); otherwise it is downloaded and checked against "
        "the SHA-256 its publisher lists. Then the settings file is updated. Restart the "
        "appliance afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", choices=sorted(CATALOG))
        parser.add_argument("--from-file", type=Path, help="a GGUF file already on this host")
        parser.add_argument("--sha256", default="", help="the expected SHA-256")
        parser.add_argument("--url", default="", help="download from here instead")
        parser.add_argument(
            "--skip-checksum",
            action="store_true",
            help="accept a file whose SHA-256 cannot be compared (not recommended)",
        )

    def handle(self, *args: object, **options: object) -> None:
        spec = CATALOG[str(options["name"])]
        target = settings.MODELS_DIR / spec.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        expected = str(options["sha256"] or spec.sha256).lower()
        source: Path | None = options["from_file"]  # type: ignore[assignment]
        partial = target.with_suffix(target.suffix + ".part")
        if source is not None:
            if not source.is_file():
                raise CommandError(f"{source} is not a file.")
            self.stdout.write(f"Copying {source} to {target} …")
            shutil.copyfile(source, partial)
        else:
            url = _https(str(options["url"] or spec.url))
            try:
                if not expected and not options["skip_checksum"]:
                    expected = published_sha256(spec)
                self.stdout.write(f"Downloading {url} …")
                with (
                    urllib.request.urlopen(url, timeout=60) as response,  # noqa: S310 - https only
                    open(partial, "wb") as out,
                ):
                    shutil.copyfileobj(response, out, length=1 << 22)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise CommandError(
                    f"The download failed ({exc}). On a host without internet access, carry the "
                    "file in and use --from-file with its published --sha256."
                ) from None
        if not expected and not options["skip_checksum"]:
            partial.unlink(missing_ok=True)
            raise CommandError(
                "No SHA-256 to compare the file with. Give the published one with --sha256 "
                "(or, at your own risk, --skip-checksum). Nothing changed."
            )
        actual = sha256_of(partial)
        if expected and actual != expected:
            partial.unlink(missing_ok=True)
            raise CommandError(
                f"SHA-256 mismatch: expected {expected}, got {actual}. Nothing changed."
            )
        partial.replace(target)
        set_values({"APPLIANCE_LLM_MODEL": spec.name, "APPLIANCE_LLM_MODEL_PATH": str(target)})
        self.stdout.write(f"SHA-256 {actual} ({'verified' if expected else 'NOT verified'})")
        self.stdout.write(
            f"{spec.label} is installed. Restart the appliance (deploy/down, deploy/up)."
        )
        self.stdout.write(str(target))
