"""The BM25 statistics tables move from the inference app to ingest, which keeps them.

Only their names and their owner in Django's model state change: ``ALTER TABLE ... RENAME``
keeps every row, index and constraint (the ``ON DELETE CASCADE`` keys of inference's
migration 0003 included), so an upgrade moves no data. inference's migration 0006 drops the
models from its own state.
"""

import django.db.models.deletion
from django.db import migrations, models

TABLES = ("lexicalchunk", "lexicalcollection", "lexicalterm")


def _renames(source: str, target: str) -> list[str]:
    statements = [f"ALTER TABLE {source}_{t} RENAME TO {target}_{t}" for t in TABLES]
    # Primary keys are named after their tables; keep the names telling the truth.
    statements += [
        f"ALTER INDEX IF EXISTS {source}_{t}_pkey RENAME TO {target}_{t}_pkey" for t in TABLES
    ]
    return statements


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0008_collection_search_vector_index"),
        ("inference", "0005_citation_chunk_set_null"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(_renames("inference", "ingest"), _renames("ingest", "inference"))
            ],
            state_operations=[
                migrations.CreateModel(
                    name="LexicalChunk",
                    fields=[
                        (
                            "chunk",
                            models.OneToOneField(
                                db_constraint=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                primary_key=True,
                                related_name="+",
                                serialize=False,
                                to="ingest.chunk",
                            ),
                        ),
                        ("length", models.IntegerField()),
                    ],
                ),
                migrations.CreateModel(
                    name="LexicalCollection",
                    fields=[
                        (
                            "collection",
                            models.OneToOneField(
                                db_constraint=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                primary_key=True,
                                related_name="+",
                                serialize=False,
                                to="ingest.collection",
                            ),
                        ),
                        ("chunk_count", models.BigIntegerField(default=0)),
                        ("total_length", models.BigIntegerField(default=0)),
                    ],
                ),
                migrations.CreateModel(
                    name="LexicalTerm",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "collection_id",
                                "lexeme",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("lexeme", models.TextField()),
                        ("document_frequency", models.BigIntegerField(default=0)),
                        (
                            "collection",
                            models.ForeignKey(
                                db_constraint=False,
                                db_index=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="ingest.collection",
                            ),
                        ),
                    ],
                ),
            ],
        )
    ]
