"""Keep each chunk's vector in its row.

A chunk row (vector, text, full-text vector) is usually past PostgreSQL's 2 kB TOAST
threshold, and the toaster first moved out the widest column it could not compress: the
vector. Every distance then cost three buffer reads in the TOAST table, several times per
row in an exact scan (measured at 100k chunks: an 11,000-chunk collection read exactly in
63 ms, 134,572 buffer hits). With storage MAIN the text and the full-text vector are
compressed or moved out first and the vector stays inline unless the row would not fit a
page at all. It applies to rows written from now on; ``VACUUM FULL ingest_chunk`` (or
``reembed_collection``) rewrites older ones.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ingest", "0004_embedding_models")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE ingest_chunk ALTER COLUMN embedding SET STORAGE MAIN",
            "ALTER TABLE ingest_chunk ALTER COLUMN embedding SET STORAGE EXTENDED",
        )
    ]
