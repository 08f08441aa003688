"""The translation catalogues in appliance/locale are complete and compiled: every string
the code and templates mark for translation has a Norwegian translation, none is fuzzy, the
placeholders match, and the committed .mo files say what the .po files say (the install
uses the .mo files as they are; docs/i18n.md says how to update both)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "appliance" / "locale"
DOMAINS = ("django", "djangojs")
# What makemessages reads: the packages and the templates, never the tests, data, or
# collected static files (docs/i18n.md runs it with the same --ignore list).
SOURCES = ("appliance", "ingest", "inference", "templates")
IGNORED = ("tests", "var", "staticfiles", "docs", "deploy", "node_modules")
COPY_IGNORED = ("locale", "__pycache__", "*.pyc")
_PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\{\s*\w+\s*\}\}")


def _languages() -> list[str]:
    return [code for code, _ in settings.LANGUAGES if code != settings.LANGUAGE_CODE]


def _catalogues() -> list[tuple[str, str, Path]]:
    return [
        (code, domain, LOCALE / code / "LC_MESSAGES" / f"{domain}.po")
        for code in _languages()
        for domain in DOMAINS
    ]


def _key(entry: polib.POEntry | polib.MOEntry) -> tuple[str, str]:
    return (entry.msgctxt or "", entry.msgid)


def test_every_interface_language_but_english_has_its_catalogues() -> None:
    assert _languages() == ["nb", "de"]
    for _code, _domain, po in _catalogues():
        assert po.is_file(), f"{po} is missing"
        assert po.with_suffix(".mo").is_file(), f"{po.with_suffix('.mo')} is missing"


@pytest.mark.parametrize(("code", "domain", "po"), _catalogues())
def test_every_entry_is_translated_with_the_same_placeholders(
    code: str, domain: str, po: Path
) -> None:
    catalogue = polib.pofile(str(po))
    live = [e for e in catalogue if not e.obsolete]
    assert live, f"{po} is empty"
    untranslated = [e.msgid for e in live if not e.translated()]
    assert not untranslated, f"untranslated in {po}: {untranslated}"
    fuzzy = [e.msgid for e in live if "fuzzy" in e.flags]
    assert not fuzzy, f"fuzzy (check, then remove the flag) in {po}: {fuzzy}"
    for entry in live:
        said = [entry.msgstr] if not entry.msgid_plural else list(entry.msgstr_plural.values())
        for source, text in ((entry.msgid, said[0]), (entry.msgid_plural or entry.msgid, said[-1])):
            assert sorted(_PLACEHOLDER.findall(source)) == sorted(_PLACEHOLDER.findall(text)), (
                f"placeholders differ in {po}: {source!r} -> {text!r}"
            )


@pytest.mark.parametrize(("code", "domain", "po"), _catalogues())
def test_the_compiled_catalogue_says_what_the_source_says(code: str, domain: str, po: Path) -> None:
    def said(entries: list) -> dict[tuple[str, str], object]:
        return {
            _key(e): (dict(e.msgstr_plural) if e.msgid_plural else e.msgstr)
            for e in entries
            if e.msgid and not getattr(e, "obsolete", False)
        }

    source = said(list(polib.pofile(str(po))))
    compiled = said(list(polib.mofile(str(po.with_suffix(".mo")))))
    stale = sorted(k[1] for k in source.keys() ^ compiled.keys()) + sorted(
        k[1] for k in source.keys() & compiled.keys() if source[k] != compiled[k]
    )
    assert not stale, (
        f"{po.with_suffix('.mo')} is stale; run manage.py compilemessages. Differs: {stale[:10]}"
    )


def test_every_marked_string_in_the_code_is_in_the_catalogues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """makemessages, run on a copy of the code, finds no string the committed catalogues
    lack and none they keep that the code no longer has. (On a copy: makemessages writes
    into every ``locale`` folder it walks past, the committed one included.)"""
    copy = tmp_path / "code"
    for top in SOURCES:
        shutil.copytree(ROOT / top, copy / top, ignore=shutil.ignore_patterns(*COPY_IGNORED))
    scratch = tmp_path / "locale"
    scratch.mkdir()
    monkeypatch.chdir(copy)
    with override_settings(LOCALE_PATHS=[scratch]):
        for domain in DOMAINS:
            call_command(
                "makemessages",
                locale=_languages(),
                domain=domain,
                ignore_patterns=list(IGNORED),
                verbosity=0,
            )
    for code, _domain, po in _catalogues():
        fresh = {_key(e) for e in polib.pofile(str(scratch / code / "LC_MESSAGES" / po.name))}
        kept = {_key(e) for e in polib.pofile(str(po)) if not e.obsolete}
        missing = sorted(m for _, m in fresh - kept)
        extra = sorted(m for _, m in kept - fresh)
        assert not missing and not extra, (
            f"{po} is out of date (docs/i18n.md): "
            f"missing {missing[:10]}, no longer used {extra[:10]}"
        )
