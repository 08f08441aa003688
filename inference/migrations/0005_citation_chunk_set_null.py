"""A citation outlives the passage it cited: replacing a document's version (or moving a
collection to another embedding model) deletes the old chunks with raw SQL, and the
database now sets the citation's chunk to NULL itself. Before, Django's SET NULL ran only
for ORM deletes, so publishing a new version of a document someone had cited failed at
commit on the foreign key."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0004_citation_in_prompt"),
        ("ingest", "0004_embedding_models"),
    ]

    operations = [
        migrations.AlterField(
            model_name="citation",
            name="chunk",
            field=models.ForeignKey(
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="ingest.chunk",
            ),
        ),
        migrations.RunSQL(
            sql=(
                "ALTER TABLE inference_citation ADD CONSTRAINT citation_chunk_fk "
                "FOREIGN KEY (chunk_id) REFERENCES ingest_chunk (id) ON DELETE SET NULL"
            ),
            reverse_sql="ALTER TABLE inference_citation DROP CONSTRAINT citation_chunk_fk",
        ),
    ]
