"""Every sentence a curator may read about a failed file falls into a fixed label for
/metrics (appliance_parse_failures_total)."""

from __future__ import annotations

import pytest

from ingest.failures import LABELS, reason_label


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("Password-protected PDF: upload a copy without a password.", "encrypted"),
        ("This EPUB is protected by DRM, so its text cannot be read.", "encrypted"),
        (
            "Reading this file took longer than the 15 minutes allowed, so it was stopped.",
            "time_limit",
        ),
        (
            "Reading this file needed more than the 4,096 MB of memory allowed for one file, "
            "so it was stopped. It may be malformed",
            "too_large",
        ),
        ("This DOCX file would unpack to more than 1,024 MB (a zip bomb?); refused.", "too_large"),
        ("No text could be found in this file. If it is a scan ...", "no_text"),
        ("The file is empty.", "no_text"),
        ("This file stopped the ingestion worker 3 times, so it was set aside.", "worker_lost"),
        (
            "The program reading this file crashed on it (or ran out of the 4,096 MB of memory",
            "worker_lost",
        ),
        (
            "The uploaded file is missing from the appliance's storage; upload it again.",
            "missing_file",
        ),
        ("An unexpected error stopped the reading of this file (KeyError).", "unexpected"),
        (".wav files are not supported. Upload PDF, Word, ...", "unsupported"),
        ("Reading old Word files (.doc) needs LibreOffice, which is not installed", "unsupported"),
        (
            "This file is named .docx but holds Excel content. Rename it to .xlsx and upload "
            "it again.",
            "wrong_type",
        ),
        ("This JSON file is nested too deeply to be read.", "refused"),
        ("This PDF could not be opened (broken xref).", "damaged"),
        ("This CSV file is malformed (bad quoting).", "damaged"),
        ("Something nobody has written a rule for.", "other"),
    ],
)
def test_reasons_fall_into_their_label(reason: str, label: str) -> None:
    assert reason_label(reason) == label
    assert label in LABELS
