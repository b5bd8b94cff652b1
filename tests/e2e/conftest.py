"""The web UI in Debian's chromium (headless, driven by Playwright) against a real `nodeloom serve` on 127.0.0.1.

Without /usr/bin/chromium the tests are skipped, saying why, except under `CI=true`, where a missing browser fails
them. One server serves the module (the restart scenario starts one of its own), with the tiny SD-1 model installed
and the `e2e_wait` node pack loaded; each test works on what it makes itself (its own batches, boards and images),
so the tests hold in any order. A test's `page` leaves a screenshot of itself as the test ended in
`test-artifacts/e2e/`, and an error the page raised fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from tests.model_sources import install_and_wait
from tests.serve_process import ServeProcess

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "e2e"

expect.set_options(timeout=20_000)


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true needs it: .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_sd_model: Path) -> Iterator[ServeProcess]:
    """`nodeloom serve` in a child process, as a user runs it, so that a test can stop it and start it again."""
    require_chromium()
    root = tmp_path_factory.mktemp("e2e") / "root"
    (root / "nodes").mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("slow_nodes.py"), root / "nodes" / "e2e_slow_nodes.py")
    server = ServeProcess(root)
    server.env["NODELOOM_MODEL_INSTALL_ROOTS"] = json.dumps([str(tiny_sd_model.parent)])
    server.spawn()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def api(server: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def main_model(api: httpx.Client, tiny_sd_model: Path) -> dict[str, Any]:
    """The tiny SD-1 model's config, installed in place."""
    with httpx.Client(base_url=f"{api.base_url}v2/models", timeout=60) as models:
        job = install_and_wait(models, tiny_sd_model, base="sd-1")
    assert job["status"] == "completed", job
    config: dict[str, Any] = job["config_out"]
    return config


Snap = Callable[[str], None]


@pytest.fixture
def page(browser: Browser, server: ServeProcess, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page at desktop size; its screenshot is saved at the end, and an error it raised fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    try:
        yield page
        save_screenshot(page, request.node.name)
    finally:
        context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
def snap(page: Page, request: pytest.FixtureRequest) -> Snap:
    """Saves a screenshot of the page now, named after the test and `moment`."""
    return lambda moment: save_screenshot(page, f"{request.node.name}-{moment}")


def save_screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # From the top: a full-page shot of a scrolled page draws the sticky header where the view was.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
