from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from appliance import access


class QuestionQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> QuestionQuerySet:
        return self.filter(access.owned_filter(user))


class ConversationQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> ConversationQuerySet:
        return self.filter(access.owned_filter(user))


class Conversation(models.Model):
    """A thread of questions; follow-ups are read in its light."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title


class QuestionStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    ERROR = "error", "Error"


class Question(models.Model):
    """A question and, once answered, its answer. The row is the truth about progress."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="questions"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="questions"
    )
    text = models.TextField()
    # What was searched: the question itself, or a follow-up rewritten to stand alone.
    search_query = models.TextField(blank=True)
    # Collection ids the asker narrowed the question to; empty means all they may read.
    # Access is checked again at retrieval time, never taken from here alone.
    scope = models.JSONField(default=list, blank=True)
    # Ids of documents the question is about as a whole: the one the asker picked (set when
    # asking), or, once answered, those the answer read whole (picked, named in the
    # question, or carried from the conversation). Access is checked again when answering,
    # never taken from here alone (inference.documents).
    documents = models.JSONField(default=list, blank=True)
    # Earlier turns the asker's own client sent along with the question (the
    # OpenAI-compatible API's ``messages``): [{"question": ..., "answer": ...}], oldest
    # first. They are the asker's own words, read as the conversation so far
    # (``inference.conversation.history``); nothing in them is trusted as a source.
    history = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=QuestionStatus.choices, default=QuestionStatus.QUEUED
    )
    answer = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    grounded = models.BooleanField(null=True)
    error = models.TextField(blank=True)
    model = models.CharField(max_length=120, blank=True)
    retrieved_chunk_ids = models.JSONField(default=list, blank=True)
    prompt_tokens = models.IntegerField(default=0)
    completion_tokens = models.IntegerField(default=0)
    ttft_ms = models.IntegerField(null=True, blank=True)
    latency_ms = models.IntegerField(null=True, blank=True)
    attempts = models.IntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = QuestionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def is_final(self) -> bool:
        return self.status in (QuestionStatus.DONE, QuestionStatus.ERROR)


class Citation(models.Model):
    """A numbered source the answer cites. Deleting the document deletes the citation."""

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="citations")
    n = models.PositiveIntegerField()
    # The passage as it was when cited; NULL once a newer version or another embedding
    # model replaced it. The database itself sets it (migration 0005): chunks are replaced
    # by raw SQL deletes, which Django's on_delete never sees.
    chunk = models.ForeignKey(
        "ingest.Chunk",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    document = models.ForeignKey("ingest.Document", on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=300)
    page = models.IntegerField(null=True, blank=True)
    snippet = models.TextField()
    cited = models.BooleanField(default=False)
    # False for a passage shown in an earlier turn of the conversation that this answer
    # cites again: it was named, not repeated, in this turn's prompt.
    in_prompt = models.BooleanField(default=True)

    class Meta:
        ordering = ["n"]
        constraints = [models.UniqueConstraint(fields=["question", "n"], name="citation_unique_n")]

    def __str__(self) -> str:
        return f"[{self.n}] {self.title}"


class FeedbackQuerySet(models.QuerySet):
    def for_curator(self, user: Any) -> FeedbackQuerySet:
        return self.filter(access.feedback_for_curator_filter(user))


class Feedback(models.Model):
    """A thumbs up or down on an answer, with an optional comment: one per person and
    answer, changed in place. The curators of the collections the answer drew on read it
    (``access.feedback_for_curator_filter``); the question and answer only when the asker
    allowed that (``share_question``)."""

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="answer_feedback"
    )
    helpful = models.BooleanField()
    comment = models.TextField(blank=True)
    share_question = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = FeedbackQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["question", "user"], name="feedback_one_per_person")
        ]

    def __str__(self) -> str:
        return f"{'up' if self.helpful else 'down'} on question {self.question_id}"
