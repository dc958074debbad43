"""A failing browser test leaves a screenshot (and the browser console) behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.web.conftest import CHROMIUM, require_chromium

ROOT = Path(__file__).parents[2]

FAILING_TEST = """
def test_fails_on_purpose(browser_page):
    browser_page.set_content("<main><h1>on purpose</h1></main>")
    browser_page.evaluate("console.log('a line of the console')")
    assert browser_page.locator("h1").inner_text() == "something else"
"""


def test_a_failing_browser_test_saves_a_screenshot(tmp_path: Path) -> None:
    require_chromium()
    (tmp_path / "conftest.py").write_text(
        "from tests.web.conftest import (  # noqa: F401\n"
        "    browser_page, chromium_browser, pytest_runtest_makereport)\n"
    )
    (tmp_path / "test_on_purpose.py").write_text(FAILING_TEST)
    results = tmp_path / "results"
    env = {**os.environ, "HEMHUB_TEST_RESULTS": str(results), "HEMHUB_CHROMIUM": str(CHROMIUM)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            str(tmp_path / "test_on_purpose.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "1 failed" in run.stdout
    shots = list(results.glob("*test_fails_on_purpose.png"))
    assert len(shots) == 1, run.stdout[-3000:]
    assert shots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = shots[0].with_name(shots[0].name.replace(".png", ".console.txt")).read_text()
    assert "a line of the console" in console
