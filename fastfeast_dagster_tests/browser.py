"""The real Dagster UI in Debian's Chromium, driven by Playwright, for the browser tests in
test_dev.py.

Chromium comes from apt (`apt-get install -y chromium`; .ci/run installs it), never from a
browser download: this network has none. Playwright's wheel ships its own driver, so there is
no `playwright install` step either.

The UI polls GraphQL every few seconds, so the network never goes idle: a view is ready once
its loading indicators are gone, and then each assertion waits for its own content. Every view
leaves a screenshot in artifacts/screenshots/; a view whose assertion fails leaves
`<name>-FAILED.png` and `<name>-FAILED.txt` (address and page text) instead, and the error
quotes the page text.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, ViewportSize, expect, sync_playwright

CHROMIUM = Path(os.environ.get("FASTFEAST_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get install -y chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"

# Headless on a closed network: the background-networking flags keep Chromium from its own
# connections (component updates, sync, field trials), which this network refuses; no sandbox,
# because CI runs the tests as root.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Tall enough that the Automation list (virtualized: only rows on screen exist) shows them all.
VIEWPORT: ViewportSize = {"width": 1600, "height": 1000}
# A first render on the shared 2-core machine, with runs going on, takes seconds, not minutes.
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)
# Dagster's loading indicators: the spinner (role=progressbar, also used for a check in
# progress) and the skeleton placeholders. The thin loading bar under the header shows on
# every poll, so it is not one of them.
LOADING = '[role="progressbar"], [class*="Skeleton_animated"]'


@contextmanager
def open_ui(base: str) -> Iterator[UI]:
    """The UI at `base` in a fresh Chromium; the screenshots of an earlier session are removed
    first, so that the folder shows this session's views and failures only."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    with chromium() as context:
        yield UI(context, base)


@contextmanager
def chromium() -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile; fails, never skips, when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's Chromium at {CHROMIUM}: run `{INSTALL}` as root"
            " (.ci/run does), or point FASTFEAST_CHROMIUM at another Chromium",
            pytrace=False,
        )
    with (
        tempfile.TemporaryDirectory(prefix="ffchromium") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport=VIEWPORT,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


def settle(page: Page, seconds: float = TIMEOUT_MS / 1000) -> None:
    """Wait for the app to render and its loading indicators to stay gone for a second.

    A second of quiet, not one look: a view starts its queries a moment after the shell
    renders, so right after navigation there is briefly nothing loading yet.
    """
    page.get_by_role("navigation").wait_for()
    deadline = time.monotonic() + seconds
    quiet_since: float | None = None
    while True:
        busy = page.locator(LOADING).count()
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= 1:
            return
        if now > deadline:
            raise AssertionError(f"{busy} loading indicator(s) still shown after {seconds:.0f} s")
        page.wait_for_timeout(200)


def page_text(page: Page) -> str:
    try:
        return re.sub(r"\n\s*\n+", "\n", page.inner_text("body"))
    except Exception as error:  # a crashed or closed page still gets its failure reported
        return f"(no page text: {error})"


@dataclass
class UI:
    """The Dagster UI at `base` in one browser context; each view is a page of its own."""

    context: BrowserContext
    base: str
    artifacts: Path = ARTIFACTS

    @contextmanager
    def view(self, name: str, path: str) -> Iterator[Page]:
        """Open `path`, wait until it has loaded, and hand the page to the assertions.

        Saves `<name>.png` when they pass; when anything fails, saves `<name>-FAILED.png` and
        `<name>-FAILED.txt` and raises an AssertionError that quotes what the page showed.
        """
        self.artifacts.mkdir(parents=True, exist_ok=True)
        page = self.context.new_page()
        try:
            page.goto(self.base + path, wait_until="domcontentloaded")
            settle(page)
            yield page
            self.screenshot(page, name)
        except Exception as error:
            raise AssertionError(self._failure(page, name, error)) from error
        finally:
            page.close()

    def screenshot(self, page: Page, name: str) -> Path:
        target = self.artifacts / f"{name}.png"
        page.screenshot(path=target)
        return target

    def _failure(self, page: Page, name: str, error: BaseException) -> str:
        text = page_text(page)
        shot = self.artifacts / f"{name}-FAILED.png"
        try:
            page.screenshot(path=shot, full_page=True)
        except Exception as screenshot_error:
            shot = Path(f"(no screenshot: {screenshot_error})")
        record = self.artifacts / f"{name}-FAILED.txt"
        record.write_text(f"{page.url}\n\n{error}\n\n{text}\n")
        return (
            f"UI view {name!r} at {page.url} failed: {error}\n"
            f"screenshot {shot}, page text {record}; the page showed:\n{text[:4000]}"
        )
