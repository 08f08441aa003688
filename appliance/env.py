"""Typed settings from the environment.

Every helper fails loudly on a value it cannot read, so a typo in the settings file stops
the appliance at start-up instead of surfacing as odd behaviour later. ``*_FILE`` variants
let secrets live in files (systemd credentials, Docker/Kubernetes secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class SettingError(ValueError):
    """A setting has a value the appliance cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def load_env_file(path: Path, environ: dict[str, str] | None = None) -> None:
    """Read ``NAME=value`` lines into the environment without overriding what is set."""
    environ = os.environ if environ is None else environ
    if not path.is_file():
        return
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SettingError(f"{path}:{number}: expected NAME=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        environ.setdefault(name.strip(), value)


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def _raw(self, name: str) -> str | None:
        file_name = self.environ.get(f"{name}_FILE")
        if file_name:
            try:
                return Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingError(f"{name}_FILE={file_name}: cannot read it ({exc})") from exc
        return self.environ.get(name)

    def str(self, name: str, default: str | None = None) -> str:
        value = self._raw(name)
        if value is None or value == "":
            if default is None:
                raise SettingError(f"{name} is required but not set")
            return default
        return value

    def bool(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingError(f"{name}={value!r}: expected true or false")

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self._raw(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingError(f"{name}={value!r}: expected a whole number") from None
        if minimum is not None and number < minimum:
            raise SettingError(f"{name}={number}: must be at least {minimum}")
        return number

    def float(self, name: str, default: float) -> float:
        value = self._raw(name)
        if value is None or value.strip() == "":
            return default
        try:
            return float(value)
        except ValueError:
            raise SettingError(f"{name}={value!r}: expected a number") from None

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self._raw(name)
        if value is None:
            return default
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default).strip().lower()
        if value not in choices:
            raise SettingError(f"{name}={value!r}: expected one of {', '.join(choices)}")
        return value

    def path(self, name: str, default: Path) -> Path:
        value = self._raw(name)
        return Path(value).expanduser() if value else default
