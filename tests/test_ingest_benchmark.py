"""``manage.py benchmark ingest``: the product's own path on real files, the figures the
issue asks for on its last line, and nothing left behind."""

from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from ingest import storage
from ingest.models import Chunk, Collection, Document
from tests.conftest import DOCUMENTS

KEYS = {
    "files_per_s",
    "pages_per_s",
    "chunks_per_s",
    "bare_embedding_chunks_per_s",
    "ratio_to_bare_embedding",
    "peak_rss_mb",
    "parse_pages_per_s",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("pdf/fake-memo.pdf", "pdf/password.pdf", "handbook-1p.docx", "CantinaBand3.wav"):
        shutil.copy(DOCUMENTS / name, tmp_path / Path(name).name)
    return tmp_path


def test_the_benchmark_ingests_through_the_pipeline_and_cleans_up(
    people: Any, folder: Path, django_capture_on_commit_callbacks: Any
) -> None:
    out = StringIO()
    before = set(storage.upload_root().iterdir())
    with django_capture_on_commit_callbacks(execute=True):
        call_command("benchmark", "ingest", str(folder), "--json", stdout=out)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert set(result) >= KEYS
    assert (result["ingested"], result["failed"], result["refused_at_upload"]) == (2, 1, 1)
    assert result["chunks"] == result["bare_chunks"] > 0  # the same texts, both ways
    assert result["chunks_per_s"] > 0 and result["bare_embedding_chunks_per_s"] > 0
    assert "Password-protected PDF" in result["failures"][0]
    assert not Collection.objects.filter(name__startswith="benchmark").exists()
    assert not Document.objects.exists() and not Chunk.objects.exists()
    assert set(storage.upload_root().iterdir()) <= before


def test_the_formats_report_says_what_ingests_and_why_the_rest_does_not(
    people: Any, folder: Path
) -> None:
    out = StringIO()
    call_command("benchmark", "ingest", str(folder), "--formats", "--json", stdout=out)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (result["files"], result["ingest"]) == (4, 2)
    assert result["types"]["pdf"]["ingest"] == 1
    assert "Password-protected PDF" in result["types"]["pdf"]["not"][0]
    assert "refused at upload" in result["types"]["wav"]["not"][0]
    assert "| docx | 1 | 1 | all |" in out.getvalue()
