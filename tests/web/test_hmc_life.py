"""A device's life and a rollout driven from the HMC pages in real Chromium, checked in
the database: returning a device (its state, its recorded transition, the audit row),
and pausing a running campaign (its state, its reason, its event)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from playwright.sync_api import expect

from ingest import campaigns
from ingest.fleet_common import Actor
from tests.web.conftest import WebStack
from tests.web.test_hmc_fleet import texts

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def dialog(page: Any) -> Any:
    return page.locator("dialog.hmc-dialog[open]")


def test_an_hmc_returns_a_device_and_the_database_says_so(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    home = web_stack.homes["demo"][0]
    address = home.scenario.devices[0].address.upper()
    with psycopg.connect(web_stack.database_url) as conn:
        row = conn.execute(
            "SELECT id, serial, state FROM devices WHERE upper(address) = %s"
            " AND owner_tenant_id = 'demo'",
            (address,),
        ).fetchone()
    assert row is not None
    device_id, serial, state = row
    assert state == "assigned"

    sign_in(page, "hmc-a")
    t = texts(page)
    # Through the inventory, filtered to the devices lent out.
    page.get_by_role("link", name=t("hmc.nav.inventory")).click()
    page.get_by_label(t("hmc.filter.state"), exact=True).select_option("assigned")
    row_of_device = page.locator("tbody tr", has_text=serial)
    expect(row_of_device).to_contain_text(t("code.life_state.assigned"))
    expect(row_of_device).to_contain_text(home.resident)
    row_of_device.get_by_role("link").first.click()
    expect(page.locator(".hmc-state-line")).to_contain_text(t("code.life_state.assigned"))

    # Return, with a reason; the dialog asks first.
    page.get_by_role("button", name=t("hmc.action.return"), exact=True).click()
    expect(dialog(page)).to_contain_text(t("hmc.dialog.return.device_question"))
    # Until yesterday noon on the principal's clock (Europe/Stockholm), whatever the
    # browser's zone.
    noon = datetime.combine(
        datetime.now(STOCKHOLM).date() - timedelta(days=1), time(12, 0), STOCKHOLM
    )
    dialog(page).get_by_label(t("hmc.field.until"), exact=True).fill(
        noon.strftime("%Y-%m-%dT%H:%M")
    )
    dialog(page).get_by_label(t("hmc.field.reason"), exact=True).fill("moved to a care home")
    dialog(page).get_by_role("button", name=t("hmc.action.return"), exact=True).click()
    expect(dialog(page)).to_have_count(0)
    expect(page.locator(".message-success")).to_be_visible()
    expect(page.locator(".hmc-state-line")).to_contain_text(t("code.life_state.returned"))
    # What it may become now: quarantine, or retired as lost; no second return.
    expect(page.get_by_role("button", name=t("hmc.action.to.quarantine"))).to_be_visible()
    expect(page.get_by_role("button", name=t("hmc.action.return"), exact=True)).to_have_count(0)
    history = page.locator("section", has=page.get_by_role("heading", name=t("hmc.device.history")))
    expect(history).to_contain_text("moved to a care home")

    with psycopg.connect(web_stack.database_url) as conn:
        (now_state,) = conn.execute(
            "SELECT state FROM devices WHERE id = %s", (device_id,)
        ).fetchone() or (None,)
        change = conn.execute(
            "SELECT from_state, to_state, by_subject, reason FROM device_state_changes"
            " WHERE device_id = %s ORDER BY id DESC LIMIT 1",
            (device_id,),
        ).fetchone()
        ended = conn.execute(
            "SELECT ended_at FROM device_assignments WHERE device_id = %s", (device_id,)
        ).fetchall()
        audit = conn.execute(
            "SELECT subject, role, tenant_id, patient_id FROM audit_log"
            " WHERE action = 'device.return' AND resource = %s",
            (f"devices/{device_id}/return",),
        ).fetchall()
    assert now_state == "returned"
    assert ended == [(noon,)]
    assert change == ("assigned", "returned", "hmc@demo", "moved to a care home")
    assert [a[:3] for a in audit] == [("hmc@demo", "hmc", "demo")] and audit[0][3] is not None

    # To quarantine; back to stock is refused while the hub has not confirmed the wipe:
    # the API's reason is shown, and nothing changes.
    page.get_by_role("button", name=t("hmc.action.to.quarantine")).click()
    dialog(page).get_by_role("button", name=t("hmc.action.to.quarantine")).click()
    expect(page.locator(".hmc-state-line")).to_contain_text(t("code.life_state.quarantine"))
    page.get_by_role("button", name=t("hmc.action.to.in_stock")).click()
    expect(dialog(page)).to_contain_text(t("hmc.dialog.to.in_stock.unconfirmed"))
    dialog(page).get_by_role("button", name=t("hmc.action.to.in_stock")).click()
    refusal = page.locator(".message-error")
    expect(refusal).to_contain_text("data reset is not confirmed")
    expect(refusal).to_contain_text(t("hmc.error.action_failed", reason="").strip())
    expect(page.locator(".hmc-state-line")).to_contain_text(t("code.life_state.quarantine"))
    with psycopg.connect(web_stack.database_url) as conn:
        (final,) = conn.execute(
            "SELECT state FROM devices WHERE id = %s", (device_id,)
        ).fetchone() or (None,)
    assert final == "quarantine"


def _running_campaign(database_url: str, tenant: str) -> str:
    async def make() -> str:
        actor = Actor(f"hmc@{tenant}", tenant)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            artifact = await campaigns.register_artifact(
                conn, actor, kind="hub_software", version="9.9.0", target="hemhub-hub-9.9.0.tar"
            )
            campaign = await campaigns.create_campaign(
                conn,
                actor,
                name="Hub 9.9.0",
                artifact_id=artifact["id"],
                waves=[34, 100],
                max_parallel=10,
                confirm_timeout_s=3600,
                margin_failed_sessions=2,
                margin_error_readings=0,
            )
            await campaigns.start(conn, actor, campaign["id"])
            return str(campaign["id"])

    # Its own thread: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


def test_an_hmc_pauses_a_running_rollout(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    campaign_id = _running_campaign(web_stack.database_url, "demo")

    sign_in(page, "hmc-a")
    t = texts(page)
    page.get_by_role("link", name=t("hmc.nav.rollouts")).click()
    row = page.locator("tbody tr", has_text="Hub 9.9.0")
    expect(row).to_contain_text(t("code.campaign_state.running"))
    row.get_by_role("link", name="Hub 9.9.0").click()
    expect(page.locator("#page-title")).to_have_text(t("hmc.rollouts.title_of", name="Hub 9.9.0"))
    waves = page.locator(".hmc-waves li")
    expect(waves).to_have_count(2)
    expect(waves.first).to_have_attribute("aria-current", "step")
    gates = page.locator("section", has=page.get_by_role("heading", name=t("hmc.rollouts.gates")))
    expect(gates).to_contain_text(t("hmc.rollouts.at_most", n=2))
    targets = page.locator(
        "section", has=page.get_by_role("heading", name=t("hmc.rollouts.targets"))
    )
    expect(targets.locator("tbody tr")).to_have_count(len(web_stack.homes["demo"]))

    page.get_by_role("button", name=t("hmc.action.campaign.pause")).click()
    # The reason is required: an empty one is not sent.
    dialog(page).get_by_role("button", name=t("hmc.action.campaign.pause")).click()
    expect(dialog(page)).to_be_visible()
    dialog(page).get_by_label(t("hmc.field.reason"), exact=True).fill(
        "a hub went offline in wave 1"
    )
    dialog(page).get_by_role("button", name=t("hmc.action.campaign.pause")).click()
    expect(page.locator(".hmc-state-line")).to_contain_text(t("code.campaign_state.paused"))
    expect(page.locator(".hmc-paused")).to_contain_text("a hub went offline in wave 1")
    expect(page.get_by_role("button", name=t("hmc.action.campaign.resume"))).to_be_visible()
    events = page.locator("section", has=page.get_by_role("heading", name=t("hmc.rollouts.events")))
    expect(events).to_contain_text(t("code.campaign_event.paused"))

    with psycopg.connect(web_stack.database_url) as conn:
        state = conn.execute(
            "SELECT state, paused_reason FROM ota_campaigns WHERE id = %s", (campaign_id,)
        ).fetchone()
        event = conn.execute(
            "SELECT by_subject, detail->>'reason' FROM ota_campaign_events"
            " WHERE campaign_id = %s AND kind = 'paused'",
            (campaign_id,),
        ).fetchall()
        audit = conn.execute(
            "SELECT subject FROM audit_log WHERE action = 'ota.campaign.pause' AND resource = %s",
            (f"ota/campaigns/{campaign_id}",),
        ).fetchall()
    assert state == ("paused", "a hub went offline in wave 1")
    assert event == [("hmc@demo", "a hub went offline in wave 1")]
    assert audit == [("hmc@demo",)]


def test_an_hmc_registers_a_hub_and_issues_its_password_once(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    hub_id = f"{web_stack.hub_ids[0]}-new"
    sign_in(page, "hmc-a")
    t = texts(page)
    page.get_by_role("link", name=t("hmc.nav.catalogue")).click()
    page.get_by_role("button", name=t("hmc.action.register_hub")).click()
    dialog(page).get_by_label(t("hmc.field.hub_id"), exact=True).fill(hub_id)
    dialog(page).get_by_label(t("hmc.field.serial"), exact=True).fill("SN-NEW-1")
    dialog(page).get_by_role("button", name=t("hmc.action.register")).click()
    # Straight to its page: in stock, never reported, no password yet.
    expect(page.locator("#page-title")).to_have_text(t("hmc.hub.title", id=hub_id))
    expect(page.locator(".hmc-state-line")).to_contain_text(t("code.life_state.in_stock"))

    page.get_by_role("button", name=t("hmc.action.issue_credentials")).click()
    dialog(page).get_by_role("button", name=t("hmc.action.issue_credentials")).click()
    shown = page.locator(".hmc-once .hmc-secret")
    expect(shown).to_be_visible()
    password = shown.inner_text()
    assert len(password) >= 16
    # Only its hash is kept; the page now offers to revoke, not to issue again.
    expect(page.get_by_role("button", name=t("hmc.action.revoke_credentials"))).to_be_visible()
    expect(page.get_by_role("button", name=t("hmc.action.issue_credentials"))).to_have_count(0)

    with psycopg.connect(web_stack.database_url) as conn:
        hub = conn.execute(
            "SELECT tenant_id, state, serial FROM hubs WHERE id = %s", (hub_id,)
        ).fetchone()
        stored = conn.execute(
            "SELECT count(*) FROM hub_credentials WHERE hub_id = %s AND revoked_at IS NULL",
            (hub_id,),
        ).fetchone()
        leaked = conn.execute(
            "SELECT count(*) FROM hub_credentials WHERE hub_id = %s AND password_hash LIKE %s",
            (hub_id, f"%{password}%"),
        ).fetchone()
    assert hub == ("demo", "in_stock", "SN-NEW-1")
    assert stored == (1,) and leaked == (0,)

    # Place it at a resident's home: the residents are asked for when the dialog opens.
    resident = web_stack.homes["demo"][1].resident
    page.get_by_role("button", name=t("hmc.action.place")).click()
    dialog(page).get_by_label(t("hmc.field.resident"), exact=True).select_option(label=resident)
    dialog(page).get_by_role("button", name=t("hmc.action.place")).click()
    expect(page.locator(".hmc-state-line")).to_contain_text(t("code.life_state.assigned"))
    life = page.locator("section", has=page.get_by_role("heading", name=t("hmc.hub.life")))
    expect(life).to_contain_text(resident)
    with psycopg.connect(web_stack.database_url) as conn:
        placed = conn.execute(
            "SELECT h.state, p.display_name FROM hubs h JOIN hub_placements hp ON hp.hub_id = h.id"
            " JOIN patients p ON p.id = hp.patient_id WHERE h.id = %s AND hp.ended_at IS NULL",
            (hub_id,),
        ).fetchone()
    assert placed == ("assigned", resident)


def test_an_hmc_registers_a_resident_and_says_what_is_measured(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    sign_in(page, "hmc-a")
    t = texts(page)
    page.get_by_role("link", name=t("hmc.nav.registry")).click()
    for home in web_stack.homes["demo"]:
        expect(page.get_by_role("link", name=home.resident, exact=True)).to_be_visible()
    for home in web_stack.homes["demo-b"]:
        expect(page.get_by_text(home.resident, exact=True)).to_have_count(0)

    page.get_by_role("button", name=t("hmc.action.new_resident")).click()
    dialog(page).get_by_label(t("hmc.field.display_name"), exact=True).fill("Dora Ek")
    dialog(page).get_by_label(t("hmc.field.programme"), exact=True).select_option("copd")
    dialog(page).get_by_role("button", name=t("hmc.action.create")).click()
    expect(page.locator("#page-title")).to_have_text(t("hmc.registry.title_of", name="Dora Ek"))
    expect(page.locator("main")).to_contain_text(t("code.resident_programme.copd"))

    page.get_by_role("button", name=t("hmc.action.schedule")).click()
    dialog(page).get_by_label(t("hmc.field.measurement"), exact=True).select_option(
        "pulse_oximetry"
    )
    dialog(page).get_by_label(t("hmc.field.every"), exact=True).select_option("PT12H")
    dialog(page).get_by_role("button", name=t("hmc.action.save")).click()
    schedules = page.locator(
        "section", has=page.get_by_role("heading", name=t("hmc.registry.schedules"))
    )
    expect(schedules).to_contain_text(t("code.schedule_measurement.pulse_oximetry"))
    expect(schedules).to_contain_text(t("hmc.every.hours", n=12))

    with psycopg.connect(web_stack.database_url) as conn:
        resident = conn.execute(
            "SELECT id, tenant_id, programme FROM patients WHERE display_name = 'Dora Ek'"
        ).fetchone()
        assert resident is not None
        schedule = conn.execute(
            "SELECT measurement_type, every, active FROM monitoring_schedules"
            " WHERE patient_id = %s",
            (resident[0],),
        ).fetchall()
    assert resident[1:] == ("demo", "copd")
    assert [(s[0], s[1].total_seconds(), s[2]) for s in schedule] == [
        ("pulse_oximetry", 12 * 3600, True)
    ]
