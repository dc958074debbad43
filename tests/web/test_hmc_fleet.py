"""The HMC technician's fleet pages in real Chromium against a real `hemhub api` with the
seeded principals: the overview lists the principal's hubs with what their statuses say,
a hub's page shows its devices, and a technician of principal B never sees principal
A's hubs or devices (not in the lists, not by a typed address)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from playwright.sync_api import expect

from hemhub.contract import (
    DeviceHealth,
    DeviceIdentity,
    DeviceProfile,
    HubStatus,
    topic_readings,
    topic_status,
)
from hemhub.settings import MqttTarget
from tests.factories import batch, bp_reading
from tests.web.conftest import WebStack

I18N = Path(__file__).resolve().parents[2] / "api" / "static" / "i18n"


def texts(page: Any) -> Callable[..., str]:
    """The words the page shows for a key, in the page's language (sv or en)."""
    lang = page.evaluate("document.documentElement.lang") or "sv"
    words = {
        **json.loads((I18N / f"core.{lang}.json").read_text()),
        **json.loads((I18N / f"hmc.{lang}.json").read_text()),
    }

    def t(key: str, **vars: object) -> str:
        text = str(words[key])
        for name, value in vars.items():
            text = text.replace("{" + name + "}", str(value))
        return text

    return t


def publish(mqtt_url: str, topic: str, payload: str) -> None:
    """One message as a hub sends it, not retained (the broker is shared)."""
    target = MqttTarget(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def publish_status(mqtt_url: str, status: HubStatus) -> None:
    publish(mqtt_url, topic_status(status.hub_id), status.model_dump_json())


def wait_online(database_url: str, hub_id: str, page: Any) -> None:
    for _ in range(100):
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT online FROM hubs WHERE id = %s", (hub_id,)).fetchone()
        if row and row[0]:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"ingest did not store the status of {hub_id}")


def test_the_fleet_overview_lists_the_principals_hubs_and_a_hubs_page_its_devices(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    mine = [h.hub_id for h in web_stack.homes["demo"]]
    theirs = [h.hub_id for h in web_stack.homes["demo-b"]]
    first = web_stack.homes["demo"][0]
    # One hub reports: online, a queue of 3, software 2.4.1, its cuff at 15 %.
    cuff = first.scenario.devices[0]
    publish_status(
        web_stack.mqtt_url,
        HubStatus(
            hub_id=first.hub_id,
            online=True,
            at=datetime.now(UTC),
            software_version="2.4.1",
            outbox_depth=3,
            outbox_oldest_age_s=600,
            devices=[
                DeviceHealth(
                    address=cuff.address,
                    profile=DeviceProfile.BLOOD_PRESSURE,
                    battery_level=15,
                    rssi=-70,
                )
            ],
        ),
    )
    wait_online(web_stack.database_url, first.hub_id, page)

    sign_in(page, "hmc-a")
    t = texts(page)
    # The HMC's home is the fleet.
    expect(page.locator("#page-title")).to_have_text(t("hmc.nav.fleet"))
    table = page.locator("table").first
    for hub_id in mine:
        expect(table.get_by_role("link", name=hub_id, exact=True)).to_be_visible()
    for hub_id in theirs:
        expect(page.get_by_text(hub_id)).to_have_count(0)
    row = table.locator("tr", has=page.get_by_role("link", name=first.hub_id, exact=True))
    expect(row).to_contain_text(t("code.hub_connection.online"))
    expect(row).to_contain_text("2.4.1")
    expect(row).to_contain_text("15 %")
    expect(page.locator(".hmc-totals")).to_contain_text(t("code.hub_connection.online"))

    # Filter: only online hubs.
    page.get_by_label(t("hmc.filter.connection"), exact=True).select_option("online")
    expect(page.locator("table").first.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name=first.hub_id, exact=True)).to_be_visible()

    # The hub's page: its health, its devices (in words, no codes), its life.
    page.get_by_role("link", name=first.hub_id, exact=True).click()
    expect(page.locator("#page-title")).to_have_text(t("hmc.hub.title", id=first.hub_id))
    devices = page.locator("section", has=page.get_by_role("heading", name=t("hmc.hub.devices")))
    expect(devices).to_contain_text(t("code.device_profile.blood_pressure"))
    expect(devices).to_contain_text(cuff.address)
    life = page.locator("section", has=page.get_by_role("heading", name=t("hmc.hub.life")))
    expect(life).to_contain_text(t("code.life_state.assigned"))
    expect(life).to_contain_text(first.resident)

    # In English and back: the same page in the other language's words.
    other = "en" if page.evaluate("document.documentElement.lang") == "sv" else "sv"
    page.locator(f".language-switch button[data-lang={other}]").click()
    expect(page.locator("html")).to_have_attribute("lang", other)
    t2 = texts(page)
    expect(page.locator("#page-title")).to_have_text(t2("hmc.hub.title", id=first.hub_id))
    expect(page.get_by_role("heading", name=t2("hmc.hub.devices"))).to_be_visible()
    expect(page.locator("main")).to_contain_text(t2("code.device_profile.blood_pressure"))
    page.locator(f".language-switch button[data-lang={'sv' if other == 'en' else 'en'}]").click()
    expect(page.get_by_role("heading", name=t("hmc.hub.devices"))).to_be_visible()
    problems = [m for m in page.console_messages_seen if "pageerror" in m or "i18n:" in m]
    assert not problems, problems


def test_an_hmc_of_principal_b_never_sees_principal_as_hubs_or_devices(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    a_hub = web_stack.homes["demo"][0].hub_id
    with psycopg.connect(web_stack.database_url) as conn:
        row = conn.execute(
            "SELECT id, serial FROM devices WHERE owner_tenant_id = 'demo' LIMIT 1"
        ).fetchone()
    assert row is not None
    a_device, a_serial = row

    sign_in(page, "hmc-b")
    t = texts(page)
    for hub_id in (h.hub_id for h in web_stack.homes["demo-b"]):
        expect(page.get_by_role("link", name=hub_id, exact=True)).to_be_visible()
    expect(page.get_by_text(a_hub)).to_have_count(0)

    page.goto(f"{web_stack.base_url}/#/inventory")
    expect(page.locator("#page-title")).to_have_text(t("hmc.nav.inventory"))
    expect(page.locator("table").first).to_be_visible()
    expect(page.get_by_text(a_serial, exact=True)).to_have_count(0)

    # Typed addresses of A's hub and device: "not found", as an unknown one, no data.
    for path in (f"/#/fleet/hubs/{a_hub}", f"/#/inventory/devices/{a_device}"):
        page.goto(web_stack.base_url + path)
        error = page.locator(".page-body .message-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text(t("core.error.notFound"))
        expect(page.get_by_text(a_serial, exact=True)).to_have_count(0)


def test_readings_of_a_principals_device_sent_by_another_principals_hub_are_shown_as_stray(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    a_home, b_home = web_stack.homes["demo"][0], web_stack.homes["demo-b"][0]
    address = a_home.scenario.devices[0].address.upper()
    with psycopg.connect(web_stack.database_url) as conn:
        row = conn.execute(
            "SELECT manufacturer, model, serial FROM devices WHERE upper(address) = %s",
            (address,),
        ).fetchone()
    assert row is not None
    manufacturer, model, serial = row
    # B's hub sends a reading of A's cuff: quarantined, no resident, a security event.
    cuff = DeviceIdentity(address=address, manufacturer=manufacturer, model=model, serial=serial)
    publish(
        web_stack.mqtt_url,
        topic_readings(b_home.hub_id),
        batch(b_home.hub_id, bp_reading(dev=cuff, salt="stray")).model_dump_json(),
    )
    for _ in range(100):
        with psycopg.connect(web_stack.database_url) as conn:
            stored = conn.execute(
                "SELECT quarantine FROM readings WHERE hub_id = %s", (b_home.hub_id,)
            ).fetchall()
        if stored:
            break
        page.wait_for_timeout(100)
    assert stored == [("other_principal",)]

    sign_in(page, "hmc-a")
    t = texts(page)
    page.get_by_role("link", name=t("hmc.nav.readings")).click()
    counts = page.locator(
        "section", has=page.get_by_role("heading", name=t("hmc.readings.unattributed"))
    )
    row_of_cuff = counts.locator("tbody tr", has_text=serial)
    expect(row_of_cuff).to_contain_text(b_home.hub_id)
    expect(row_of_cuff).to_contain_text(t("code.quarantine.other_principal"))
    expect(row_of_cuff.locator("td.number")).to_have_text("1")
    events = page.locator(
        "section", has=page.get_by_role("heading", name=t("hmc.readings.security"))
    )
    expect(events.locator("tbody tr")).to_have_count(1)
    expect(events).to_contain_text("demo-b")
    # No value of the reading is shown anywhere (120/80 mmHg).
    expect(page.locator("main")).not_to_contain_text("120")

    # B's technician sees nothing of it: the device is not B's (its own browser).
    context_b = page.context.browser.new_context()
    try:
        page_b = context_b.new_page()
        sign_in(page_b, "hmc-b")
        page_b.goto(f"{web_stack.base_url}/#/readings")
        expect(page_b.locator(".hmc-empty").first).to_be_visible()
        expect(page_b.locator("main")).not_to_contain_text(serial)
    finally:
        context_b.close()


def test_the_follow_up_figures_in_words_and_as_the_apis_csv(
    web_stack: WebStack, browser_page: Any, sign_in: Callable[[Any, str], Any]
) -> None:
    page = browser_page
    sign_in(page, "hmc-a")
    t = texts(page)
    page.get_by_role("link", name=t("hmc.nav.figures")).click()
    # Devices per product and state, now: the seeded cuffs are all lent out.
    table = page.locator(".page-body table")
    expect(table.locator("th").first).to_have_text(t("hmc.figures.col.kind"))
    cuffs = table.locator("tbody tr", has_text=t("code.product_kind.blood_pressure"))
    expect(cuffs.locator("td").nth(3)).to_have_text(str(len(web_stack.homes["demo"])))
    expect(cuffs.locator("td").nth(4)).to_have_text(str(len(web_stack.homes["demo"])))

    with page.expect_download() as got:
        page.get_by_role("button", name=t("hmc.action.download_csv")).click()
    download = got.value
    assert download.suggested_filename.startswith("hemhub-devices-")
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0].startswith("product_id,kind,manufacturer,model,devices,in_use")
    assert any(",blood_pressure," in line for line in lines[1:])

    # Another figure, by its name in words.
    page.get_by_label(t("hmc.figures.figure"), exact=True).select_option("readings-per-week")
    expect(page.get_by_role("heading", name=t("code.figure.readings-per-week"))).to_be_visible()
    expect(table.locator("th").first).to_have_text(t("hmc.figures.col.patient_id"))
