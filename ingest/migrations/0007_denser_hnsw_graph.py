"""Rebuild the chunk vector indexes as a denser graph: m 24, ef_construction 96.

pgvector's defaults (m 16, ef_construction 64) found 0.83 of the true top 10 in the large
departments of 1M synthetic chunks (``benchmark retrieval --synthetic``); this graph found
0.963 with the same query time. A graph's m is fixed when it is built, so existing indexes
are rebuilt here: about a minute per 100,000 chunks on 2 cores, during which the chunk table
takes no writes. The values are written out, not read from ``ingest.vectors``, so that this
step stays what it was when later versions change the settings again.
"""

from django.db import migrations

from ingest.vectors import set_build_memory


def _rebuild(m: int, ef_construction: int):
    def run(apps, schema_editor):
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'ingest_chunk' "
                "AND indexname LIKE 'chunk\\_embedding\\_hnsw\\_%%' ORDER BY indexname"
            )
            names = [name for (name,) in cursor.fetchall()]
            if not names:
                return
            cursor.execute("SELECT count(*) FROM ingest_chunk")
            (chunks,) = cursor.fetchone()
            set_build_memory(cursor, chunks)
            for name in names:
                cursor.execute(
                    f'ALTER INDEX "{name}" SET (m = {m}, ef_construction = {ef_construction})'
                )
                cursor.execute(f'REINDEX INDEX "{name}"')
            cursor.execute("RESET maintenance_work_mem")

    return run


class Migration(migrations.Migration):
    dependencies = [("ingest", "0006_chunk_toast_tuple_target")]

    operations = [migrations.RunPython(_rebuild(24, 96), _rebuild(16, 64))]
