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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings

from appliance.accounts import actions as accounts
from appliance.accounts.models import Department
from ingest import actions, embedding, pipeline, stages, storage
from ingest.chunking import chunk_blocks
from ingest.corpus_report import report
from ingest.models import Chunk, Document
from ingest.parsing import ParseError


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
        with tempfile.TemporaryDirectory() as folder:
            warm = Path(folder) / "warm-up.txt"
            warm.write_text("A first sentence to read. And a second one.\n")
            list(stages.sandbox().parse(warm, "txt"))

        started = time.perf_counter()
        documents = []
        refused = 0
        for path in files:
            with open(path, "rb") as handle:
                name = str(path.relative_to(root)) if root.is_dir() else path.name
                # Not queued: this process reads them, not a running ingest worker.
                for result in actions.upload_documents(
                    None, collection, [actions.IncomingFile(name, handle)], enqueue=False
                ):
                    if result.document is not None and not result.duplicate:
                        documents.append(result.document.pk)
                    elif result.error:
                        refused += 1
        upload_seconds = time.perf_counter() - started
        uploaded = list(
            Document.objects.filter(pk__in=documents).select_related("collection").order_by("pk")
        )

        # 1. The parse stage alone, and the chunk texts the pipeline is going to embed.
        parse_seconds, parse_pages, texts = _parse_alone(uploaded, out)
        # 2-4. The bare model on half the texts, the whole pipeline, the bare model on the
        # other half: the two halves bracket the pipeline in time, so a machine whose load
        # changes (others' work) biases the ratio as little as it can.
        bare_first = _bare(texts[0::2])
        before = stages.TIMINGS.copy()
        cpu = _Cpu(stages)
        started = time.perf_counter()
        for document_id in documents:
            outcome = pipeline.process(document_id)
            out.write(f"  {document_id}: {outcome}\n")
            out.flush()
            if outcome == "skipped":
                raise SystemExit(
                    f"Document {document_id} was taken by another process; the figures "
                    "would not stand for this machine's ingestion. Nothing was measured."
                )
        ingest_seconds = time.perf_counter() - started
        ingest_cpu = cpu.seconds()
        totals = {key: stages.TIMINGS[key] - before[key] for key in before}
        bare_second = _bare(texts[1::2])

        ready = list(Document.objects.filter(pk__in=documents, status="ready"))
        pages = sum(d.pages or 1 for d in ready)
        stored = Chunk.objects.filter(document__in=ready).count()
        failed = list(
            Document.objects.filter(pk__in=documents, status="failed").values_list(
                "original_name", "error"
            )
        )
    finally:
        if not options.get("keep"):
            actions.delete_collection(None, collection)
            if scratch_department:
                Department.objects.filter(pk=department.pk, collections__isnull=True).delete()

    bare_seconds = bare_first[0] + bare_second[0]
    bare_cpu = bare_first[1] + bare_second[1]
    chunks_per_s = stored / ingest_seconds if ingest_seconds else 0.0
    bare_per_s = len(texts) / bare_seconds if bare_seconds else 0.0
    return {
        "files": len(files),
        "ingested": len(ready),
        "refused_at_upload": refused,
        "failed": len(failed),
        "failures": [f"{name}: {error}" for name, error in failed[:50]],
        "pages": pages,
        "chunks": stored,
        "bare_chunks": len(texts),
        "upload_seconds": round(upload_seconds, 2),
        "ingest_seconds": round(ingest_seconds, 2),
        "embed_seconds": round(totals["embed"], 2),
        # The part of the ingestion's wall time not spent inside the embedding model (both
        # measured at once, so other programs' load hardly moves it).
        "overhead_share": (
            round(1 - totals["embed"] / ingest_seconds, 3) if ingest_seconds else 0.0
        ),
        "store_seconds": round(totals["store"], 2),
        "files_per_s": round(len(documents) / ingest_seconds, 3) if ingest_seconds else 0.0,
        "pages_per_s": round(pages / ingest_seconds, 2) if ingest_seconds else 0.0,
        "chunks_per_s": round(chunks_per_s, 2),
        "bare_embedding_seconds": round(bare_seconds, 2),
        "bare_embedding_chunks_per_s": round(bare_per_s, 2),
        "ratio_to_bare_embedding": round(chunks_per_s / bare_per_s, 3) if bare_per_s else 0.0,
        # The same comparison in CPU seconds (this process's threads and the parse child):
        # far less sensitive than wall time to other programs sharing the machine.
        "ingest_cpu_seconds": round(ingest_cpu, 2),
        "bare_embedding_cpu_seconds": round(bare_cpu, 2),
        "cpu_ratio_to_bare_embedding": (
            round((bare_cpu / max(len(texts), 1)) / (ingest_cpu / stored), 3) if stored else 0.0
        ),
        "parse_seconds": round(parse_seconds, 2),
        "parse_pages_per_s": round(parse_pages / parse_seconds, 1) if parse_seconds else 0.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "parse_child_peak_rss_mb": _child_rss(stages),
        "embedding_threads": settings.EMBEDDING_THREADS,
        "embedding_batch_size": settings.EMBEDDING_BATCH_SIZE,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def _bare(texts: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of the bare model on ``texts``, 1,024 per call (each call
    sorted by length inside sentence-transformers, as it does for any list)."""

    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), 1024):
        embedding.embed(texts[start : start + 1024])
    return time.perf_counter() - wall, time.process_time() - cpu


class _Cpu:
    """CPU seconds of this process (every thread) and of the parse child since creation."""

    def __init__(self, stages: Any) -> None:
        self.stages = stages
        self.start = time.process_time() + self._child()

    def _child(self) -> float:
        child = self.stages.sandbox()._child
        if child is None:
            return 0.0
        try:
            fields = Path(f"/proc/{child.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # utime, stime, and those of its finished helpers (LibreOffice, tesseract)
        return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float:
        return time.process_time() + self._child() - self.start


def _child_rss(stages: Any) -> int:
    child = stages.sandbox()._child
    return child.rss_mb if child is not None else 0


def _parse_alone(documents: list[Any], out: TextIO) -> tuple[float, int, list[str]]:
    """The parse stage by itself (the sandbox, as the pipeline uses it): seconds and pages
    over the files that parse; and the texts the pipeline will embed for them (the same
    chunker on the same blocks)."""

    parser = stages.sandbox()
    seconds, pages, texts = 0.0, 0, []
    for document in documents:
        pages_seen = {"total": 0, "last": 0}

        def progress(done: int, total: int | None, seen: dict[str, int] = pages_seen) -> None:
            seen["total"] = total or seen["total"]
            seen["last"] = max(seen["last"], done)

        started = time.perf_counter()
        try:
            blocks = list(
                parser.parse(
                    storage.absolute(document.stored_path),
                    document.kind,
                    progress,
                    document.collection.language,
                )
            )
        except ParseError:
            continue  # the pipeline fails it too, with its reason
        seconds += time.perf_counter() - started
        last_page = max((b.page or 0 for b in blocks), default=0)
        pages += pages_seen["total"] or last_page or 1
        texts += [
            draft.embedding_text()
            for draft in chunk_blocks(
                blocks,
                embedding.count_tokens,
                target_tokens=settings.CHUNK_TOKENS,
                overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
                limit_tokens=embedding.max_tokens() - 2,
            )
        ]
    out.write(f"Parsed alone: {pages} pages in {seconds:.1f} s; {len(texts)} chunks to embed\n")
    return seconds, pages, texts


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
        f"  ratio to bare         {result['ratio_to_bare_embedding']} (wall clock), "
        f"{result['cpu_ratio_to_bare_embedding']} (CPU time)\n"
        f"  parse stage alone     {result['parse_pages_per_s']} pages/s\n"
        f"  embedding inside      {result['embed_seconds']} s, "
        f"storing {result['store_seconds']} s; everything but the model: "
        f"{100 * result['overhead_share']:.1f}% of the time\n"
        f"  peak RSS              {result['peak_rss_mb']} MB (parse child "
        f"{result['parse_child_peak_rss_mb']} MB)\n"
        f"  load average (1 min)  {result['load_average_1m']} on {result['cpus']} CPUs\n"
    )
    for line in result["failures"]:
        out.write(f"  failed: {line}\n")
    if as_json:
        out.write(json.dumps(result) + "\n")
