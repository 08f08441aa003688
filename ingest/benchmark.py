"""``manage.py benchmark ingest <path> [--json]``: ingestion throughput against the bare
embedding model, on this machine, through the product's own code.

The files under ``<path>`` are uploaded into a scratch collection (``upload_documents``:
the same checks and storage as an upload), then each is ingested by ``pipeline.process``
exactly as the ingest worker runs it (claim, parse in the sandbox, chunk, embed, bulk
insert, publish with the BM25 statistics), one after another in this process. Then, in
the same run, the bare embedding model encodes the very same chunk texts, and the parse
stage alone reads the same files again. The scratch collection, its chunks and files are
deleted afterwards (the audit rows stay: the audit log is append-only by design).

``--formats`` instead reports, per file type, which files would ingest and why the others
do not (see ``corpus_report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a file or a folder (read recursively)")
    parser.add_argument("--department", default="", help="department owning the scratch collection")
    parser.add_argument(
        "--formats",
        action="store_true",
        help="report per file type what would ingest and why the rest would not",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch collection")


def run(options: dict[str, Any], out: TextIO) -> None:
    root = Path(options["path"])
    if not root.exists():
        raise SystemExit(f"{root} does not exist.")
    if options.get("formats"):
        from ingest.corpus_report import report

        report(root, out, as_json=bool(options.get("json")))
        return
    result = _benchmark(root, options, out)
    _print(result, out, as_json=bool(options.get("json")))


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _benchmark(root: Path, options: dict[str, Any], out: TextIO) -> dict[str, Any]:
    from appliance.accounts import actions as accounts
    from appliance.accounts.models import Department
    from ingest import actions, embedding, pipeline, stages
    from ingest.models import Chunk, Document

    files = _files(root)
    department = (
        Department.objects.filter(name=options["department"]).first()
        if options.get("department")
        else Department.objects.order_by("pk").first()
    )
    scratch_department = department is None
    if department is None:
        department, _ = accounts.create_department(None, f"benchmark-{uuid.uuid4().hex[:8]}")
    collection = actions.create_collection(
        None, f"benchmark {time.strftime('%Y-%m-%d %H:%M:%S')} {uuid.uuid4().hex[:6]}", department
    )
    out.write(f"Scratch collection {collection.pk}: {len(files)} files from {root}\n")
    try:
        # What a running worker already has: the model loaded and the reader started.
        embedding.model()
        list(stages.sandbox().parse(Path(__file__).with_name("__init__.py"), "txt"))

        started = time.perf_counter()
        documents = []
        refused = 0
        for path in files:
            with open(path, "rb") as handle:
                name = str(path.relative_to(root)) if root.is_dir() else path.name
                for result in actions.upload_documents(
                    None, collection, [actions.IncomingFile(name, handle)]
                ):
                    if result.document is not None and not result.duplicate:
                        documents.append(result.document.pk)
                    elif result.error:
                        refused += 1
        upload_seconds = time.perf_counter() - started

        before = stages.TIMINGS.copy()
        started = time.perf_counter()
        for document_id in documents:
            out.write(f"  {document_id}: {pipeline.process(document_id)}\n")
            out.flush()
        ingest_seconds = time.perf_counter() - started
        totals = {key: stages.TIMINGS[key] - before[key] for key in before}

        ready = list(
            Document.objects.filter(pk__in=documents, status="ready").select_related("collection")
        )
        pages = sum(d.pages or 1 for d in ready)
        chunks = Chunk.objects.filter(document__in=ready)
        texts = [
            f"{section}\n{text}" if section and not text.startswith(section) else text
            for section, text in chunks.order_by("document_id", "ordinal").values_list(
                "section", "text"
            )
        ]
        failed = list(
            Document.objects.filter(pk__in=documents, status="failed").values_list(
                "original_name", "error"
            )
        )

        # The bare model on the same texts, as sentence-transformers is used everywhere.
        started = time.perf_counter()
        for start in range(0, len(texts), 1024):
            embedding.embed(texts[start : start + 1024])
        bare_seconds = time.perf_counter() - started

        parse_seconds, parse_pages = _parse_alone(ready)
    finally:
        if not options.get("keep"):
            actions.delete_collection(None, collection)
            if scratch_department:
                Department.objects.filter(pk=department.pk, collections__isnull=True).delete()

    chunk_count = len(texts)
    chunks_per_s = chunk_count / ingest_seconds if ingest_seconds else 0.0
    bare_per_s = chunk_count / bare_seconds if bare_seconds else 0.0
    return {
        "files": len(files),
        "ingested": len(ready),
        "refused_at_upload": refused,
        "failed": len(failed),
        "failures": [f"{name}: {error}" for name, error in failed[:50]],
        "pages": pages,
        "chunks": chunk_count,
        "upload_seconds": round(upload_seconds, 2),
        "ingest_seconds": round(ingest_seconds, 2),
        "embed_seconds": round(totals["embed"], 2),
        "store_seconds": round(totals["store"], 2),
        "files_per_s": round(len(documents) / ingest_seconds, 3) if ingest_seconds else 0.0,
        "pages_per_s": round(pages / ingest_seconds, 2) if ingest_seconds else 0.0,
        "chunks_per_s": round(chunks_per_s, 2),
        "bare_embedding_seconds": round(bare_seconds, 2),
        "bare_embedding_chunks_per_s": round(bare_per_s, 2),
        "ratio_to_bare_embedding": round(chunks_per_s / bare_per_s, 3) if bare_per_s else 0.0,
        "parse_seconds": round(parse_seconds, 2),
        "parse_pages_per_s": round(parse_pages / parse_seconds, 1) if parse_seconds else 0.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "parse_child_peak_rss_mb": stages.sandbox()._child.rss_mb if stages.sandbox()._child else 0,
        "embedding_threads": settings.EMBEDDING_THREADS,
        "embedding_batch_size": settings.EMBEDDING_BATCH_SIZE,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def _parse_alone(documents: Any) -> tuple[float, int]:
    """The parse stage by itself (the sandbox, as the pipeline uses it) on the files that
    ingested: seconds and pages."""
    from ingest import stages, storage

    parser = stages.sandbox()
    seconds, pages = 0.0, 0
    for document in documents:
        started = time.perf_counter()
        for _ in parser.parse(
            storage.absolute(document.stored_path),
            document.kind,
            language=document.collection.language,
        ):
            pass
        seconds += time.perf_counter() - started
        pages += document.pages or 1
    return seconds, pages


def _print(result: dict[str, Any], out: TextIO, as_json: bool) -> None:
    out.write(
        f"\n{result['files']} files ({result['ingested']} ingested, {result['failed']} failed, "
        f"{result['refused_at_upload']} refused at upload), {result['pages']} pages, "
        f"{result['chunks']} chunks in {result['ingest_seconds']} s\n"
        f"  files/s               {result['files_per_s']}\n"
        f"  pages/s               {result['pages_per_s']}\n"
        f"  chunks/s              {result['chunks_per_s']}\n"
        f"  bare embedding        {result['bare_embedding_chunks_per_s']} chunks/s "
        f"(same texts, {result['embedding_threads']} threads, batch "
        f"{result['embedding_batch_size']})\n"
        f"  ratio to bare         {result['ratio_to_bare_embedding']}\n"
        f"  parse stage alone     {result['parse_pages_per_s']} pages/s\n"
        f"  embedding inside      {result['embed_seconds']} s, "
        f"storing {result['store_seconds']} s\n"
        f"  peak RSS              {result['peak_rss_mb']} MB (parse child "
        f"{result['parse_child_peak_rss_mb']} MB)\n"
        f"  load average (1 min)  {result['load_average_1m']} on {result['cpus']} CPUs\n"
    )
    for line in result["failures"]:
        out.write(f"  failed: {line}\n")
    if as_json:
        out.write(json.dumps(result) + "\n")
