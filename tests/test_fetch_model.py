"""fetch_model takes a file carried in by hand only with a matching SHA-256, then points the
settings at it; a mismatch changes nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: Any, settings: Any) -> Path:
    path = tmp_path / "appliance.env"
    path.write_text("APPLIANCE_LLM_MODEL=smollm2-135m\n")
    monkeypatch.setenv("APPLIANCE_ENV_FILE", str(path))
    settings.MODELS_DIR = tmp_path / "models"
    return path


def test_a_carried_in_file_with_the_right_checksum_becomes_the_model(
    env_file: Path, tmp_path: Path
) -> None:
    carried = tmp_path / "usb.gguf"
    carried.write_bytes(b"GGUF pretend weights")
    digest = hashlib.sha256(carried.read_bytes()).hexdigest()
    call_command("fetch_model", "gpt-oss-20b", "--from-file", str(carried), "--sha256", digest)
    installed = tmp_path / "models" / "gpt-oss-20b-mxfp4.gguf"
    assert installed.read_bytes() == carried.read_bytes()
    text = env_file.read_text()
    assert "APPLIANCE_LLM_MODEL=gpt-oss-20b" in text
    assert f"APPLIANCE_LLM_MODEL_PATH={installed}" in text


def test_a_wrong_or_missing_checksum_changes_nothing(env_file: Path, tmp_path: Path) -> None:
    carried = tmp_path / "usb.gguf"
    carried.write_bytes(b"tampered")
    with pytest.raises(CommandError, match="mismatch"):
        call_command(
            "fetch_model", "gpt-oss-20b", "--from-file", str(carried), "--sha256", "0" * 64
        )
    with pytest.raises(CommandError, match="No SHA-256"):
        call_command("fetch_model", "gpt-oss-20b", "--from-file", str(carried))
    assert env_file.read_text() == "APPLIANCE_LLM_MODEL=smollm2-135m\n"
    assert not list((tmp_path / "models").glob("*"))
