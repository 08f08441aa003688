"""Helpers for the browser tests: Debian's Chromium through Playwright, screenshots at phone
and desktop width, axe-core's accessibility checks, and moving through a page by keyboard.

axe-core comes from the npm registry through the install script (``ensure_axe`` in
deploy/lib/common.sh puts ``axe.min.js`` under ``.venv/share/axe-core``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
AXE = Path(os.environ.get("APPLIANCE_TEST_AXE", Path(sys.prefix) / "share/axe-core/axe.min.js"))
SCREENSHOTS = Path(
    os.environ.get(
        "APPLIANCE_TEST_SCREENSHOTS", Path(__file__).resolve().parents[2] / "var" / "screenshots"
    )
)
WIDTHS = {"desktop": 1280, "phone": 375}
# axe's two worst impacts: the issue asks for none of these on the pages people use.
BLOCKING = ("serious", "critical")


@contextmanager
def browser_context(
    base_url: str, also_allowed: tuple[str, ...] = (), **context_options: Any
) -> Iterator[Any]:
    """A Chromium context on ``base_url``; fails the test if a page loads anything from
    another origin than it and ``also_allowed`` (a sign-in provider's, say)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        context = browser.new_context(base_url=base_url, **context_options)
        external: list[str] = []
        context.on(
            "request",
            lambda r: (
                None if r.url.startswith((base_url, *also_allowed)) else external.append(r.url)
            ),
        )
        try:
            yield context
        finally:
            from django.db import connections

            # ORM calls made while Playwright's loop ran opened connections in that context.
            connections.close_all()
            browser.close()
        assert external == [], f"a page loaded something from elsewhere: {external}"


def save_screenshots(page: Any, name: str) -> None:
    """The page as a person sees it at phone and desktop width, under var/screenshots;
    at phone width nothing may need sideways scrolling."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} is {overflow}px too wide at {width}px"
    if original:
        page.set_viewport_size(original)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it stands, each with the
    elements it found them on. The script is evaluated through the browser's debugging
    protocol, so the page's Content-Security-Policy (no inline scripts) stays in force."""
    assert AXE.is_file(), f"{AXE} is missing: deploy/test installs it (ensure_axe)"
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result
        if v["impact"] in BLOCKING
    ]


def assert_accessible(page: Any, name: str) -> None:
    found = axe_violations(page)
    assert found == [], f"axe finds serious or critical problems on {name}: {found}"


def tab_to(page: Any, selector: str, most: int = 60, *, backwards: bool = False) -> None:
    """Press Tab until the element ``selector`` names has the focus (as a keyboard user
    would; nothing when it has it already), failing if it never does. ``backwards``
    presses Shift+Tab."""
    key = "Shift+Tab" if backwards else "Tab"
    focused = "(s) => !!document.activeElement && document.activeElement.matches(s)"
    for _ in range(most):
        if page.evaluate(focused, selector):
            return
        page.keyboard.press(key)
    if page.evaluate(focused, selector):
        return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")
