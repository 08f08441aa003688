"""The BM25 statistics models now belong to ingest (its migration 0009 renamed the tables);
they leave this app's state. No SQL runs here."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0005_citation_chunk_set_null"),
        ("ingest", "0009_lexical_statistics_from_inference"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="LexicalChunk"),
                migrations.DeleteModel(name="LexicalCollection"),
                migrations.DeleteModel(name="LexicalTerm"),
            ]
        )
    ]
