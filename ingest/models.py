from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.utils.translation import gettext_lazy
from pgvector.django import VectorField

from appliance import access
from appliance.accounts.models import Department


class Language(models.TextChoices):
    """Picks the PostgreSQL full-text configuration of a collection."""

    ENGLISH = "english", "English"
    NORWEGIAN = "norwegian", "Norwegian"
    GERMAN = "german", "German"
    FRENCH = "french", "French"
    SPANISH = "spanish", "Spanish"
    SIMPLE = "simple", "Other (no stemming)"
    # Each passage in its own detected language, and each question in its own
    # (ingest/languages.py): for collections that mix languages.
    AUTO = "auto", "Detected per passage"


class CollectionQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> CollectionQuerySet:
        return self.filter(access.readable_collections_filter(user))

    def manageable_by(self, user: Any) -> CollectionQuerySet:
        return self.filter(access.managed_collections_filter(user))


def default_embedding_model() -> str:
    return settings.EMBEDDING_MODEL


class Collection(models.Model):
    """Documents of one department, searched together.

    ``embedding_model`` names the model the live chunks' vectors come from; questions are
    embedded with it. While ``reembedding_to`` names another, ``reembed_collection`` is
    writing that model's chunks beside the live ones; they take over in one transaction.
    """

    name = models.CharField(max_length=200)
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="collections")
    language = models.CharField(max_length=16, choices=Language.choices, default=Language.ENGLISH)
    description = models.TextField(blank=True)
    # Questions the Ask page suggests to the collection's readers (set by its curators).
    suggested_questions = models.JSONField(default=list, blank=True)
    shared_with_all = models.BooleanField(default=False)
    embedding_model = models.CharField(max_length=300, default=default_embedding_model)
    reembedding_to = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CollectionQuerySet.as_manager()

    class Meta:
        ordering = ["department__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["department", "name"], name="collection_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.department})"


class CollectionShare(models.Model):
    """Read-only access to a collection for another department."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="shares")
    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="shares")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "department"], name="share_unique")
        ]

    def __str__(self) -> str:
        return f"{self.collection} shared with {self.department}"


class Status(models.TextChoices):
    QUEUED = "queued", gettext_lazy("Queued")
    PARSING = "parsing", gettext_lazy("Parsing")
    EMBEDDING = "embedding", gettext_lazy("Embedding")
    READY = "ready", gettext_lazy("Ready")
    FAILED = "failed", gettext_lazy("Failed")
    CANCELLED = "cancelled", gettext_lazy("Cancelled")


FINAL_STATUSES = (Status.READY, Status.FAILED, Status.CANCELLED)


class DocumentQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> DocumentQuerySet:
        return self.filter(access.in_readable_collection(user))

    def manageable_by(self, user: Any) -> DocumentQuerySet:
        return self.filter(access.in_managed_collection(user))


class Document(models.Model):
    """One uploaded file. The row is the truth about its ingestion (status, progress, error).

    ``live_version`` names the chunks that answer questions. A new ingestion writes chunks
    under ``version`` and flips ``live_version`` in one transaction when all are stored, so
    a question never sees half of an old and half of a new version.
    """

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=300)
    # The file's name, with its folders when it came in a folder or an archive
    # ("policies/leave.pdf"). A new upload under the same name is a new version of it.
    original_name = models.CharField(max_length=300)
    stored_path = models.CharField(max_length=500)
    # The file of the version that answers while a newer one is being read; removed when
    # the newer one is published.
    previous_stored_path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    kind = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    pages = models.IntegerField(null=True, blank=True)
    pages_done = models.IntegerField(default=0)
    chunks = models.IntegerField(default=0)
    chunks_done = models.IntegerField(default=0)
    attempts = models.IntegerField(default=0)
    # While a worker holds the document it keeps pushing this forward; once it lies in the
    # past, the worker is gone and the reconciler hands the document to another.
    lease_until = models.DateTimeField(null=True, blank=True)
    version = models.IntegerField(default=1)
    live_version = models.IntegerField(default=0)
    # The live version whose chunks under the collection's ``reembedding_to`` model are
    # complete (0: none yet).
    reembedded_version = models.IntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["collection", "original_name"], name="document_name"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def progress_percent(self) -> int:
        if self.status == Status.READY:
            return 100
        if self.status == Status.EMBEDDING and self.chunks:
            return 50 + int(50 * self.chunks_done / self.chunks)
        if self.status == Status.PARSING and self.pages:
            return int(50 * self.pages_done / self.pages)
        return 0


class ChunkQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> ChunkQuerySet:
        """Readable chunks that answer: of their document's live version, embedded with
        their collection's model."""
        return self.filter(
            access.in_readable_collection(user),
            version=models.F("document__live_version"),
            embedding_model=models.F("collection__embedding_model"),
        )


class Chunk(models.Model):
    """A passage of a document, with its vector and its full-text terms.

    ``collection`` repeats ``document.collection`` so the access filter of a search is one
    indexed column of the chunk row itself. A chunk answers when its version is the
    document's live one and its ``embedding_model`` is the collection's. Vectors of every
    length share the column; each length has its own partial HNSW index
    (``ingest.vectors``).
    """

    id = models.BigAutoField(primary_key=True)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunk_set")
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    version = models.IntegerField()
    ordinal = models.IntegerField()
    page = models.IntegerField(null=True, blank=True)
    section = models.CharField(max_length=300, blank=True)
    text = models.TextField()
    token_count = models.IntegerField(default=0)
    embedding_model = models.CharField(max_length=300)
    embedding = VectorField()
    search_vector = SearchVectorField(null=True)

    objects = ChunkQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["document", "version", "embedding_model", "ordinal"],
                name="chunk_unique_position",
            )
        ]
        indexes = [
            # The collection first (btree_gin): a BM25 candidate search finds the chunks of
            # the asker's collections that hold a lexeme in one index scan (migration 0008).
            GinIndex(fields=["collection", "search_vector"], name="chunk_collection_search_vector"),
            models.Index(fields=["collection"], name="chunk_collection"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.ordinal} of document {self.document_id}"


# --- BM25 statistics of the search index (kept by ingest.search_statistics) ---------------
# The foreign keys below are declared without Django's constraint: the migration adds real
# ``ON DELETE CASCADE`` constraints instead, so the raw chunk deletes of ``publish()`` and
# the deletion of a whole collection clear these rows inside the database itself.


class LexicalCollection(models.Model):
    """Per collection: how many live chunks it holds and their total length in lexemes."""

    collection = models.OneToOneField(
        Collection,
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
        Collection,
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
        Chunk,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    length = models.IntegerField()

    def __str__(self) -> str:
        return f"chunk {self.chunk_id}: {self.length} lexemes"
