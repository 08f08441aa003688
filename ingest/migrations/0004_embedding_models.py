"""Each collection names its embedding model; chunk vectors of any length share one
column, with one partial HNSW index per length (see ingest/vectors.py).

Existing collections and chunks were embedded by all-MiniLM-L6-v2 (384 dimensions), the
only model earlier versions knew, whatever APPLIANCE_EMBEDDING_MODEL says now.
"""

import pgvector.django.vector
from django.db import migrations, models

import ingest.models

EARLIER_MODEL = "all-MiniLM-L6-v2"


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0003_document_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="collection",
            name="embedding_model",
            field=models.CharField(default=EARLIER_MODEL, max_length=300),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="collection",
            name="embedding_model",
            field=models.CharField(default=ingest.models.default_embedding_model, max_length=300),
        ),
        migrations.AddField(
            model_name="collection",
            name="reembedding_to",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name="document",
            name="reembedded_version",
            field=models.IntegerField(default=0),
        ),
        migrations.RemoveConstraint(
            model_name="chunk",
            name="chunk_unique_position",
        ),
        migrations.RemoveIndex(
            model_name="chunk",
            name="chunk_embedding_hnsw",
        ),
        migrations.AddField(
            model_name="chunk",
            name="embedding_model",
            field=models.CharField(default=EARLIER_MODEL, max_length=300),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="chunk",
            name="embedding",
            field=pgvector.django.vector.VectorField(),
        ),
        migrations.AddConstraint(
            model_name="chunk",
            constraint=models.UniqueConstraint(
                fields=("document", "version", "embedding_model", "ordinal"),
                name="chunk_unique_position",
            ),
        ),
        migrations.RunSQL(
            sql=(
                "CREATE INDEX IF NOT EXISTS chunk_embedding_hnsw_384 ON ingest_chunk "
                "USING hnsw ((embedding::vector(384)) vector_cosine_ops) "
                "WITH (m = 16, ef_construction = 64) WHERE vector_dims(embedding) = 384"
            ),
            reverse_sql="DROP INDEX IF EXISTS chunk_embedding_hnsw_384",
        ),
    ]
