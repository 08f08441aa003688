"""Put the production model in place: download it (on a host that may reach the internet)
or take a file carried in by hand, verify its SHA-256, and point the settings at it."""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.catalog import CATALOG
from inference.settings_file import set_values


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


class Command(BaseCommand):
    help = (
        "Install a model from the catalogue (gpt-oss-20b): --from-file takes a GGUF carried in "
        "by hand; otherwise it is downloaded. Its SHA-256 is checked, then the settings file "
        "is updated. Restart the appliance afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", choices=sorted(CATALOG))
        parser.add_argument("--from-file", type=Path, help="a GGUF file already on this host")
        parser.add_argument(
            "--sha256", default="", help="expected SHA-256 (overrides the catalogue)"
        )
        parser.add_argument("--url", default="", help="download from here instead")

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
            url = str(options["url"] or spec.url)
            if url and not url.startswith("https://"):
                raise CommandError("Only https:// addresses are accepted.")
            if not url:
                raise CommandError(
                    f"No download address is known for {spec.name}; use --from-file."
                )
            self.stdout.write(f"Downloading {url} …")
            try:
                with (
                    urllib.request.urlopen(url, timeout=60) as response,  # noqa: S310 - https only
                    open(partial, "wb") as out,
                ):
                    shutil.copyfileobj(response, out, length=1 << 22)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise CommandError(
                    f"The download failed ({exc}). On a host without internet access, carry the "
                    "file in and use --from-file."
                ) from None
        actual = sha256_of(partial)
        if expected and actual != expected:
            partial.unlink(missing_ok=True)
            raise CommandError(
                f"SHA-256 mismatch: expected {expected}, got {actual}. Nothing changed."
            )
        partial.replace(target)
        set_values({"APPLIANCE_LLM_MODEL": spec.name, "APPLIANCE_LLM_MODEL_PATH": str(target)})
        checked = " (verified)" if expected else " (no checksum to compare; recorded)"
        self.stdout.write(f"SHA-256 {actual}{checked}")
        self.stdout.write(
            f"{spec.label} is installed. Restart the appliance (deploy/down, deploy/up)."
        )
        self.stdout.write(str(target))
