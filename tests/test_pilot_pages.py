"""The pilot workbench's pages and doors: curators of a department keep its golden sets and
runs; nobody else sees them, and a bad golden-set file loses nothing but its bad rows."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from appliance.accounts import actions as accounts
from appliance.accounts.models import Role
from appliance.audit.models import Action, AuditEvent
from inference.pilot import actions
from inference.pilot.models import GoldenSet, Run
from tests.conftest import PASSWORD, ClientFor

pytestmark = pytest.mark.django_db

GOLDEN = b"""question,expected_answer,answerable
What is the leave policy?,25 days,true
,empty,true
=1+1,a formula,true
What is the capital of Mongolia?,,false
"""


def _upload(client: Any, department: Any, data: bytes, name: str = "golden.csv") -> Any:
    return client.post(
        "/pilot/golden-sets",
        {"name": "HR pilot", "department": department.pk, "file": SimpleUploadedFile(name, data)},
        follow=True,
    )


def test_a_curator_uploads_a_golden_set_and_bad_rows_fail_alone(
    people: Any, signed_in: ClientFor
) -> None:
    page = _upload(signed_in(people.carol), people.hr, GOLDEN).content.decode()
    assert "question is empty" in page
    assert "spreadsheet formula" in page
    golden = GoldenSet.objects.get(name="HR pilot")
    assert [q.question for q in golden.latest.questions.all()] == [
        "What is the leave policy?",
        "What is the capital of Mongolia?",
    ]
    assert AuditEvent.objects.filter(action=Action.GOLDEN_SET_VERSION).count() == 1
    # The same name again is the next version; the first stays as it was.
    _upload(signed_in(people.carol), people.hr, GOLDEN)
    assert list(golden.versions.values_list("number", flat=True)) == [2, 1]


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ("Spørsmål;Svar\nHvor?;Her\n".encode("cp1252"), "not UTF-8"),
        (b"answer\nforty-two\n", "no “question” column"),
        (bytes(range(256)) * 40_000, "5 MB"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_with_its_reason(
    people: Any, signed_in: ClientFor, data: bytes, said: str
) -> None:
    page = _upload(signed_in(people.carol), people.hr, data).content.decode()
    assert said in page
    assert not GoldenSet.objects.exists()


def test_only_curators_reach_the_workbench_and_only_their_departments_sets(
    people: Any, signed_in: ClientFor
) -> None:
    fiona, _ = accounts.create_or_update_user(None, "fiona", PASSWORD)
    accounts.add_membership(None, fiona, people.finance, Role.CURATOR)
    version = actions.create_golden_set(people.carol, "HR pilot", people.hr, [])
    config = actions.save_configuration(people.carol, "small", model="smollm2-135m")
    run = Run.objects.create(
        golden_version=version, configuration=config, as_user=people.alice, total=0
    )
    assert signed_in(people.carol).get("/pilot/").status_code == 200
    assert signed_in(people.carol).get(f"/pilot/runs/{run.pk}/").status_code == 200
    for other in (people.alice, people.bob, people.dave, people.erin, people.oscar):
        assert signed_in(other).get("/pilot/").status_code == 404
    # Another department's curator: the set and the run do not exist for her.
    client = signed_in(fiona)
    assert client.get("/pilot/").status_code == 200
    assert client.get(f"/pilot/golden-sets/{version.golden_set_id}/").status_code == 404
    assert client.get(f"/pilot/runs/{run.pk}/").status_code == 404
    assert client.get(f"/pilot/runs/{run.pk}/progress").status_code == 404
    assert client.post(f"/pilot/runs/{run.pk}/cancel").status_code == 404
    assert client.get(f"/pilot/compare?runs={run.pk}&runs={run.pk}").status_code == 302
    # Starting a run as someone outside her departments is refused.
    response = client.post(
        "/pilot/runs",
        {"version": version.pk, "configuration": config.pk, "as_user": people.alice.pk},
    )
    assert response.status_code == 302
    assert Run.objects.count() == 1
