from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def test_health_names_a_missing_model_and_answers_503(tmp_path: Path) -> None:
    with override_settings(LLM_MODEL_PATH=tmp_path / "absent.gguf"):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert any("absent.gguf" in p for p in response.json()["problems"])


def test_health_needs_no_sign_in_and_reports_the_model() -> None:
    body = Client().get("/healthz").json()
    assert body["model"] == "smollm2-135m" and body["demo_model"] is True
    assert "database" not in " ".join(body["problems"])
