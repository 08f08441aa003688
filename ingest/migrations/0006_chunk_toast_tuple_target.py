"""Keep a chunk's full-text vector in its row as well.

With the vector inline (0005), a chunk row still passed the 2 kB toast target, so the
toaster moved the text and the full-text vector out to the TOAST table. Every BM25
candidate then cost extra buffer reads to fetch its ``search_vector``. Rows of up to about
4 kB (two to a page) now stay whole; longer ones are compressed inline first. Measured on
200,000 synthetic chunks: the full-text ranking of a 22,000-chunk department p95 28.7 to
19.7 ms, the hybrid query p95 34.8 to 27.8 ms; the table (heap and TOAST) grows from
703 MB to 781 MB. Like 0005, it applies to rows written from now on; ``VACUUM FULL
ingest_chunk`` rewrites older ones.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ingest", "0005_embedding_storage_main")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE ingest_chunk SET (toast_tuple_target = 4080)",
            "ALTER TABLE ingest_chunk RESET (toast_tuple_target)",
        )
    ]
