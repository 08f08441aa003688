from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

from appliance.accounts import actions as accounts
from tests.support.browser import browser_context
from tests.support.stack import Stack, free_port


@pytest.fixture(scope="session")
def stack(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    """uvicorn + ingest worker + answer worker on the test database, started once."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "APPLIANCE_DB_NAME": connection.settings_dict["NAME"],
        "APPLIANCE_DB_USER": connection.settings_dict["USER"],
        "APPLIANCE_DB_PASSWORD": connection.settings_dict["PASSWORD"],
        "APPLIANCE_DATA_DIR": str(settings.DATA_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    log_dir = Path(tmp_path_factory.mktemp("stack-logs"))
    running = Stack(url=f"http://127.0.0.1:{port}", env=env, log_dir=log_dir)
    running.start(
        "web",
        [
            str(Path(os.sys.executable).parent / "uvicorn"),
            "appliance.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
        ],
    )
    running.start_worker("ingest")
    running.start_worker("answer")
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def page(stack: Stack, monkeypatch: Any) -> Iterator[Any]:
    """A page of Debian's Chromium on the real server (``tests.support.browser``)."""
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls
    # are still plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_context(stack.url) as context:
        yield context.new_page()


@pytest.fixture
def api_for(live_db: Any, stack: Stack) -> Any:
    """An HTTP client for the real server, signed in as ``user`` with an API token."""
    clients: list[httpx.Client] = []

    def make(user: Any) -> httpx.Client:
        token = accounts.create_api_token(None, user, "test")
        client = httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    """On a failure, show the tail of each appliance process's log beside the traceback."""
    outcome = yield
    report = outcome.get_result()
    running: Stack | None = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
    if report.failed and running is not None:
        for name in ("web", "ingest", "answer"):
            report.sections.append((f"{name} log", running.log_tail(name, 60)))
