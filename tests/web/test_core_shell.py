"""The shell in Chromium: roles, languages, the live indicator, expiry, accessibility, 420 px."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.web.conftest import WebStack

#: axe-core impacts that fail a test (WCAG 2.1 AA rules included: contrast, names, ...).
BLOCKING_IMPACTS = {"serious", "critical"}


def _live(page: Any, state: str, timeout_ms: int = 30_000) -> None:
    page.locator(f"#live-status[data-live-status='{state}']").wait_for(timeout=timeout_ms)


def test_hmc_signs_in_with_its_role_and_a_live_indicator(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    sign_in(page, "hmc-a")
    assert page.locator(".who-role").inner_text() == "Hjälpmedelscentralen"
    _live(page, "live")  # no alert stream for HMC: the health check keeps it honest


def test_switch_to_english_and_back_is_remembered(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    sign_in(page, "nurse-a")
    assert page.evaluate("document.documentElement.lang") == "sv"
    assert page.locator("#sign-out").inner_text() == "Logga ut"
    page.locator("[data-lang=en]").click()
    page.locator("#sign-out", has_text="Sign out").wait_for()
    assert page.locator(".who-role").inner_text() == "Nurse"
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("[data-lang=en]").get_attribute("aria-pressed") == "true"
    page.reload()  # the choice is remembered
    page.locator("#sign-out", has_text="Sign out").wait_for()
    page.locator("[data-lang=sv]").click()
    page.locator("#sign-out", has_text="Logga ut").wait_for()
    assert page.locator(".who-role").inner_text() == "Sjuksköterska"


def test_time_zone_comes_from_the_principal(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    with psycopg.connect(web_stack.database_url, autocommit=True) as conn:
        conn.execute("UPDATE tenants SET time_zone = 'America/New_York' WHERE id = 'demo'")
    page = browser_page
    sign_in(page, "nurse-a")
    shown = page.evaluate(
        """async () => {
            const i18n = await import("/static/js/core/i18n.js");
            return [i18n.getTimeZone(), i18n.formatTime("2026-01-15T12:00:00Z"),
                    i18n.unit("mm[Hg]"), i18n.formatNumber(7.25, 1)];
        }"""
    )
    assert shown == ["America/New_York", "07:00", "mmHg", "7,3"]  # sv: decimal comma


def test_stale_indicator_when_the_api_stops_and_recovery_after_restart(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    sign_in(page, "nurse-a")
    _live(page, "live")
    # Count the catch-ups the pages are told to do (the same module instance as the app's).
    page.evaluate(
        """async () => {
            const live = await import("/static/js/core/live.js");
            window.resyncs = [];
            live.onLive("resync", (e) => window.resyncs.push(e.reason));
        }"""
    )
    web_stack.api.stop()
    _live(page, "stale")
    assert page.locator("#live-status").inner_text() == "Inaktuellt \u2013 återansluter"
    # A call while the server is down: a translated message, never "Failed to fetch".
    page.evaluate(
        """async () => {
            const {api} = await import("/static/js/core/api.js");
            try { await api("/api/v1/me"); } catch (e) { window.lastError = [e.status, e.message]; }
        }"""
    )
    status, message = page.evaluate("window.lastError")
    assert status == 0 and "Failed to fetch" not in message and "Servern kunde inte nås" in message

    web_stack.api.start()
    _live(page, "live")
    assert "reconnected" in page.evaluate("window.resyncs")  # pages catch up after the gap
    assert page.locator(".message-error").count() == 0
    assert "Failed to fetch" not in page.locator("body").inner_text()


def test_offline_browser_shows_offline_then_live(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    sign_in(page, "nurse-a")
    _live(page, "live")
    page.context.set_offline(True)
    _live(page, "offline")
    page.context.set_offline(False)
    _live(page, "live")


def test_expired_sign_in_returns_to_the_same_page(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    web_stack.api.stop()
    web_stack.api.env["HEMHUB_DEMO_TOKEN_TTL_S"] = "15"
    web_stack.api.start()
    with psycopg.connect(web_stack.database_url) as conn:
        row = conn.execute("SELECT id FROM patients WHERE tenant_id = 'demo' LIMIT 1").fetchone()
    assert row is not None
    route = f"#/residents/{row[0]}"
    page = browser_page
    sign_in(page, "nurse-a")
    page.evaluate(f"location.hash = '{route}'")
    page.locator("[data-key='core.signin.expired']").wait_for(timeout=40_000)
    page.locator("#sign-in").click()
    page.locator("input[name=login][value='nurse-a']").check()
    page.locator("#password").fill(web_stack.users["nurse-a"].password)
    page.locator("button[type=submit]").click()
    page.locator(".who-name").wait_for()
    page.wait_for_function("() => !new URLSearchParams(location.search).has('code')")
    assert page.url.endswith(route)


def _blocking(page: Any) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


@pytest.mark.parametrize("login", ["nurse-a", "hmc-a"])
def test_axe_finds_no_serious_violations(
    web_stack: WebStack, browser_page: Any, sign_in: Any, login: str
) -> None:
    page = browser_page
    page.goto(web_stack.base_url + "/")
    page.locator("#sign-in").wait_for()
    assert _blocking(page) == [], "the sign-in screen"
    page.locator("#sign-in").click()
    page.wait_for_url(re.compile(r".*/idp/authorize.*"))
    assert _blocking(page) == [], "the demo provider's page"
    sign_in(page, login)
    _live(page, "live")
    assert _blocking(page) == [], f"signed in as {login}"


def test_420_px_has_no_horizontal_page_overflow(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 420, "height": 900})
    sign_in(page, "admin")
    _live(page, "live")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, f"the page is {width} px wide at 420 px"


def test_keyboard_alone_reaches_sign_out_and_language(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    sign_in(page, "nurse-a")
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent")
        )
    assert "Hoppa till innehållet" in reached[0]
    assert "English" in reached and "sign-out" in reached
    page.locator("[data-lang=en]").focus()
    page.keyboard.press("Enter")
    page.locator("#sign-out", has_text="Sign out").wait_for()
