"""Fleet health through the API: real statuses and last wills, filters, confinement."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg

from api.auth import Role
from hemhub.contract import DeviceHealth, DeviceProfile, HubStatus, topic_status
from hemhub.settings import MqttTarget, Settings
from ingest import registry
from ingest.pipeline import StatusUpdate, store
from tests.api.helpers import Seed, audit_rows, bearer
from tests.factories import unique_hub_id

CUFF = "C0:FF:EE:00:00:01"


def online(hub: str, *, battery: int | None = 80, **fields: Any) -> HubStatus:
    devices = [
        DeviceHealth(
            address=CUFF,
            profile=DeviceProfile.BLOOD_PRESSURE,
            battery_level=battery,
            rssi=-61,
            firmware="1.2",
            last_seen_at=datetime.now(UTC),
        )
    ]
    return HubStatus(
        hub_id=hub,
        online=True,
        software_version="3.0.0",
        outbox_depth=fields.pop("outbox_depth", 2),
        outbox_oldest_age_s=5.0,
        disk_free_bytes=1 << 30,
        config_version=4,
        devices=devices,
        **fields,
    )


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def hub_state(database_url: str, hub: str) -> bool | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT online FROM hubs WHERE id = %s", (hub,)).fetchone()
    return None if row is None else row[0]


async def test_health_follows_a_real_status_and_last_will(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, ingesting_hub: str, mqtt_url: str
) -> None:
    hub = ingesting_hub
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        registry.register_hub(conn, hub, "a")
    target = MqttTarget(mqtt_url)
    will = HubStatus(hub_id=hub, online=False, software_version="3.0.0")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=hub)
    c.will_set(topic_status(hub), will.model_dump_json(), qos=1, retain=True)
    c.connect(target.host, target.port, keepalive=30)
    c.loop_start()
    sent = c.publish(topic_status(hub), online(hub).model_dump_json(), qos=1, retain=True)
    sent.wait_for_publish(5)
    wait_for(lambda: hub_state(settings.database_url or "", hub) is True, "online status")
    headers = bearer(settings, Role.HMC, "a", "hmc-1")
    got = (await client.get(f"/api/v1/fleet/hubs/{hub}", headers=headers)).json()
    assert got["hub"]["state"] == "online"
    assert got["hub"]["software_version"] == "3.0.0"
    assert (got["hub"]["outbox_depth"], got["hub"]["config_version"]) == (2, 4)
    assert got["hub"]["devices"] == 1 and got["hub"]["lowest_battery"] == 80
    (dev,) = got["device_health"]
    assert (dev["address"], dev["battery_level"], dev["rssi"], dev["firmware"]) == (
        CUFF,
        80,
        -61,
        "1.2",
    )
    # The hub vanishes without a DISCONNECT: the broker publishes its last will.
    c.loop_stop()
    sock = c.socket()
    assert sock is not None
    sock.close()
    wait_for(lambda: hub_state(settings.database_url or "", hub) is False, "last will")
    got = (await client.get(f"/api/v1/fleet/hubs/{hub}", headers=headers)).json()
    assert got["hub"]["state"] == "offline"
    assert got["hub"]["last_seen_at"] < got["hub"]["state_since"]
    assert got["hub"]["outbox_depth"] == 2  # as last reported online
    assert len(got["device_health"]) == 1  # the devices as last reported
    history = (await client.get(f"/api/v1/fleet/hubs/{hub}/history", headers=headers)).json()
    assert [e["reasons"] for e in history["entries"]] == [["offline"], ["online"]]
    assert "devices" not in history["entries"][1]["snapshot"]


def _fleet(database_url: str) -> dict[str, str]:
    """Hubs of tenant a in every state, and one of tenant b."""
    now = datetime.now(UTC)
    hubs = {name: unique_hub_id(name) for name in ("up", "low", "down", "gone", "never", "b")}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, hub in hubs.items():
            registry.register_hub(conn, hub, "b" if name == "b" else "a")
        statuses = [
            StatusUpdate(online(hubs["up"]), now),
            StatusUpdate(online(hubs["low"], battery=12), now),
            StatusUpdate(online(hubs["b"], battery=5), now),
        ]
        store(conn, [], statuses=statuses)
        for name, since in (("down", timedelta(hours=2)), ("gone", timedelta(hours=30))):
            store(conn, [], statuses=[StatusUpdate(online(hubs[name]), now - since)])
            off = HubStatus(hub_id=hubs[name], online=False)
            store(conn, [], statuses=[StatusUpdate(off, now - since + timedelta(seconds=1))])
    return hubs


async def _ids(client: httpx.AsyncClient, headers: dict[str, str], query: str = "") -> list[str]:
    r = await client.get(f"/api/v1/fleet/hubs{query}", headers=headers)
    assert r.status_code == 200, r.text
    return sorted(h["hub_id"] for h in r.json()["hubs"])


async def test_filters(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    hubs = _fleet(settings.database_url or "")
    h = bearer(settings, Role.HMC, "a", "hmc-1")
    mine = sorted(v for k, v in hubs.items() if k != "b")
    assert await _ids(client, h) == mine
    assert await _ids(client, h, "?state=online") == sorted([hubs["up"], hubs["low"]])
    assert await _ids(client, h, "?state=offline") == sorted([hubs["down"], hubs["gone"]])
    assert await _ids(client, h, "?state=unknown") == [hubs["never"]]
    assert await _ids(client, h, "?offline_for_hours=24") == [hubs["gone"]]
    assert await _ids(client, h, "?battery_low=true") == [hubs["low"]]
    assert await _ids(client, h, "?battery_low=true&battery_at_most=90") == sorted(
        [hubs["up"], hubs["low"], hubs["down"], hubs["gone"]]
    )
    # Pages by hub id, each saying how many matched.
    first = (await client.get("/api/v1/fleet/hubs?limit=2", headers=h)).json()
    assert first["total"] == 5 and len(first["hubs"]) == 2
    rest = (
        await client.get(f"/api/v1/fleet/hubs?limit=10&after={first['next_after']}", headers=h)
    ).json()
    assert [x["hub_id"] for x in first["hubs"] + rest["hubs"]] == mine
    assert rest["next_after"] is None
    # Bad filters are a 422 with the reason, not a 500.
    for bad in ("?state=asleep", "?offline_for_hours=-1", "?battery_at_most=101", "?after=%00"):
        r = await client.get(f"/api/v1/fleet/hubs{bad}", headers=h)
        assert r.status_code == 422, (bad, r.text)


async def test_care_unit_filter(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    hubs = _fleet(settings.database_url or "")
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO care_units (tenant_id, name) VALUES ('a', 'Norr') RETURNING id"
        ).fetchone()
        assert row is not None
        unit = row[0]
        conn.execute("UPDATE patients SET care_unit_id = %s WHERE id = %s", (unit, seed.alice))
        (device_id,) = conn.execute(
            "SELECT device_id FROM device_assignments WHERE patient_id = %s", (seed.alice,)
        ).fetchone() or (None,)
        registry.allow_device(conn, hubs["low"], device_id, datetime.now(UTC) - timedelta(days=1))
    h = bearer(settings, Role.HMC, "a", "hmc-1")
    assert await _ids(client, h, f"?care_unit={unit}") == [hubs["low"]]
    assert await _ids(client, h, f"?care_unit={uuid.uuid4()}") == []
    # A token confined to other units sees none of the hubs of this one.
    other = bearer(settings, Role.HMC, "a", "hmc-2", care_units=[uuid.uuid4()])
    assert await _ids(client, other) == []
    scoped = bearer(settings, Role.HMC, "a", "hmc-3", care_units=[unit])
    assert await _ids(client, scoped) == [hubs["low"]]
    r = await client.get(f"/api/v1/fleet/hubs/{hubs['up']}", headers=scoped)
    assert r.status_code == 404


async def test_confined_to_principal_and_audited(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    hubs = _fleet(settings.database_url or "")
    a = bearer(settings, Role.HMC, "a", "hmc-1")
    b = bearer(settings, Role.ADMIN, "b", "admin-b")
    assert await _ids(client, b) == [hubs["b"]]
    for path in (f"/api/v1/fleet/hubs/{hubs['b']}", f"/api/v1/fleet/hubs/{hubs['b']}/history"):
        assert (await client.get(path, headers=a)).status_code == 404
    nurse = bearer(settings, Role.NURSE, "a")
    assert (await client.get("/api/v1/fleet/hubs", headers=nurse)).status_code == 403
    assert (await client.get(f"/api/v1/fleet/hubs/{hubs['up']}", headers=nurse)).status_code == 403
    rows = [r for r in audit_rows(settings.database_url or "") if r[3].startswith("fleet.")]
    actions = [(r[0], r[3], (r[6] or {}).get("outcome")) for r in rows]
    assert ("admin-b", "fleet.hubs", None) in actions
    assert ("hmc-1", "fleet.hub", "not_found") in actions
    assert ("hmc-1", "fleet.hub_history", "not_found") in actions


async def test_device_history(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    hub = unique_hub_id()
    now = datetime.now(UTC)
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        registry.register_hub(conn, hub, "a")
        device_id = conn.execute(
            "INSERT INTO devices (stable_id, address, owner_tenant_id) VALUES (%s, %s, 'a')"
            " RETURNING id",
            (f"cuff-{hub}", CUFF),
        ).fetchone()[0]  # type: ignore[index]
        registry.allow_device(conn, hub, device_id, now - timedelta(days=1))
        store(conn, [], statuses=[StatusUpdate(online(hub), now - timedelta(minutes=2))])
        store(conn, [], statuses=[StatusUpdate(online(hub, battery=10), now)])
    a = bearer(settings, Role.HMC, "a", "hmc-1")
    got = (await client.get(f"/api/v1/fleet/devices/{device_id}/health-history", headers=a)).json()
    assert [e["reasons"] for e in got["entries"]] == [["battery_low"], ["new"]]
    assert got["entries"][0]["snapshot"]["battery_level"] == 10
    b = bearer(settings, Role.HMC, "b", "hmc-b")
    r = await client.get(f"/api/v1/fleet/devices/{device_id}/health-history", headers=b)
    assert r.status_code == 404


async def test_metrics_endpoint(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    _fleet(settings.database_url or "")
    h = bearer(settings, Role.HMC, "a", "hmc-1")
    assert (await client.get("/api/v1/fleet/hubs", headers=h)).status_code == 200
    assert (await client.get("/api/v1/fleet/hubs?state=asleep", headers=h)).status_code == 422
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    # Hubs by their last status: up, low and b online; down and gone offline; never unknown.
    assert 'hemhub_hubs{state="online"} 3.0' in lines
    assert 'hemhub_hubs{state="offline"} 2.0' in lines
    assert 'hemhub_hubs{state="unknown"} 1.0' in lines
    route = 'method="GET",route="/api/v1/fleet/hubs"'
    assert any(x.startswith(f'hemhub_api_requests_total{{{route},status="422"}}') for x in lines)
    assert any(x.startswith(f"hemhub_api_request_seconds_count{{{route}}}") for x in lines)
    assert "/api/v1/fleet/hubs/" not in r.text.replace("/api/v1/fleet/hubs/{hub_id}", "")
