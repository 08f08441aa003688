"""Ask a question as a user, through the running appliance (queue, answer worker, events)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts.models import User
from appliance.api.serializers import question_json
from inference import actions, events
from inference.models import Question


class Command(BaseCommand):
    help = "Ask a question as USER and print the answer with its citations (needs the workers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--user", required=True)
        parser.add_argument(
            "--collection",
            type=int,
            action="append",
            default=[],
            help="narrow to this collection id (repeatable)",
        )
        parser.add_argument("--timeout", type=int, default=600, help="seconds to wait")

    def handle(self, *args: object, **options: object) -> None:
        user = User.objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        try:
            question = actions.ask(user, str(options["question"]), options["collection"] or None)  # type: ignore[arg-type]
        except actions.InvalidQuestion as exc:
            raise CommandError(str(exc)) from None
        after = "0-0"
        streamed = False
        deadline_ms = int(options["timeout"]) * 1000  # type: ignore[call-overload]
        waited = 0
        while waited < deadline_ms:
            batch = events.read(question, after, block_ms=1000)
            if not batch:
                waited += 1000
                continue
            for entry_id, event, data in batch:
                after = entry_id
                if event == "token":
                    self.stdout.write(data["text"], ending="")
                    self.stdout.flush()
                    streamed = True
                elif event == "error":
                    raise CommandError(data.get("message", "The answer failed."))
                elif event == "done":
                    self._summary(Question.objects.get(pk=question.pk), user, streamed)
                    return
        raise CommandError(
            "No answer in time. Is an answer worker running? (deploy/up starts one; /healthz tells)"
        )

    def _summary(self, question: Question, user: User, streamed: bool) -> None:
        body = question_json(question, user)
        if streamed:
            self.stdout.write("")
        self.stdout.write("")
        for citation in body["citations"]:
            page = f", page {citation['page']}" if citation["page"] else ""
            self.stdout.write(
                f"[{citation['n']}] {citation['title']}{page} (document {citation['document_id']})"
            )
        if not body["grounded"]:
            self.stdout.write("(not found in the documents)")
        self.stdout.write(str(question.pk))
