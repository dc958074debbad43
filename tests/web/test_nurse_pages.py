"""The nurse's pages in real Chromium against a real `hemhub api` and ingest worker:
the triage queue updating live from a reading published over MQTT, acknowledging and
resolving with a note, a resident's charts holding the seeded points and bands.

`HEMHUB_SCREENSHOTS=1` also writes the README's two screenshots (docs/images/) from the
demo homes with four weeks of history.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from hemhub.demo import plan_homes
from tests.web.conftest import WebStack
from tests.web.nurse_history import bp, home_history, publish, publish_history, wait_stored

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def resident_id(database_url: str, name: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT id FROM patients WHERE display_name = %s", (name,)).fetchone()
    assert row is not None, name
    return str(row[0])


def test_a_critical_alert_published_over_mqtt_tops_the_queue_without_reload(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    sign_in(page, "nurse-a")
    page.locator("h1#page-title", has_text="Larm att hantera").wait_for()
    page.locator(".triage-counts").wait_for()
    # A normotensive resident's cuff reads 232/124: critical (>= 220/120).
    home = web_stack.homes["demo"][1]
    reading = bp(home.scenario.devices[0], datetime.now(UTC).replace(microsecond=0), 232, 124, 88)
    publish(web_stack.mqtt_url, home.hub_id, [reading])
    top = page.locator(".triage-table tbody tr").first
    top.locator(".triage-resident", has_text=home.resident).wait_for(timeout=30_000)
    assert top.get_attribute("data-severity") == "critical"
    assert "232/124 mmHg" in top.inner_text()  # units as a nurse writes them
    assert "mm[Hg]" not in page.locator("#page").inner_text()
    # The notice: a message in the alert area, and the tab's title.
    page.locator("#messages-alert .message", has_text=home.resident).wait_for()
    assert home.resident in page.title() or page.evaluate(
        "document.documentElement.dataset.criticalNotice || ''"
    )
    assert page.locator(".triage-counts li[data-severity=critical] .count").inner_text() == "1"
    # At 420 px the table scrolls in its own frame; the page itself never does.
    page.set_viewport_size({"width": 420, "height": 800})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 420


def test_ack_and_resolve_with_a_note(web_stack: WebStack, browser_page: Any, sign_in: Any) -> None:
    page = browser_page
    home = web_stack.homes["demo"][0]
    reading = bp(home.scenario.devices[0], datetime.now(UTC).replace(microsecond=0), 186, 112, 70)
    publish(web_stack.mqtt_url, home.hub_id, [reading])
    wait_stored(web_stack.database_url, [reading.idempotency_key])
    sign_in(page, "nurse-a")
    row = page.locator(".triage-table tbody tr", has_text=home.resident).first
    row.locator("a.triage-rule").click()
    page.locator(".alert-summary[data-status=open]").wait_for()
    assert "186/112 mmHg" in page.locator(".alert-reason").inner_text()
    page.locator("tr.reading-fired").wait_for()
    # The hub's unchecked clock is explained once, in plain words, under the readings.
    assert "internettid" in page.locator(".time-note").inner_text()
    page.locator("#ack-note").fill("Ringde Astrid, mår bra")
    page.locator("#ack-button").click()
    page.locator(".alert-summary[data-status=acknowledged]").wait_for()
    page.locator("#resolve-note").fill("Läkaren ändrade dosen")
    page.locator("#resolve-button").click()
    page.locator(".alert-summary[data-status=resolved]").wait_for()
    history = page.locator("ol.history")
    assert (
        history.locator("li[data-action=acknowledged] .note").inner_text()
        == "Ringde Astrid, mår bra"
    )
    assert history.locator("li[data-action=resolved] .note").inner_text() == "Läkaren ändrade dosen"
    assert (
        web_stack.users["nurse-a"].sub in history.locator("li[data-action=resolved]").inner_text()
    )
    # Gone from the queue.
    page.locator("nav a[data-path='/triage']").click()
    page.locator(".triage-counts").wait_for()
    assert page.locator(".triage-table tbody tr", has_text=home.resident).count() == 0


def test_a_residents_charts_hold_the_seeded_points_and_bands(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    home = web_stack.homes["demo"][1]  # a cuff and a scale (heart failure)
    now = datetime.now(UTC).replace(microsecond=0)
    readings = home_history(home, 20, now)
    publish(web_stack.mqtt_url, home.hub_id, readings)
    wait_stored(web_stack.database_url, [r.idempotency_key for r in readings])
    bp_count = sum(1 for r in readings if r.measurement_type == "blood_pressure")
    weights = [r for r in readings if r.measurement_type == "body_weight"]
    sign_in(page, "nurse-a")
    page.goto(
        f"{web_stack.base_url}/#/residents/{resident_id(web_stack.database_url, home.resident)}"
    )
    systolic = page.locator("#chart-systolic")
    systolic.wait_for()
    assert systolic.locator(".series-systolic circle.point").count() == bp_count
    assert int(systolic.get_attribute("data-points") or 0) == bp_count
    # The programme's limits drawn behind the line, with their words.
    assert systolic.locator("rect.band-high").count() >= 1
    assert "Hög" in (systolic.locator("rect.band-high title").first.text_content() or "")
    assert page.locator("#chart-weight .series-weight circle.point").count() == len(weights)
    assert "+2,4" in page.locator(".weight-change").inner_text()  # Swedish decimal comma
    # An accessible alternative: the SVG is an image with a title and a description, and a table.
    svg = systolic.locator("svg")
    assert svg.get_attribute("role") == "img"
    assert "punkter" in (svg.locator("desc").text_content() or "")
    systolic.locator("summary").click()
    assert systolic.locator("tbody tr").count() == bp_count
    # 7 days: fewer points, the same page.
    page.locator(".period-switch button[data-days='7']").click()
    page.wait_for_function(
        f"() => Number(document.querySelector('#chart-systolic')?.dataset.points) < {bp_count}"
    )
    assert (
        page.locator(".period-switch button[data-days='7']").get_attribute("aria-pressed") == "true"
    )
    # In English: words and numbers follow the language.
    page.locator(".language-switch button[data-lang=en]").click()
    page.locator("#chart-systolic figcaption", has_text="Systolic (mmHg)").wait_for()
    assert "+2.4" in page.locator(".weight-change").inner_text()


def test_another_principals_nurse_cannot_open_the_resident(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    home = web_stack.homes["demo"][0]
    sign_in(page, "nurse-b")
    page.goto(
        f"{web_stack.base_url}/#/residents/{resident_id(web_stack.database_url, home.resident)}"
    )
    page.locator("#messages-alert .message").wait_for()
    assert page.locator("#chart-systolic").count() == 0
    assert home.resident not in page.locator("#page").inner_text()


def test_readme_screenshots(
    web_stack: WebStack, browser_page: Any, sign_in: Any, tmp_path: Path
) -> None:
    """The README's two pictures from the demo homes: into docs/images/ with
    HEMHUB_SCREENSHOTS=1 (then commit them), else into a temporary folder."""
    images = IMAGES if os.environ.get("HEMHUB_SCREENSHOTS") == "1" else tmp_path
    page = browser_page
    publish_history(web_stack.mqtt_url, web_stack.database_url, web_stack.homes["demo"], days=28)
    images.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1200, "height": 760})
    sign_in(page, "nurse-a")
    page.locator(".triage-table tbody tr").first.wait_for()
    page.wait_for_timeout(3000)  # the arrival highlight fades before the picture
    page.screenshot(path=str(images / "nurse-triage.png"))
    home = web_stack.homes["demo"][0]  # high blood pressure: its limits and alerts show
    page.goto(
        f"{web_stack.base_url}/#/residents/{resident_id(web_stack.database_url, home.resident)}"
    )
    page.locator("#chart-systolic .marker").first.wait_for()
    page.set_viewport_size({"width": 1200, "height": 1250})
    page.screenshot(path=str(images / "nurse-resident-charts.png"))
    for name in ("nurse-triage.png", "nurse-resident-charts.png"):
        assert (images / name).stat().st_size > 10_000


def test_history_is_made_of_the_demo_homes_days() -> None:
    """The history helper itself: every home's readings within its devices' assignment."""
    now = datetime.now(UTC)
    for home in plan_homes(5):
        readings = home_history(home, 28, now)
        assert readings and all(now - timedelta(days=29) < r.measured_at < now for r in readings)
        assert len({r.idempotency_key for r in readings}) == len(readings)
    assert re.fullmatch(r"[0-9a-f]{64}", readings[0].idempotency_key)


def test_axe_finds_no_serious_violations_on_the_nurses_pages(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    def blocking() -> list[str]:
        results = Axe().run(page)
        return [
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]

    page = browser_page
    publish_history(web_stack.mqtt_url, web_stack.database_url, web_stack.homes["demo"], days=10)
    sign_in(page, "nurse-a")
    page.locator(".triage-table tbody tr").first.wait_for()
    page.wait_for_timeout(3000)  # the arrival highlight has faded
    assert blocking() == [], "triage"
    page.locator(".triage-table a.triage-rule").first.click()
    page.locator(".alert-summary").wait_for()
    assert blocking() == [], "an alert"
    page.locator(".facts a").click()
    page.locator("#chart-systolic").wait_for()
    page.locator("#chart-systolic summary").click()
    assert blocking() == [], "a resident"
    page.locator(".resident-facts a").click()
    page.locator(".thresholds-table").wait_for()
    assert blocking() == [], "thresholds"
