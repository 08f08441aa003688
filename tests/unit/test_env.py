"""Typed settings helpers: good values parse, bad values fail loudly with the name."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.env import Env, SettingError, load_env_file


def test_values_parse_to_their_types() -> None:
    env = Env({"A": "yes", "B": "42", "C": "a, b,,c", "D": "0.5", "E": "Harmony"})
    assert env.bool("A", False) is True
    assert env.int("B", 0) == 42
    assert env.list("C", []) == ["a", "b", "c"]
    assert env.float("D", 0.0) == 0.5
    assert env.choice("E", "template", ("harmony", "template")) == "harmony"


def test_missing_values_take_their_defaults() -> None:
    env = Env({})
    assert env.bool("X", True) is True
    assert env.int("X", 7) == 7
    assert env.str("X", "d") == "d"
    assert env.path("X", Path("/a")) == Path("/a")


@pytest.mark.parametrize(
    ("environ", "call"),
    [
        ({"N": "many"}, lambda e: e.int("N", 1)),
        ({"N": "-1"}, lambda e: e.int("N", 1, minimum=0)),
        ({"B": "perhaps"}, lambda e: e.bool("B", False)),
        ({"C": "gpt"}, lambda e: e.choice("C", "a", ("a", "b"))),
        ({"F": "x"}, lambda e: e.float("F", 1.0)),
        ({}, lambda e: e.str("REQUIRED")),
    ],
)
def test_bad_values_fail_loudly_naming_the_setting(environ: dict, call) -> None:
    with pytest.raises(SettingError) as error:
        call(Env(environ))
    assert next(iter(environ or {"REQUIRED": ""})) in str(error.value)


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert Env({"KEY_FILE": str(secret)}).str("KEY") == "s3cret"
    with pytest.raises(SettingError, match="KEY_FILE"):
        Env({"KEY_FILE": str(tmp_path / "missing")}).str("KEY")


def test_settings_file_fills_only_what_is_unset(tmp_path: Path) -> None:
    path = tmp_path / "appliance.env"
    path.write_text("# comment\nA=from-file\nB='quoted'\n\n")
    environ = {"A": "from-environment"}
    load_env_file(path, environ)
    assert environ == {"A": "from-environment", "B": "quoted"}
    path.write_text("not a setting\n")
    with pytest.raises(SettingError, match="NAME=value"):
        load_env_file(path, {})
