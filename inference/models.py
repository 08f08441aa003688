from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class QuestionQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> QuestionQuerySet:
        """Questions and their answers are private to the person who asked."""
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(user_id=user.pk)


class ConversationQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> ConversationQuerySet:
        """Conversations are private to the person who holds them."""
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(user_id=user.pk)


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


# --- lexical statistics for BM25 (maintained by inference.lexical) -----------------------
# The foreign keys below are declared without Django's constraint: the migration adds real
# ``ON DELETE CASCADE`` constraints instead, so the raw chunk deletes of ``publish()`` and
# the deletion of a whole collection clear these rows inside the database itself.


class LexicalCollection(models.Model):
    """Per collection: how many live chunks it holds and their total length in lexemes."""

    collection = models.OneToOneField(
        "ingest.Collection",
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    chunk_count = models.BigIntegerField(default=0)
    total_length = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"collection {self.collection_id}: {self.chunk_count} chunks"


class LexicalTerm(models.Model):
    """Per collection and lexeme: in how many live chunks the lexeme occurs."""

    pk = models.CompositePrimaryKey("collection_id", "lexeme")
    collection = models.ForeignKey(
        "ingest.Collection",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # the primary key starts with it
        related_name="+",
    )
    lexeme = models.TextField()
    document_frequency = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.lexeme} in collection {self.collection_id}: {self.document_frequency}"


class LexicalChunk(models.Model):
    """Per live chunk: its length in lexeme occurrences (BM25's document length)."""

    chunk = models.OneToOneField(
        "ingest.Chunk",
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    length = models.IntegerField()

    def __str__(self) -> str:
        return f"chunk {self.chunk_id}: {self.length} lexemes"
