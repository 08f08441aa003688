"""Move collections to another embedding model; they keep answering from the old vectors
until the new ones are complete (see ingest/reembed.py)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest import embedding, reembed
from ingest.models import Collection


class Command(BaseCommand):
    help = (
        "Re-embed collections with an embedding model (APPLIANCE_EMBEDDING_MODEL unless "
        "--model names another). Questions are answered from the old vectors until every "
        "document has new ones; then the collection switches in one transaction. Safe to "
        "interrupt and run again: it resumes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("collections", nargs="*", type=int, help="collection ids")
        parser.add_argument(
            "--all",
            action="store_true",
            help="every collection whose model is not the configured one",
        )
        parser.add_argument(
            "--model",
            default="",
            help="a folder name under the models folder, or an absolute path "
            f"(default: {settings.EMBEDDING_MODEL})",
        )

    def handle(self, *args: object, **options: object) -> None:
        model = str(options["model"] or settings.EMBEDDING_MODEL)
        if not embedding.is_installed(model):
            raise CommandError(
                f"No sentence-transformers model at {embedding.path_of(model)}. Copy the "
                "model's folder there first (this appliance never downloads one)."
            )
        ids = [int(i) for i in options["collections"]]  # type: ignore[union-attr]
        if options["all"]:
            collections = list(Collection.objects.exclude(embedding_model=model).order_by("pk"))
        elif ids:
            collections = list(Collection.objects.filter(pk__in=ids).order_by("pk"))
            missing = set(ids) - {c.pk for c in collections}
            if missing:
                raise CommandError(f"No collection with id {', '.join(map(str, sorted(missing)))}.")
        else:
            raise CommandError("Name collection ids, or --all.")
        unfinished = 0
        for collection in collections:
            self.stdout.write(
                f"{collection} (id {collection.pk}): {collection.embedding_model} -> {model}"
            )
            report = reembed.reembed(None, collection, model, progress=self.stdout.write)
            if report.switched:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"  done: {report.documents} document(s), {report.chunks} chunks "
                        f"embedded in {report.seconds:.1f} s; answers now come from {model}."
                    )
                )
            elif report.failed:
                unfinished += 1
                self.stdout.write(
                    self.style.WARNING(
                        f"  not switched: {len(report.failed)} document(s) could not be read "
                        f"again; answers still come from {report.previous_model}. Replace or "
                        "delete them, then run this again (finished documents are kept)."
                    )
                )
            elif collection.embedding_model != model:
                unfinished += 1
                self.stdout.write(
                    self.style.WARNING(
                        "  not switched: documents kept arriving; run this again to finish."
                    )
                )
        if unfinished:
            raise CommandError(f"{unfinished} collection(s) still answer from their old model.")
