from __future__ import annotations

from django.core.management.base import BaseCommand

from inference import tasks as answer_tasks
from inference.pilot import tasks as pilot_tasks
from ingest import tasks as ingest_tasks


class Command(BaseCommand):
    help = (
        "Queue again what lost its worker or its queue message (documents, questions, pilot "
        "runs) and end the answers of workers that died. The workers do this every minute "
        "themselves; the systemd timer (deploy/install-services) runs it too, so nothing "
        "waits for ever while no worker of a kind is running."
    )

    def handle(self, *args: object, **options: object) -> None:
        touched = {
            "documents": ingest_tasks.reconcile(),
            "questions": answer_tasks.reconcile(),
            "pilot runs": pilot_tasks.reconcile(),
        }
        self.stdout.write(", ".join(f"{what}: {n}" for what, n in touched.items()))
