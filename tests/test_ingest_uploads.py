"""Uploads: archives unpacked without trust, names cleaned, limits enforced with plain
answers, duplicates and new versions recognised, and batches recorded in one go. Real
PostgreSQL and real files; the worker side is in test_ingest_pipeline.py."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from appliance.audit.models import Action, AuditEvent
from ingest import actions, storage
from ingest.models import Collection, Document
from tests.conftest import DOCUMENTS, ClientFor
from tests.test_ingest_hostile import forge_entry_count


@pytest.fixture
def collection(people: Any) -> Iterator[Collection]:
    created = actions.create_collection(people.carol, "Policies", people.hr)
    # Ids repeat between runs of a fresh test database; so would a folder left behind.
    storage.remove_collection_folder(created.pk)
    yield created
    storage.remove_collection_folder(created.pk)


def zip_of(entries: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def upload(actor: Any, collection: Collection, name: str, data: bytes) -> list[Any]:
    return actions.upload_documents(
        actor, collection, [actions.IncomingFile(name, io.BytesIO(data))]
    )


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


MEMO = (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes()
TEXT = (DOCUMENTS / "fake-text.txt").read_bytes()


# --- archives ----------------------------------------------------------------------------


def test_traversal_and_absolute_names_in_a_zip_stay_inside_the_upload_area(
    people: Any, collection: Collection
) -> None:
    archive = zip_of(
        {
            "../../escaped.txt": TEXT,
            "/etc/cron.d/absolute.txt": TEXT + b" 2",
            "policies/../../../up.txt": TEXT + b" 3",
            "policies\\windows\\back.txt": TEXT + b" 4",
        }
    )
    results = upload(people.carol, collection, "batch.zip", archive)
    assert [r.error for r in results] == ["", "", "", ""]
    names = sorted(r.document.original_name for r in results)
    assert names == ["escaped.txt", "etc/cron.d/absolute.txt", "policies/up.txt",
                     "policies/windows/back.txt"]  # fmt: skip
    root = storage.upload_root().resolve()
    for result in results:
        path = storage.absolute(result.document.stored_path)
        assert root in path.parents and path.exists()
    # Where a naive unpacker would have put them: nothing there.
    folder = storage.upload_root() / str(collection.pk)
    for base in (folder, folder.parent, folder.parent.parent, folder.parents[2], Path("/")):
        for name in ("escaped.txt", "up.txt", "etc/cron.d/absolute.txt"):
            assert not (base / name).exists(), base / name


def test_symlinks_nested_zips_and_encrypted_entries_are_refused_one_by_one(
    people: Any, collection: Collection
) -> None:
    archive = zip_of(
        {
            "link.txt": b"/etc/passwd",
            "inner.zip": zip_of({"a.txt": TEXT}),
            "good.txt": TEXT,
        },
        symlinks=("link.txt",),
    )
    results = upload(people.carol, collection, "mixed.zip", archive)
    by_name = {r.name: r for r in results}
    assert "Symbolic links" in by_name["mixed.zip/link.txt"].error
    assert "Archives inside archives" in by_name["mixed.zip/inner.zip"].error
    good = next(r for r in results if r.document)
    assert good.document.original_name == "good.txt"
    assert Document.objects.filter(collection=collection).count() == 1


def test_an_encrypted_zip_entry_is_refused(people: Any, collection: Collection) -> None:
    archive = bytearray(zip_of({"secret.txt": TEXT}))
    # Set the "encrypted" flag, as real encrypted entries carry it, in both headers
    # (zipfile cannot write encrypted entries itself).
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = archive.find(signature) + offset
        archive[at] |= 0x1
    (result,) = upload(people.carol, collection, "locked.zip", bytes(archive))
    assert "password-protected" in result.error
    assert not Document.objects.exists()


def test_a_zip_bomb_is_refused_before_unpacking(
    people: Any, collection: Collection, settings: Any
) -> None:
    settings.UPLOAD_MAX_FILE_MB = 2
    before = files_under(storage.upload_root())
    ratio_bomb = zip_of({"zeros.txt": b"0" * (3 << 19) + TEXT})  # 1.5 MB, ratio ~1000
    (result,) = upload(people.carol, collection, "ratio.zip", ratio_bomb)
    assert "zip bomb" in result.error
    too_big = zip_of({"zeros.txt": b"0" * (3 << 20)})
    (result,) = upload(people.carol, collection, "big.zip", too_big)
    assert "Larger than the 2 MB allowed per file" in result.error
    total_bomb = zip_of({f"part{i}.txt": b"1" * (1 << 20) + bytes([i]) for i in range(12)})
    (result,) = upload(people.carol, collection, "total.zip", total_bomb)
    assert "would unpack to" in result.error
    assert files_under(storage.upload_root()) == before
    assert not Document.objects.exists()


def test_an_entry_larger_than_its_archive_says_is_stopped_while_reading(
    people: Any, collection: Collection
) -> None:
    data = TEXT * 400
    archive = bytearray(zip_of({"liar.txt": data}))
    # Both headers say 100 bytes; the compressed stream holds far more.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = archive.find(signature)
        archive[at + offset : at + offset + 4] = (100).to_bytes(4, "little")
    (result,) = upload(people.carol, collection, "liar.zip", bytes(archive))
    assert result.document is None
    assert "damaged" in result.error or "larger than its archive says" in result.error
    assert not files_under(storage.upload_root() / str(collection.pk))


def test_an_archive_that_declares_too_many_entries_is_refused(
    people: Any, collection: Collection
) -> None:
    archive = forge_entry_count(zip_of({"a.txt": TEXT}), 60_000)
    (result,) = upload(people.carol, collection, "many.zip", archive)
    assert "more than 10,000 entries" in result.error


def test_a_damaged_zip_is_refused_alone(people: Any, collection: Collection) -> None:
    results = actions.upload_documents(
        people.carol,
        collection,
        [
            actions.IncomingFile("broken.zip", io.BytesIO(zip_of({"a.txt": TEXT})[:40])),
            actions.IncomingFile("memo.pdf", io.BytesIO(MEMO)),
        ],
    )
    assert "damaged or not really a zip" in results[0].error
    assert results[1].document is not None


# --- names, sizes, content -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd.txt", "etc/passwd.txt"),
        ("..\\..\\windows\\win.txt", "windows/win.txt"),
        ("/abs/olute.txt", "abs/olute.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("bell\x07and\x1bescape.txt", "bellandescape.txt"),
        ("...hidden.txt", "hidden.txt"),
    ],
)
def test_hostile_names_are_cleaned_and_files_stored_under_our_own_names(
    people: Any, collection: Collection, sent: str, kept: str
) -> None:
    (result,) = upload(people.carol, collection, sent, TEXT + repr(sent).encode())
    assert result.document.original_name == kept
    stored = storage.absolute(result.document.stored_path)
    assert stored.parent == (storage.upload_root() / str(collection.pk)).resolve()
    assert stored.name != kept and stored.suffix == ".txt"


def test_a_file_over_the_size_limit_is_refused_and_not_kept(
    people: Any, collection: Collection, settings: Any
) -> None:
    settings.UPLOAD_MAX_FILE_MB = 1
    (result,) = upload(people.carol, collection, "big.txt", b"a" * (1 << 20) + b"b")
    assert "larger than the 1 MB" in result.error
    assert not files_under(storage.upload_root() / str(collection.pk))


def test_content_that_does_not_match_its_extension_is_refused_at_upload(
    people: Any, collection: Collection
) -> None:
    results = actions.upload_documents(
        people.carol,
        collection,
        [
            actions.IncomingFile("invoice.pdf", io.BytesIO(b"MZ\x90\x00" + bytes(range(256)))),
            actions.IncomingFile("memo.docx", io.BytesIO(MEMO)),
            actions.IncomingFile("empty.pdf", io.BytesIO(b"")),
            actions.IncomingFile("song.mp3", io.BytesIO(b"ID3")),
            actions.IncomingFile("memo.pdf", io.BytesIO(MEMO)),
        ],
    )
    assert "holds a program" in results[0].error
    assert "holds a PDF document. Rename it to .pdf" in results[1].error
    assert "empty" in results[2].error
    assert "not supported" in results[3].error
    assert results[4].document is not None and not results[4].error
    assert len(files_under(storage.upload_root() / str(collection.pk))) == 1


# --- duplicates and versions -------------------------------------------------------------------


def test_the_same_content_is_not_ingested_twice_whatever_its_name(
    people: Any, collection: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    (first,) = upload(people.carol, collection, "memo.pdf", MEMO)
    with django_capture_on_commit_callbacks(execute=True):
        (again,) = upload(people.carol, collection, "copy of memo.pdf", MEMO)
    assert again.duplicate and again.document.pk == first.document.pk
    assert Document.objects.count() == 1
    assert len(files_under(storage.upload_root() / str(collection.pk))) == 1


def test_a_new_upload_under_the_same_name_is_a_new_version_of_the_document(
    people: Any, collection: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    (first,) = upload(people.carol, collection, "policies/leave.txt", TEXT)
    document = first.document
    first_path = document.stored_path
    Document.objects.filter(pk=document.pk).update(status="ready", live_version=1)
    (second,) = upload(people.carol, collection, "policies/leave.txt", TEXT + b" Amended.")
    assert second.new_version and second.document.pk == document.pk
    document.refresh_from_db()
    assert (document.version, document.live_version, document.status) == (2, 1, "queued")
    # The live version's file stays until the new one is published.
    assert document.previous_stored_path == first_path
    assert storage.absolute(first_path).exists()
    second_path = document.stored_path
    assert storage.absolute(second_path).read_bytes().endswith(b"Amended.")
    # A third upload before the second was published drops the second's file, not the live one.
    with django_capture_on_commit_callbacks(execute=True):
        upload(people.carol, collection, "policies/leave.txt", TEXT + b" Again.")
    document.refresh_from_db()
    assert document.version == 3
    assert document.previous_stored_path == first_path
    assert storage.absolute(first_path).exists()
    assert not storage.absolute(second_path).exists()
    uploads = AuditEvent.objects.filter(action=Action.UPLOAD, object_id=str(document.pk))
    assert [e.details.get("version") for e in uploads.order_by("id")] == [None, 2, 3]
    # Another folder, same file name: another document.
    (other,) = upload(people.carol, collection, "archive/leave.txt", TEXT + b" Old.")
    assert other.document.pk != document.pk and not other.new_version


def test_a_batch_is_recorded_in_few_transactions_and_reports_every_file(
    people: Any, collection: Collection, django_assert_max_num_queries: Any
) -> None:
    files = [
        actions.IncomingFile(f"notes/{i}.txt", io.BytesIO(TEXT + str(i).encode()))
        for i in range(30)
    ]
    with django_assert_max_num_queries(30 * 9):
        results = list(actions.upload_stream(people.carol, collection, files, batch=8))
    assert len(results) == 30 and all(r.document for r in results)
    assert Document.objects.filter(collection=collection).count() == 30


# --- the HTTP side -----------------------------------------------------------------------------


def test_a_request_body_over_the_limit_gets_a_413_in_json(
    people: Any, collection: Collection, settings: Any, api_signed_in: ClientFor
) -> None:
    settings.UPLOAD_MAX_REQUEST_MB = 1
    response = api_signed_in(people.carol).post(
        f"/api/v1/collections/{collection.pk}/documents",
        {"files": SimpleUploadedFile("big.txt", b"a" * (1 << 20) + b"b")},
    )
    assert response.status_code == 413
    assert "larger than the 1 MB" in response.json()["error"]
    assert not Document.objects.exists()


def test_a_request_with_a_thousand_parts_gets_a_400_in_json(
    people: Any, collection: Collection, api_signed_in: ClientFor
) -> None:
    parts = [SimpleUploadedFile(f"{i}.txt", b"x") for i in range(1000)]
    response = api_signed_in(people.carol).post(
        f"/api/v1/collections/{collection.pk}/documents", {"files": parts}
    )
    assert response.status_code == 400
    assert f"at most {settings.UPLOAD_MAX_FILES:,} files" in response.json()["error"]
    assert not Document.objects.exists()


def test_a_folder_upload_keeps_each_file_s_place(
    people: Any, collection: Collection, api_signed_in: ClientFor
) -> None:
    client = api_signed_in(people.carol)
    url = f"/api/v1/collections/{collection.pk}/documents"
    body = {
        "files": [SimpleUploadedFile("leave.txt", TEXT), SimpleUploadedFile("memo.pdf", MEMO)],
        "paths": ["HR/2024/leave.txt", "HR/../../memo.pdf"],
    }
    response = client.post(url, body)
    assert response.status_code == 202, response.content
    names = sorted(d["name"] for d in response.json()["documents"])
    assert names == ["HR/2024/leave.txt", "HR/memo.pdf"]
    again = client.post(
        url,
        {"files": [SimpleUploadedFile("leave.txt", TEXT + b"!")], "paths": ["HR/2024/leave.txt"]},
    )
    (item,) = again.json()["documents"]
    assert item["new_version"] is True and item["name"] == "HR/2024/leave.txt"


def test_an_employee_cannot_upload_and_an_outsider_cannot_see_the_collection(
    people: Any, collection: Collection, api_signed_in: ClientFor
) -> None:
    url = f"/api/v1/collections/{collection.pk}/documents"
    body = {"files": SimpleUploadedFile("memo.pdf", MEMO)}
    assert api_signed_in(people.alice).post(url, body).status_code == 403
    assert api_signed_in(people.bob).post(url, body).status_code == 404
    assert not Document.objects.exists()


def test_the_upload_page_offers_a_folder_and_reports_refusals(
    people: Any, collection: Collection, signed_in: ClientFor
) -> None:
    client = signed_in(people.carol)
    page = client.get(f"/collections/{collection.pk}/")
    assert b"webkitdirectory" in page.content
    response = client.post(
        f"/collections/{collection.pk}/upload",
        {"files": [SimpleUploadedFile("memo.pdf", MEMO), SimpleUploadedFile("run.exe", b"MZ")]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert "1 file queued for reading." in shown
    assert any(m.startswith("run.exe: ") and "not supported" in m for m in shown)


def test_hidden_files_in_folders_are_skipped_by_the_command(
    people: Any, collection: Collection, tmp_path: Path
) -> None:
    from django.core.management import call_command

    (tmp_path / "policies" / "2024").mkdir(parents=True)
    (tmp_path / "policies" / ".git").mkdir()
    (tmp_path / "policies" / ".git" / "config.txt").write_bytes(TEXT)
    (tmp_path / "policies" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "policies" / "2024" / "memo.pdf").write_bytes(MEMO)
    (tmp_path / "policies" / "leave.txt").write_bytes(TEXT)
    os.symlink("/etc/passwd", tmp_path / "policies" / "passwd.txt")
    out = io.StringIO()
    call_command(
        "ingest", str(tmp_path / "policies"), "--collection", str(collection.pk), stdout=out
    )
    names = sorted(Document.objects.values_list("original_name", flat=True))
    assert names == ["policies/2024/memo.pdf", "policies/leave.txt"]
    assert "2 queued, 0 new versions, 0 already there, 0 refused" in out.getvalue()
    (tmp_path / "policies" / "leave.txt").write_bytes(TEXT + b" Amended.")
    out = io.StringIO()
    call_command(
        "ingest", str(tmp_path / "policies"), "--collection", str(collection.pk), stdout=out
    )
    assert "0 queued, 1 new versions, 1 already there, 0 refused" in out.getvalue()
