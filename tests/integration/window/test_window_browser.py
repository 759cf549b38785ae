"""The status page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, against a real daemon importing into the simulator.

A person opens the page before dropping two files and watches it refresh itself: the files
appear, show their uploads done/total as the import goes on, and end ``complete`` (with a
working link to its report.json) and ``partial`` (with a working link to its failures.csv).
Screenshots are kept under the test's tmp folder and in ``var/artefacts/`` (gitignored).

Without Chromium or chromedriver the test is skipped, and pytest's summary says so in one
line ("browser test skipped: ..."). CI installs both (``.ci/run``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from window_helpers import running_window, settings_for, simulator, wait_until, write_leads

from orchestrator.settings import Settings

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTEFACTS = Path(__file__).resolve().parents[3] / "var" / "artefacts"
try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - the dev extra installs it
    webdriver = None  # type: ignore[assignment]

_MISSING = [what for what, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
                                     ("selenium", webdriver)) if not found]
if _MISSING:
    pytest.skip(
        f"browser test skipped: {' and '.join(_MISSING)} not found (as root: apt-get install "
        "-y chromium chromium-driver; pip install -e '.[dev]')",
        allow_module_level=True,
    )

#: Browser flags: headless, no network of its own, a fresh profile each run.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")


@pytest.fixture
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="leadflow-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(10)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


_READ_ROW = """
const row = document.getElementById(arguments[0]);
if (!row) { return null; }
return {section: row.closest("section").id, status: row.dataset.status, text: row.innerText,
        links: Array.from(row.querySelectorAll(".reports a")).map(a => a.href)};
"""


def _row(driver: Any, file_id: int) -> dict[str, Any] | None:
    """What a person reads in the page's row of a file (None while it is not shown).

    Read in one script, so a reload of the page cannot come between two reads.
    """
    try:
        found: dict[str, Any] | None = driver.execute_script(_READ_ROW, f"file-{file_id}")
    except WebDriverException:  # the page was reloading: read it again next time
        return None
    return found


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, ARTEFACTS / name)
    return path


async def test_a_person_watches_files_import_on_the_status_page(
    browser: Any, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(downloads)})
    # Imports slow enough to be seen: 2 rows per simulated second, 20 times real time, so
    # each upload of about 50 rows imports for more than a second.
    async with simulator(rows_per_second=2.0) as sim_url:
        settings = settings_for(make_settings, sim_url)
        async with running_window(settings, sim_url) as window:
            await asyncio.to_thread(browser.get, f"{window.url}/?refresh=1")
            assert "leadflow" in browser.title
            body = browser.find_element(By.TAG_NAME, "body").text
            assert "Running: importing normally." in body and "Files in flight (0)" in body

            write_leads(settings.paths.inbox / "spring-leads.csv", 200, tag="s")
            write_leads(settings.paths.inbox / "fair-leads.csv", 30, bad_every=6, tag="f")
            ids: dict[str, int] = {}

            async def claimed() -> bool:
                _, data = await window.json("/api/status")
                ids.update({f["name"]: f["id"] for f in data["files"]})
                return len(ids) == 2
            await wait_until(claimed)
            spring, fair = ids["spring-leads.csv"], ids["fair-leads.csv"]
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 40
            while True:
                row = await asyncio.to_thread(_row, browser, spring)
                if row is not None and (not seen or seen[-1] != row):
                    seen.append(row)
                    if row["section"] == "in-flight" and len(seen) == 2:
                        await asyncio.to_thread(_shot, browser, tmp_path, "status-page-progress.png")
                if row is not None and row["section"] == "finished":
                    other = await asyncio.to_thread(_row, browser, fair)
                    if other is not None and other["section"] == "finished":
                        break
                assert time.monotonic() < deadline, f"the page never showed the end: {seen}"
                await asyncio.sleep(0.1)  # the page reloads itself every second
            shot = await asyncio.to_thread(_shot, browser, tmp_path, "status-page.png")
            assert shot.stat().st_size > 10_000

            # The file appeared while in flight and showed its uploads going through.
            flying = [r for r in seen if r["section"] == "in-flight"]
            assert flying and "spring-leads.csv" in flying[0]["text"]
            counts = [re.search(r"(\d+) of (\d+) uploads done", r["text"]) for r in flying]
            done = [(int(m.group(1)), int(m.group(2))) for m in counts if m]
            assert any(total >= 4 and 0 <= d < total for d, total in done), flying
            assert len({d for d, _ in done}) >= 2, f"no progress seen: {flying}"
            assert any("imported" in r["text"] for r in flying)

            final = seen[-1]
            assert final["status"] == "complete" and "complete" in final["text"]
            assert "200 imported, 0 failed, 0 rejected of 200" in final["text"]
            partial = await asyncio.to_thread(_row, browser, fair)
            assert partial is not None and partial["status"] == "partial"

            # The links work: report.json of the complete file, failures.csv of the other.
            report = next(h for h in final["links"] if h.endswith("/report.json"))
            failures = next(h for h in partial["links"] if h.endswith("/failures.csv"))
            await asyncio.to_thread(browser.get, report)  # the person follows the link
            assert '"status": "complete"' in browser.find_element(By.TAG_NAME, "body").text
            # ... and the one to failures.csv, which downloads the file.
            await asyncio.to_thread(browser.get, failures)
            folder = settings.paths.results
            on_disk = next(folder.glob("fair-leads.csv.*/failures.csv")).read_bytes()
            downloaded = downloads / f"leadflow-{fair}-failures.csv"

            async def arrived() -> bool:
                return downloaded.is_file() and downloaded.read_bytes() == on_disk
            await wait_until(arrived, 10)
            assert on_disk.count(b"\r\n") == 6  # the header and the 5 rows without an email
