"""The HMC's fleet through the API: products, inventory, the device's life (409s with the
reason), hubs with credentials and placement, the versioned configuration, roles,
confinement to the principal, and the audit of every change."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role
from hemhub.contract import (
    CommandKind,
    CommandOutcome,
    CommandResult,
    DeviceIdentity,
    HubConfig,
)
from hemhub.settings import Settings
from ingest import commands, hub_credentials, registry
from tests.api.helpers import NOW, Seed, audit_rows, bearer


@pytest.fixture
def db(database_url: str, seed: Seed) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def hmc(settings: Settings, tenant: str = "a") -> dict[str, str]:
    return bearer(settings, Role.HMC, tenant, f"hmc@{tenant}")


def iso(delta: timedelta) -> str:
    return (NOW + delta).isoformat()


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def cuff_product(client: httpx.AsyncClient, h: dict[str, str]) -> str:
    body = {"kind": "blood_pressure", "manufacturer": "Omron", "model": "BP7150"}
    product = await ok(await client.post("/api/v1/products", headers=h, json=body), 201)
    assert product["profiles"] == ["blood_pressure"] and product["quirks"] == {}
    return str(product["id"])


async def a_hub(client: httpx.AsyncClient, h: dict[str, str], hub_id: str = "hub-a1") -> None:
    await ok(await client.post("/api/v1/hubs", headers=h, json={"id": hub_id}), 201)


async def a_device(
    client: httpx.AsyncClient, h: dict[str, str], product: str, serial: str = "SN-9"
) -> str:
    body = {"product_id": product, "serial": serial, "address": "c0:11:22:33:44:99"}
    device = await ok(await client.post("/api/v1/devices", headers=h, json=body), 201)
    assert device["state"] == "in_stock" and device["stable_id"] == f"Omron|BP7150|{serial}"
    return str(device["id"])


async def test_products_catalogue(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    h = hmc(settings)
    await cuff_product(client, h)
    r = await client.post(
        "/api/v1/products",
        headers=h,
        json={"kind": "blood_pressure", "manufacturer": "Omron", "model": "BP7150"},
    )
    assert r.status_code == 409 and "already" in r.json()["detail"]
    glucose = {
        "kind": "glucose",
        "manufacturer": "Roche",
        "model": "Guide",
        "quirks": {"bond": True},
        "firmware_line": "2.x",
    }
    await ok(await client.post("/api/v1/products", headers=h, json=glucose), 201)
    for bad in (
        {"kind": "toaster", "manufacturer": "x", "model": "y"},
        {"kind": "glucose", "manufacturer": "", "model": "y"},
        {"kind": "glucose", "manufacturer": "x", "model": "y", "profiles": ["toaster"]},
    ):
        assert (await client.post("/api/v1/products", headers=h, json=bad)).status_code == 422
    names = [p["model"] for p in await ok(await client.get("/api/v1/products", headers=h))]
    assert names == ["BP7150", "Guide"]
    # another principal has a catalogue of its own
    assert await ok(await client.get("/api/v1/products", headers=hmc(settings, "b"))) == []


async def test_registration_meets_a_device_ingest_saw(
    client: httpx.AsyncClient, settings: Settings, db: psycopg.Connection[Any]
) -> None:
    seen = registry.ensure_device(
        db,
        DeviceIdentity(
            address="C0:11:22:33:44:99", manufacturer="Omron", model="BP7150", serial="S1"
        ),
    )
    h = hmc(settings)
    product = await cuff_product(client, h)
    body = {
        "product_id": product,
        "serial": "S1",
        "address": "C0:11:22:33:44:99",
        "hardware_revision": "rev B",
    }
    device = await ok(await client.post("/api/v1/devices", headers=h, json=body), 201)
    assert device["id"] == str(seen) and device["owner"] == "a"
    assert device["hardware_revision"] == "rev B" and device["product_id"] == product
    r = await client.post("/api/v1/devices", headers=h, json=body)
    assert r.status_code == 409 and "registered already" in r.json()["detail"]
    # another principal cannot take it over, nor see it
    hb = hmc(settings, "b")
    other = await cuff_product(client, hb)
    r = await client.post("/api/v1/devices", headers=hb, json={**body, "product_id": other})
    assert r.status_code == 409 and "another principal" in r.json()["detail"]
    assert (await client.get(f"/api/v1/devices/{seen}", headers=hb)).status_code == 404
    assert await ok(await client.get("/api/v1/devices", headers=hb)) == []
    # a product of another principal is not found
    r = await client.post("/api/v1/devices", headers=h, json={**body, "product_id": other})
    assert r.status_code == 404


async def test_a_whole_life_through_the_api(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    h = hmc(settings)
    product = await cuff_product(client, h)
    device = await a_device(client, h, product)
    await a_hub(client, h)
    hub = await ok(await client.get("/api/v1/hubs/hub-a1", headers=h))
    assert hub["state"] == "in_stock" and hub["config_version_wanted"] == 0

    # impossible now: return, quarantine, or assign to another principal's resident
    r = await client.post(f"/api/v1/devices/{device}/return", headers=h, json={})
    assert r.status_code == 409 and "in_stock cannot become returned" in r.json()["detail"]
    r = await client.post(f"/api/v1/devices/{device}/state", headers=h, json={"to": "quarantine"})
    assert r.status_code == 409
    assign = {"patient_id": str(seed.bert), "hub_id": "hub-a1", "from": iso(-timedelta(days=10))}
    r = await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign)
    assert r.status_code == 404

    # place the hub at Alice's and assign the cuff to her through it
    place = {"patient_id": str(seed.alice), "from": iso(-timedelta(days=10))}
    hub = await ok(await client.post("/api/v1/hubs/hub-a1/place", headers=h, json=place))
    assert hub["state"] == "assigned" and hub["patient_id"] == str(seed.alice)
    assign["patient_id"] = str(seed.alice)
    got = await ok(await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign))
    assert got["state"] == "assigned" and got["patient_id"] == str(seed.alice)
    assert got["hub_id"] == "hub-a1"
    r = await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign)
    assert r.status_code == 409 and "already assigned" in r.json()["detail"]

    # the hub's configuration: version 1 with the cuff, wanted but not yet confirmed
    hub = await ok(await client.get("/api/v1/hubs/hub-a1", headers=h))
    assert (hub["config_version_wanted"], hub["config_version_confirmed"]) == (1, None)
    assert hub["config_in_force"] is False and hub["devices"] == 1
    configs = await ok(await client.get("/api/v1/hubs/hub-a1/configs", headers=h))
    config = HubConfig.model_validate_json(json.dumps(configs[0]["payload"]))
    assert config.version == 1 and [d.address for d in config.devices] == ["C0:11:22:33:44:99"]
    assert config.devices[0].principal == "a" and config.devices[0].profile == "blood_pressure"
    db.execute("UPDATE hubs SET last_status = '{\"config_version\": 1}' WHERE id = 'hub-a1'")
    hub = await ok(await client.get("/api/v1/hubs/hub-a1", headers=h))
    assert hub["config_version_confirmed"] == 1 and hub["config_in_force"] is True

    # return: the period ends, the hub's next configuration has no cuff
    until = iso(-timedelta(days=1))
    got = await ok(
        await client.post(
            f"/api/v1/devices/{device}/return", headers=h, json={"until": until, "reason": "moved"}
        )
    )
    assert got["state"] == "returned" and got["patient_id"] is None and got["hub_id"] is None
    periods = db.execute(
        "SELECT ended_at FROM device_assignments WHERE device_id = %s", (device,)
    ).fetchall()
    assert [p[0] for p in periods] == [NOW - timedelta(days=1)]
    configs = await ok(await client.get("/api/v1/hubs/hub-a1/configs", headers=h))
    assert [c["version"] for c in configs] == [2, 1] and configs[0]["payload"]["devices"] == []
    # each queued for the hub link: retained, on the hub's config topic, in order
    queued = db.execute(
        "SELECT topic_kind, retain, payload->'version' FROM hub_outbound"
        " WHERE hub_id = 'hub-a1' ORDER BY id"
    ).fetchall()
    assert queued == [("config", True, 1), ("config", True, 2), ("commands", False, None)]
    # and the hub is asked to wipe the cuff, after the configuration without it
    wipe = db.execute(
        "SELECT id, kind, address, profile, requested_by, status FROM hub_commands"
    ).fetchall()
    assert [w[1:] for w in wipe] == [
        ("wipe_device", "C0:11:22:33:44:99", "blood_pressure", "hmc@a", "pending")
    ]

    # quarantine; back to stock needs a confirmed wipe, or an override with a reason
    await ok(
        await client.post(f"/api/v1/devices/{device}/state", headers=h, json={"to": "quarantine"})
    )
    r = await client.post(f"/api/v1/devices/{device}/state", headers=h, json={"to": "in_stock"})
    assert r.status_code == 409
    assert "data reset is not confirmed (latest: pending)" in r.json()["detail"]
    # the hub says the cuff cannot be wiped (its profile defines no way): still refused
    unsupported = CommandResult(
        hub_id="hub-a1",
        command_id=str(wipe[0][0]),
        kind=CommandKind.WIPE_DEVICE,
        outcome=CommandOutcome.UNSUPPORTED,
        reason="the Blood Pressure Service defines no way to delete stored measurements",
        bond_removed=True,
        finished_at=NOW,
    )
    assert commands.record_result(db, unsupported) == "recorded"
    r = await client.post(f"/api/v1/devices/{device}/state", headers=h, json={"to": "in_stock"})
    assert r.status_code == 409 and "(latest: unsupported)" in r.json()["detail"]
    shown = await ok(await client.get(f"/api/v1/devices/{device}", headers=h))
    assert shown["data_reset"] == "unsupported"
    r = await client.post(
        f"/api/v1/devices/{device}/state", headers=h, json={"to": "in_stock", "override": True}
    )
    assert r.status_code == 409 and "needs a reason" in r.json()["detail"]
    body = {"to": "in_stock", "override": True, "reason": "memory cleared by hand, checked"}
    got = await ok(await client.post(f"/api/v1/devices/{device}/state", headers=h, json=body))
    assert got["state"] == "in_stock"

    # reissued to Arne: not before the first period ended
    await ok(await client.post("/api/v1/hubs/hub-a1/return", headers=h, json={"until": until}))
    await ok(
        await client.post(
            "/api/v1/hubs/hub-a1/state", headers=h, json={"to": "quarantine", "reason": "clean"}
        )
    )
    await ok(
        await client.post(
            "/api/v1/hubs/hub-a1/state",
            headers=h,
            json={"to": "in_stock", "override": True, "reason": "reimaged"},
        )
    )
    second = {"patient_id": str(seed.arne), "hub_id": "hub-a1", "from": iso(-timedelta(days=2))}
    r = await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=second)
    assert r.status_code == 409 and "cannot start before" in r.json()["detail"]
    second["from"] = until
    got = await ok(await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=second))
    assert got["patient_id"] == str(seed.arne)

    # lost at Arne's: retired, his period ends, the hub's list empties
    r = await client.post(
        f"/api/v1/devices/{device}/state", headers=h, json={"to": "retired", "retired_as": "broken"}
    )
    assert r.status_code == 409 and "only be retired as lost" in r.json()["detail"]
    got = await ok(
        await client.post(
            f"/api/v1/devices/{device}/state",
            headers=h,
            json={"to": "retired", "retired_as": "lost", "reason": "resident moved abroad"},
        )
    )
    assert got["state"] == "retired" and got["patient_id"] is None
    r = await client.post(f"/api/v1/devices/{device}/state", headers=h, json={"to": "in_stock"})
    assert r.status_code == 409 and "can become: nothing" in r.json()["detail"]

    history = await ok(await client.get(f"/api/v1/devices/{device}/history", headers=h))
    assert [(c["from_state"], c["to_state"]) for c in history] == [
        (None, "in_stock"),
        ("in_stock", "assigned"),
        ("assigned", "returned"),
        ("returned", "quarantine"),
        ("quarantine", "in_stock"),
        ("in_stock", "assigned"),
        ("assigned", "retired"),
    ]
    assert {c["by_subject"] for c in history} == {"hmc@a"}
    assert history[4]["detail"] == {"override": True, "wipe": "unsupported"}
    assert history[2]["detail"]["wipe_command_id"] == str(wipe[0][0])
    assert history[4]["reason"] == "memory cleared by hand, checked"
    assert history[6]["detail"]["retired_as"] == "lost"
    assert history[1]["detail"]["patient_id"] == str(seed.alice)

    # every change audited, refusals too (with their reason)
    rows = [(r[3], r[5], (r[6] or {}).get("outcome")) for r in audit_rows(settings.database_url)]
    assert ("device.assign", seed.alice, None) in rows
    assert ("device.assign", seed.arne, None) in rows
    assert ("device.return", seed.alice, None) in rows
    assert ("device.state", None, "conflict") in rows
    assert ("device.assign", seed.bert, "not_found") in rows
    assert ("hub.place", seed.alice, None) in rows


async def test_nurses_cannot_change_the_fleet(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    nurse = bearer(settings, Role.NURSE, "a", "nurse@a")
    integration = bearer(settings, Role.INTEGRATION, "a", "int@a")
    some = uuid.uuid4()
    calls = [
        ("GET", "/api/v1/products", None),
        ("POST", "/api/v1/products", {"kind": "glucose", "manufacturer": "x", "model": "y"}),
        ("GET", "/api/v1/devices", None),
        ("POST", "/api/v1/devices", {"product_id": str(some), "serial": "s", "address": "x"}),
        ("GET", f"/api/v1/devices/{some}", None),
        ("POST", f"/api/v1/devices/{some}/assign", {}),
        ("POST", f"/api/v1/devices/{some}/return", {}),
        ("POST", f"/api/v1/devices/{some}/state", {"to": "quarantine"}),
        ("GET", "/api/v1/hubs", None),
        ("POST", "/api/v1/hubs", {"id": "hub-x"}),
        ("GET", "/api/v1/hubs/hub-x", None),
        ("POST", "/api/v1/hubs/hub-x/credentials", None),
        ("DELETE", "/api/v1/hubs/hub-x/credentials", None),
        ("POST", "/api/v1/hubs/hub-x/place", {}),
        ("POST", "/api/v1/hubs/hub-x/return", {}),
        ("POST", "/api/v1/hubs/hub-x/state", {"to": "quarantine"}),
    ]
    for who in (nurse, integration):
        for method, path, body in calls:
            r = await client.request(method, path, headers=who, json=body)
            assert r.status_code == 403, (method, path, r.text)
        for method, path, body in calls:
            r = await client.request(method, path, json=body)
            assert r.status_code == 401, (method, path)
    admin = bearer(settings, Role.ADMIN, "a", "admin@a")
    assert (await client.get("/api/v1/hubs", headers=admin)).status_code == 200


async def test_hub_credentials_shown_once_and_revoked(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    h = hmc(settings)
    await a_hub(client, h)
    r = await client.post("/api/v1/hubs", headers=h, json={"id": "hub-a1"})
    assert r.status_code == 409
    for bad in ("hub/x", "hub+", "", "hemhub-ingest"):
        assert (await client.post("/api/v1/hubs", headers=h, json={"id": bad})).status_code == 422
    creds = await ok(await client.post("/api/v1/hubs/hub-a1/credentials", headers=h), 201)
    assert creds["username"] == "hub-a1"
    stored = db.execute("SELECT password_hash FROM hub_credentials").fetchall()
    assert len(stored) == 1 and creds["password"] not in stored[0][0]
    assert hub_credentials.verify(creds["password"], stored[0][0])
    r = await client.post("/api/v1/hubs/hub-a1/credentials", headers=h)
    assert r.status_code == 409 and "shown only once" in r.json()["detail"]
    hub = await ok(await client.get("/api/v1/hubs/hub-a1", headers=h))
    assert hub["credentials_issued_by"] == "hmc@a"
    assert "password" not in str(hub)
    # another principal neither sees nor revokes them
    hb = hmc(settings, "b")
    assert (await client.delete("/api/v1/hubs/hub-a1/credentials", headers=hb)).status_code == 404
    assert (await client.get("/api/v1/hubs/hub-a1", headers=hb)).status_code == 404
    assert (await client.post("/api/v1/hubs", headers=hb, json={"id": "hub-a1"})).status_code == 409
    await ok(await client.delete("/api/v1/hubs/hub-a1/credentials?reason=lost", headers=h))
    assert (await client.delete("/api/v1/hubs/hub-a1/credentials", headers=h)).status_code == 409
    again = await ok(await client.post("/api/v1/hubs/hub-a1/credentials", headers=h), 201)
    assert again["password"] != creds["password"]

    # a returned hub has its credentials revoked; it cannot go while it has devices
    product = await cuff_product(client, h)
    device = await a_device(client, h, product)
    place = {"patient_id": str(seed.alice), "from": iso(-timedelta(days=3))}
    await ok(await client.post("/api/v1/hubs/hub-a1/place", headers=h, json=place))
    assign = {"patient_id": str(seed.alice), "hub_id": "hub-a1", "from": iso(-timedelta(days=3))}
    await ok(await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign))
    r = await client.post("/api/v1/hubs/hub-a1/return", headers=h, json={})
    assert r.status_code == 409 and "return them first" in r.json()["detail"]
    # a hub at Alice's cannot serve Arne
    await ok(
        await client.post(
            "/api/v1/devices",
            headers=h,
            json={"product_id": product, "serial": "SN-10", "address": "C0:11:22:33:44:98"},
        ),
        201,
    )
    await ok(await client.post(f"/api/v1/devices/{device}/return", headers=h, json={}))
    hub = await ok(await client.post("/api/v1/hubs/hub-a1/return", headers=h, json={}))
    # returned: it keeps its credentials until it leaves `returned`, so that a hub
    # offline at its return can still connect and receive its wipe
    assert hub["state"] == "returned" and hub["credentials_issued_at"] is not None
    assert hub["patient_id"] is None
    revoked = "SELECT revoke_reason FROM hub_credentials WHERE revoked_at IS NOT NULL"
    assert db.execute(revoked + " ORDER BY issued_at").fetchall() == [("lost",)]
    r = await client.post("/api/v1/hubs/hub-a1/credentials", headers=h)
    assert r.status_code == 409 and "returned" in r.json()["detail"]
    quarantined = await ok(
        await client.post("/api/v1/hubs/hub-a1/state", headers=h, json={"to": "quarantine"})
    )
    assert quarantined["credentials_issued_at"] is None
    assert db.execute(revoked + " ORDER BY issued_at").fetchall() == [
        ("lost",),
        ("hub returned",),
    ]
    history = await ok(await client.get("/api/v1/hubs/hub-a1/history", headers=h))
    assert [c["to_state"] for c in history] == ["in_stock", "assigned", "returned", "quarantine"]
    actions = [r[3] for r in audit_rows(settings.database_url)]
    for action in (
        "hub.register",
        "hub.credentials.issue",
        "hub.credentials.revoke",
        "hub.place",
        "hub.return",
    ):
        assert action in actions


async def test_a_hub_at_one_home_serves_only_that_resident(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    h = hmc(settings)
    product = await cuff_product(client, h)
    device = await a_device(client, h, product)
    await a_hub(client, h)
    place = {"patient_id": str(seed.alice)}
    await ok(await client.post("/api/v1/hubs/hub-a1/place", headers=h, json=place))
    assign = {"patient_id": str(seed.arne), "hub_id": "hub-a1"}
    r = await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign)
    assert r.status_code == 409 and "another resident's home" in r.json()["detail"]
    # a hub of another principal is not found
    await a_hub(client, hmc(settings, "b"), "hub-b1")
    assign = {"patient_id": str(seed.alice), "hub_id": "hub-b1"}
    r = await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign)
    assert r.status_code == 404 and r.json()["detail"] == "hub not found"
    r = await client.post(
        f"/api/v1/devices/{device}/assign",
        headers=h,
        json={"patient_id": str(seed.alice), "hub_id": "hub-a1", "from": "2020-01-01T00:00:00"},
    )
    assert r.status_code == 422  # a time without an offset


async def test_config_version_starts_above_what_the_hub_runs(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    # A hub configured by hand (version 7) before the fleet managed it.
    db.execute("INSERT INTO hubs (id, last_status) VALUES ('hub-old', '{\"config_version\": 7}')")
    h = hmc(settings)
    await ok(await client.post("/api/v1/hubs", headers=h, json={"id": "hub-old"}), 201)
    product = await cuff_product(client, h)
    device = await a_device(client, h, product)
    assign = {"patient_id": str(seed.alice), "hub_id": "hub-old"}
    await ok(await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign))
    hub = await ok(await client.get("/api/v1/hubs/hub-old", headers=h))
    assert (hub["config_version_wanted"], hub["config_version_confirmed"]) == (8, 7)
    assert hub["config_in_force"] is False


async def test_back_to_stock_after_the_wipe_of_this_return_only(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    h = hmc(settings)
    body = {"kind": "glucose", "manufacturer": "Roche", "model": "Guide"}
    product = (await ok(await client.post("/api/v1/products", headers=h, json=body), 201))["id"]
    body = {"product_id": product, "serial": "G-1", "address": "C4:70:00:00:00:01"}
    meter = (await ok(await client.post("/api/v1/devices", headers=h, json=body), 201))["id"]
    await a_hub(client, h)

    async def cycle(patient: uuid.UUID, start: timedelta, end: timedelta) -> None:
        assign = {"patient_id": str(patient), "hub_id": "hub-a1", "from": iso(start)}
        await ok(await client.post(f"/api/v1/devices/{meter}/assign", headers=h, json=assign))
        until = {"until": iso(end)}
        await ok(await client.post(f"/api/v1/devices/{meter}/return", headers=h, json=until))
        await ok(
            await client.post(
                f"/api/v1/devices/{meter}/state", headers=h, json={"to": "quarantine"}
            )
        )

    def hub_says_wiped() -> None:
        (command_id,) = db.execute(
            "SELECT id FROM hub_commands WHERE status = 'pending'"
        ).fetchone()  # type: ignore[misc]
        result = CommandResult(
            hub_id="hub-a1",
            command_id=str(command_id),
            kind=CommandKind.WIPE_DEVICE,
            outcome=CommandOutcome.WIPED,
            address="C4:70:00:00:00:01",
            records_before=3,
            bond_removed=True,
            finished_at=NOW,
        )
        assert commands.record_result(db, result) == "recorded"

    await cycle(seed.alice, -timedelta(days=9), -timedelta(days=8))
    hub_says_wiped()
    got = await ok(
        await client.post(f"/api/v1/devices/{meter}/state", headers=h, json={"to": "in_stock"})
    )
    assert got["state"] == "in_stock"
    history = await ok(await client.get(f"/api/v1/devices/{meter}/history", headers=h))
    assert history[-1]["detail"] == {"wipe": "wiped"} and history[-1]["reason"] is None

    # the next return asks a new wipe: the old one proves nothing of Arne's period
    await cycle(seed.arne, -timedelta(days=7), -timedelta(days=6))
    r = await client.post(f"/api/v1/devices/{meter}/state", headers=h, json={"to": "in_stock"})
    assert r.status_code == 409 and "(latest: pending)" in r.json()["detail"]
    hub_says_wiped()
    await ok(
        await client.post(f"/api/v1/devices/{meter}/state", headers=h, json={"to": "in_stock"})
    )


async def test_every_fleet_endpoint_is_confined_to_its_principal(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    h = hmc(settings)
    product = await cuff_product(client, h)
    device = await a_device(client, h, product)
    await a_hub(client, h)
    await ok(
        await client.post(
            "/api/v1/hubs/hub-a1/place", headers=h, json={"patient_id": str(seed.alice)}
        )
    )
    before = audit_rows(settings.database_url)
    other = hmc(settings, "b")
    register = {"product_id": product, "serial": "X", "address": "C0:00:00:00:00:01"}
    assign = {"patient_id": str(seed.bert), "hub_id": "hub-a1"}
    calls = [
        ("GET", f"/api/v1/products/{product}", None),
        ("POST", "/api/v1/devices", register),
        ("GET", f"/api/v1/devices/{device}", None),
        ("GET", f"/api/v1/devices/{device}/history", None),
        ("POST", f"/api/v1/devices/{device}/assign", assign),
        ("POST", f"/api/v1/devices/{device}/return", {}),
        ("POST", f"/api/v1/devices/{device}/state", {"to": "repair"}),
        ("GET", "/api/v1/hubs/hub-a1", None),
        ("GET", "/api/v1/hubs/hub-a1/history", None),
        ("GET", "/api/v1/hubs/hub-a1/configs", None),
        ("POST", "/api/v1/hubs/hub-a1/credentials", None),
        ("DELETE", "/api/v1/hubs/hub-a1/credentials", None),
        ("POST", "/api/v1/hubs/hub-a1/place", {"patient_id": str(seed.bert)}),
        ("POST", "/api/v1/hubs/hub-a1/return", {}),
        ("POST", "/api/v1/hubs/hub-a1/state", {"to": "repair"}),
    ]  # fmt: skip
    for method, path, body in calls:
        r = await client.request(method, path, headers=other, json=body)
        assert r.status_code == 404, (method, path, r.text)
    for listing in ("/api/v1/products", "/api/v1/devices", "/api/v1/hubs"):
        assert await ok(await client.get(listing, headers=other)) == []
    # nothing changed, and every probe is on record as refused
    assert (await ok(await client.get(f"/api/v1/devices/{device}", headers=h)))[
        "state"
    ] == "in_stock"
    hub = await ok(await client.get("/api/v1/hubs/hub-a1", headers=h))
    assert hub["state"] == "assigned" and hub["credentials_issued_at"] is None
    refused = [r for r in audit_rows(settings.database_url)[len(before) :] if r[2] == "b"]
    assert sum((r[6] or {}).get("outcome") == "not_found" for r in refused) == len(calls)


async def test_hmc_sees_no_clinical_values(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    h = hmc(settings)
    for path in (
        "/api/v1/patients",
        f"/api/v1/patients/{seed.alice}/observations",
        "/api/v1/alerts",
    ):
        assert (await client.get(path, headers=h)).status_code == 403, path
    # the fleet's answers name a resident by id only
    product = await cuff_product(client, h)
    device = await a_device(client, h, product)
    await a_hub(client, h)
    assign = {"patient_id": str(seed.alice), "hub_id": "hub-a1"}
    got = await ok(await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign))
    text = json.dumps(got) + json.dumps(await ok(await client.get("/api/v1/hubs", headers=h)))
    for clinical in ("Alice", "systolic", "mm[Hg]", "programme", "hypertension"):
        assert clinical not in text


async def test_a_deactivated_resident_is_given_nothing(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    h = hmc(settings)
    product = await cuff_product(client, h)
    device = await a_device(client, h, product)
    await a_hub(client, h)
    await ok(
        await client.post(
            f"/api/v1/residents/{seed.arne}/deactivate", headers=h, json={"reason": "moved"}
        )
    )
    r = await client.post(
        "/api/v1/hubs/hub-a1/place", headers=h, json={"patient_id": str(seed.arne)}
    )
    assert r.status_code == 409 and "deactivated" in r.json()["detail"]
    assign = {"patient_id": str(seed.arne), "hub_id": "hub-a1"}
    r = await client.post(f"/api/v1/devices/{device}/assign", headers=h, json=assign)
    assert r.status_code == 409 and "deactivated" in r.json()["detail"]
