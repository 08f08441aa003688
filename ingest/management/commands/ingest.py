"""Queue files, folders and zip archives from disk into a collection.

Built for tens of thousands of files: folders are walked lazily (never listed whole in
memory), files are recorded in batches (one transaction, one look-up of names and
checksums per batch), and ``--wait`` follows progress with one counting query a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from ingest import actions
from ingest.models import FINAL_STATUSES, Collection, Document, Status


def _files(paths: list[str]) -> Iterator[tuple[Path, str]]:
    """(file, name to record): a folder's files keep their place inside the folder, with
    the folder's own name first, so the same folder ingested again updates its documents."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            base = path.resolve().parent
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                for name in sorted(names):
                    child = Path(folder) / name
                    if name.startswith(".") or child.is_symlink() or not child.is_file():
                        continue
                    yield child, str(child.resolve().relative_to(base))
        elif path.is_file():
            yield path, path.name
        else:
            raise CommandError(f"{raw} is neither a file nor a folder.")


class _Opened:
    """Files opened one at a time as the upload reads them, and closed right after."""

    def __init__(self, files: Iterator[tuple[Path, str]]) -> None:
        self.files = files

    def __iter__(self) -> Iterator[actions.IncomingFile]:
        for path, name in self.files:
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed right after it is stored
            except OSError as exc:
                raise CommandError(f"{path} cannot be read: {exc}") from None
            with handle:
                yield actions.IncomingFile(name, handle)


class Command(BaseCommand):
    help = (
        "Queue files, folders (recursively) and zip archives for ingestion into a collection. "
        "The ingest workers do the reading; --wait follows their progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--collection", type=int, required=True, help="collection id")
        parser.add_argument("--wait", action="store_true", help="wait until every file is done")
        parser.add_argument(
            "--quiet", action="store_true", help="print refusals and totals only, not each file"
        )

    def handle(self, *args: object, **options: object) -> None:
        collection = Collection.objects.filter(pk=options["collection"]).first()
        if collection is None:
            raise CommandError(f"No collection with id {options['collection']}.")
        quiet = bool(options["quiet"])
        counts = {"queued": 0, "new versions": 0, "already there": 0, "refused": 0}
        started = time.monotonic()
        files = _Opened(_files(options["paths"]))  # type: ignore[arg-type]
        for result in actions.upload_stream(None, collection, files):
            if result.error:
                counts["refused"] += 1
                self.stdout.write(f"refused  {result.name}: {result.error}")
            elif result.duplicate:
                counts["already there"] += 1
                if not quiet:
                    self.stdout.write(f"already  {result.name} (document {result.document.pk})")
            else:
                counts["new versions" if result.new_version else "queued"] += 1
                if not quiet:
                    verb = "version " if result.new_version else "queued  "
                    self.stdout.write(f"{verb} {result.name} (document {result.document.pk})")
        summary = ", ".join(f"{n} {label}" for label, n in counts.items())
        self.stdout.write(f"{summary} in {time.monotonic() - started:.1f} s.")
        if options["wait"] and (counts["queued"] or counts["new versions"]):
            self._wait(collection)

    def _wait(self, collection: Collection) -> None:
        """Until nothing in the collection is queued or being read; counts, not rows."""
        last = ""
        while True:
            by_status = dict(
                Document.objects.filter(collection=collection)
                .values_list("status")
                .annotate(n=Count("id"))
                .values_list("status", "n")
            )
            open_ = sum(n for status, n in by_status.items() if status not in FINAL_STATUSES)
            line = ", ".join(f"{by_status.get(s, 0)} {s}" for s in Status.values)
            if line != last:
                self.stdout.write(line)
                last = line
            if not open_:
                break
            time.sleep(1)
        for name, error in (
            Document.objects.filter(collection=collection, status=Status.FAILED)
            .values_list("original_name", "error")
            .iterator()
        ):
            self.stdout.write(f"failed   {name}: {error}")
