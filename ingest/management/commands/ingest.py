"""Queue files, folders and zip archives from disk into a collection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest import actions
from ingest.models import FINAL_STATUSES, Collection, Document


def _files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not child.is_symlink() and not child.name.startswith("."):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise CommandError(f"{raw} is neither a file nor a folder.")


class Command(BaseCommand):
    help = (
        "Queue files, folders (recursively) and zip archives for ingestion into a collection. "
        "The ingest workers do the reading; --wait follows their progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--collection", type=int, required=True, help="collection id")
        parser.add_argument("--wait", action="store_true", help="wait until every file is done")

    def handle(self, *args: object, **options: object) -> None:
        collection = Collection.objects.filter(pk=options["collection"]).first()
        if collection is None:
            raise CommandError(f"No collection with id {options['collection']}.")
        queued: list[int] = []
        rejected = 0
        for path in _files(options["paths"]):  # type: ignore[arg-type]
            with open(path, "rb") as handle:
                results = actions.upload_documents(
                    None, collection, [actions.IncomingFile(path.name, handle)]
                )
            for result in results:
                if result.error:
                    rejected += 1
                    self.stdout.write(f"refused  {result.name}: {result.error}")
                elif result.duplicate:
                    self.stdout.write(f"already  {result.name} (document {result.document.pk})")
                else:
                    queued.append(result.document.pk)
                    self.stdout.write(f"queued   {result.name} (document {result.document.pk})")
        self.stdout.write(f"{len(queued)} queued, {rejected} refused.")
        if options["wait"] and queued:
            self._wait(queued)

    def _wait(self, ids: list[int]) -> None:
        last = ""
        while True:
            documents = list(Document.objects.filter(pk__in=ids))
            done = [d for d in documents if d.status in FINAL_STATUSES]
            line = f"{len(done)}/{len(ids)} done"
            if line != last:
                self.stdout.write(line)
                last = line
            if len(done) == len(documents):
                break
            time.sleep(1)
        for document in documents:
            if document.status != "ready":
                self.stdout.write(f"failed   {document.original_name}: {document.error}")
