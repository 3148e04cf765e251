"""A real browser for the console's tests: Debian's ``chromium`` (``/usr/bin/chromium``,
installed by ``deploy/setup.sh test``) driven by Playwright for Python. Playwright's own
browser download is never used.

Screenshots go to ``build/screenshots/`` (or ``$VDX_SCREENSHOTS``); two of them are copied
into ``docs/`` for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_service

CHROMIUM = os.environ.get("VDX_CHROMIUM", "/usr/bin/chromium")
# Flags for a headless Chromium on a machine with a closed network: no sandbox (root in
# CI), no GPU, and none of the background connections it would make to Google's hosts.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("VDX_SCREENSHOTS", ROOT / "build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        require_service("chromium", "deploy/setup.sh test installs Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("playwright", "pip install -e '.[test]' installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  accept_downloads=True, locale="vi-VN",
                                  timezone_id="Asia/Ho_Chi_Minh")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def served(traffic):
    """The console on the traffic's hub, served by uvicorn on a free local port (a
    thread of this process): the URL to open."""
    import socket
    import threading
    import time

    import uvicorn

    from tests.console.conftest import console_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(console_app(traffic.hub), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the console did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
