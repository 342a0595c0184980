"""Browser tests: Playwright for Python driving Debian's Chromium against `live_server`.

Without Playwright or /usr/bin/chromium they skip with the reason; under CI=true that skip is
a failure (`.ci/run` installs the `chromium` package when it is missing). Playwright's own
browser downloads are never used.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.conftest import (  # noqa: F401 - fixtures
    _fast_password_hashing,
    calls,
    fake_providers,
    make_user,
)
from tests.conftest import IN_CI

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The committed screenshots are refreshed only on request, so a test run changes no file.
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright for Python (pip install playwright)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium per test module. Module scope, not session: while Playwright's sync API
    is open it keeps an event loop running in this thread, which would break `asyncio.run`
    in every test collected after the browser tests."""
    reason = _unavailable()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Django refuses ORM calls from a thread with a running event loop; the tests' own ORM
    # calls around the browser are plain synchronous code. Only while the browser is open.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield launched
            finally:
                launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(15_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def screenshot(page, name: str, tmp_path: Path) -> Path:
    """A full-page PNG: into docs/screenshots/ with UPDATE_SCREENSHOTS=1, else into tmp_path."""
    folder = SCREENSHOTS if UPDATE_SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    page.screenshot(path=str(target), full_page=True)
    return target


def canvas_painted_pixels(page, selector: str) -> list[int]:
    """For each canvas matching `selector`, the number of pixels that are not transparent."""
    return page.eval_on_selector_all(
        selector,
        """canvases => canvases.map(c => {
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let painted = 0;
            for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) painted++; }
            return painted;
        })""",
    )
