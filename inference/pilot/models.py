"""Golden sets, configurations, runs and their answers.

A golden set is versioned: a version is never edited, an edit makes the next version, and
a run names the version it used. A run's own rows (``RunAnswer``) never mix with
employees' questions: pilot answers are not ``Question`` rows and appear in nobody's
history.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from appliance import access


class GoldenSetQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> GoldenSetQuerySet:
        return self.filter(access.pilot_filter(user))


class GoldenSet(models.Model):
    """Questions with known answers over some collections, kept by their curators."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    department = models.ForeignKey(
        "accounts.Department", on_delete=models.PROTECT, related_name="golden_sets"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = GoldenSetQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["department", "name"], name="golden_set_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def latest(self) -> GoldenSetVersion | None:
        return self.versions.order_by("-number").first()


class GoldenSetVersion(models.Model):
    golden_set = models.ForeignKey(GoldenSet, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    note = models.CharField(max_length=300, blank=True)  # what changed, e.g. the file's name
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["golden_set", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["golden_set", "number"], name="golden_version_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.golden_set.name} v{self.number}"


class GoldenQuestion(models.Model):
    version = models.ForeignKey(
        GoldenSetVersion, on_delete=models.CASCADE, related_name="questions"
    )
    position = models.PositiveIntegerField()
    question = models.TextField()
    expected_answer = models.TextField(blank=True)
    # [{"document": name or title, "page": int or null}, ...]
    expected_sources = models.JSONField(default=list, blank=True)
    answerable = models.BooleanField(default=True)
    language = models.CharField(max_length=16, blank=True)  # ISO 639-1, e.g. "en", "nb"
    tags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "position"], name="golden_question_unique_position"
            )
        ]

    def __str__(self) -> str:
        return self.question[:60]

    def as_row(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "expected_answer": self.expected_answer,
            "expected_sources": self.expected_sources,
            "answerable": self.answerable,
            "language": self.language,
            "tags": self.tags,
        }


class RetrievalMode(models.TextChoices):
    HYBRID = "hybrid", "Hybrid (dense and full text)"
    DENSE = "dense", "Dense vectors only"
    FULLTEXT = "fulltext", "Full text (BM25) only"


class Backend(models.TextChoices):
    LOCAL = "local", "A GGUF file on this host"
    OPENAI = "openai", "An OpenAI-compatible server"


class Configuration(models.Model):
    """How a run answers: the model, retrieval, reasoning effort and the cost model.

    ``model`` is a catalogue name or a GGUF file name under ``var/models/`` for the local
    backend, or the server's model name for the OpenAI-compatible one; the server's API key
    is never stored here, only the name of the setting (environment variable or
    ``var/appliance.env`` entry) that holds it.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.LOCAL)
    model = models.CharField(max_length=300)
    server_url = models.CharField(max_length=500, blank=True)
    api_key_setting = models.CharField(max_length=120, blank=True)
    chat_format = models.CharField(max_length=16, blank=True)  # empty: the catalogue's
    reasoning_effort = models.CharField(max_length=8, default="low")
    retrieval_mode = models.CharField(
        max_length=16, choices=RetrievalMode.choices, default=RetrievalMode.HYBRID
    )
    top_k = models.PositiveIntegerField(default=8)
    reranker = models.BooleanField(default=False)
    context_budget = models.PositiveIntegerField(default=1500)  # tokens of passages
    max_answer_tokens = models.PositiveIntegerField(default=384)
    # The cost model (see inference.pilot.measures.cost_per_1000): local hardware or an API
    # price list. Keys: kind ("local" or "api"); for local: hardware_price,
    # amortisation_months, questions_per_month, watts, price_per_kwh; for api:
    # input_per_million, output_per_million, currency.
    cost = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class RunQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> RunQuerySet:
        return self.filter(access.pilot_filter(user, "golden_version__golden_set"))


class Run(models.Model):
    """One golden set version answered under one configuration, as ``as_user`` would be
    answered (their access scope). The row is the truth of its progress."""

    golden_version = models.ForeignKey(
        GoldenSetVersion, on_delete=models.PROTECT, related_name="runs"
    )
    configuration = models.ForeignKey(Configuration, on_delete=models.PROTECT, related_name="runs")
    judge = models.ForeignKey(
        Configuration, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    as_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # The measures, overall, by language and by tag, computed when the run ends.
    measures = models.JSONField(default=dict, blank=True)
    # What the configuration was when the run started (configurations can change later).
    configuration_snapshot = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk}: {self.configuration.name} on {self.golden_version}"

    @property
    def progress_percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def is_final(self) -> bool:
        return self.status in (RunStatus.DONE, RunStatus.CANCELLED, RunStatus.FAILED)


class RunAnswer(models.Model):
    """One golden question answered in one run: what was retrieved, said and cited, how
    fast, and the judge's verdict with its prompt and output, so a person can check it."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="answers")
    golden = models.ForeignKey(GoldenQuestion, on_delete=models.CASCADE, related_name="+")
    answer = models.TextField(blank=True)
    refused = models.BooleanField(default=False)
    # False when the question is answerable in the organisation but none of its expected
    # sources is readable by the run's person: for them the right reply is the refusal.
    in_scope = models.BooleanField(default=True)
    language = models.CharField(max_length=16, blank=True)  # detected language of the answer
    # [{"document_id", "document", "page", "chunk_id", "score"}] in rank order
    retrieved = models.JSONField(default=list, blank=True)
    # [{"n", "document_id", "document", "page", "chunk_id"}] the passages the answer cites
    cited = models.JSONField(default=list, blank=True)
    ttft_ms = models.IntegerField(null=True, blank=True)
    total_ms = models.IntegerField(null=True, blank=True)
    prompt_tokens = models.IntegerField(default=0)
    output_tokens = models.IntegerField(default=0)
    judge_score = models.FloatField(null=True, blank=True)
    judge_prompt = models.TextField(blank=True)
    judge_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "golden__position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "golden"], name="run_answer_unique_golden")
        ]

    def __str__(self) -> str:
        return f"run {self.run_id}, question {self.golden_id}"


# --- drafted questions --------------------------------------------------------------------


class DraftBatchStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DRAFTING = "drafting", "Drafting"
    DONE = "done", "Done"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class DraftBatch(models.Model):
    """A curator's request to draft questions from passages of one collection, with the
    local model, into one golden set. The row is the truth of its progress: ``chunk_ids``
    are the passages sampled when it was asked for, ``done`` how many of them the worker
    has read, ``drafted`` how many gave a usable question (see ``inference.pilot.drafts``).
    """

    golden_set = models.ForeignKey(GoldenSet, on_delete=models.CASCADE, related_name="+")
    # The collection may be deleted later; its name stays for the page.
    collection = models.ForeignKey(
        "ingest.Collection", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    collection_name = models.CharField(max_length=200)
    # The worker reads passages as this person (Chunk.objects.visible_to): gone, it reads none.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Plain ids, not foreign keys: ingestion replaces chunks with raw deletes.
    chunk_ids = models.JSONField(default=list, blank=True)
    asked = models.PositiveIntegerField(default=0)  # how many the curator asked for
    total = models.PositiveIntegerField(default=0)  # passages sampled (at most ``asked``)
    done = models.PositiveIntegerField(default=0)
    drafted = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=DraftBatchStatus.choices, default=DraftBatchStatus.QUEUED
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by every step, so the reconciler can tell a lost step from a slow one.
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"drafts from {self.collection_name} for {self.golden_set_id}"

    @property
    def progress_percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 100

    @property
    def is_final(self) -> bool:
        return self.status in (
            DraftBatchStatus.DONE,
            DraftBatchStatus.STOPPED,
            DraftBatchStatus.FAILED,
        )


class DraftStatus(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class DraftQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> DraftQuerySet:
        return self.filter(access.pilot_filter(user, "golden_set"))


class Draft(models.Model):
    """A question and short answer the model wrote from one passage. It joins its golden
    set only when a curator accepts it, in the set's next version (``accepted_in``)."""

    golden_set = models.ForeignKey(GoldenSet, on_delete=models.CASCADE, related_name="drafts")
    batch = models.ForeignKey(DraftBatch, on_delete=models.CASCADE, related_name="drafts")
    chunk_id = models.BigIntegerField()  # the passage (a plain id, see DraftBatch)
    document_name = models.CharField(max_length=300)  # the source, as golden sets name it
    page = models.IntegerField(null=True, blank=True)
    question = models.TextField()
    expected_answer = models.TextField(blank=True)
    language = models.CharField(max_length=16, blank=True)
    status = models.CharField(
        max_length=16, choices=DraftStatus.choices, default=DraftStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    accepted_in = models.ForeignKey(
        GoldenSetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DraftQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # A step delivered twice stores its passage's draft once.
            models.UniqueConstraint(fields=["batch", "chunk_id"], name="draft_unique_passage")
        ]

    def __str__(self) -> str:
        return self.question[:60]
