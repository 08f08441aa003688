from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from appliance.accounts.models import Department
from appliance.audit import actions as audit
from inference import retention


class Command(BaseCommand):
    help = (
        "Delete questions, answers and conversations older than the chat retention period "
        "(APPLIANCE_CHAT_RETENTION_DAYS, and each department's own, the shortest winning). "
        "The answer workers do this every hour by themselves; the audit rows stay."
    )

    def handle(self, *args: object, **options: object) -> None:
        if (
            settings.CHAT_RETENTION_DAYS <= 0
            and not Department.objects.filter(chat_retention_days__gt=0).exists()
        ):
            self.stdout.write(
                "Chat retention is off (APPLIANCE_CHAT_RETENTION_DAYS=0 and no department "
                "sets its own): nothing is deleted."
            )
            return
        result = retention.prune(actor_name=audit.command_actor())
        self.stdout.write(
            f"Deleted {result.questions} question(s) and {result.conversations} "
            f"conversation(s) older than the retention period."
        )
