"""Care units (HMC/admin), the nurse token's `care_units` claim, and unattributed readings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from api.auth import Role, ensure_demo_key
from hemhub.settings import Settings
from ingest import registry
from ingest.pipeline import store
from tests.api.helpers import NOW, Seed, audit_rows, bearer
from tests.factories import batch, bp_reading, device, unique_hub_id
from tests.ingest.factories import entitle


@pytest.fixture
def db(database_url: str, seed: Seed) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def hmc(settings: Settings, tenant: str = "a") -> dict[str, str]:
    return bearer(settings, Role.HMC, tenant, f"hmc@{tenant}")


def nurse(settings: Settings, tenant: str = "a", **kw: Any) -> dict[str, str]:
    return bearer(settings, Role.NURSE, tenant, f"nurse@{tenant}", **kw)


# --- care units -----------------------------------------------------------------------------


async def test_hmc_creates_and_lists_care_units(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    r = await client.post("/api/v1/care-units", headers=hmc(settings), json={"name": " Norr "})
    assert r.status_code == 201
    north = r.json()
    assert north["name"] == "Norr" and north["residents"] == 0
    r = await client.post("/api/v1/care-units", headers=hmc(settings), json={"name": "Norr"})
    assert r.status_code == 409
    for bad in ({"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": "S", "x": 1}):
        r = await client.post("/api/v1/care-units", headers=hmc(settings), json=bad)
        assert r.status_code == 422, bad
    admin = bearer(settings, Role.ADMIN, "a", "admin@a")
    assert (
        await client.post("/api/v1/care-units", headers=admin, json={"name": "Syd"})
    ).status_code == 201
    assert (
        await client.post("/api/v1/care-units", headers=nurse(settings), json={"name": "X"})
    ).status_code == 403
    # the same name in another principal is another unit
    assert (
        await client.post("/api/v1/care-units", headers=hmc(settings, "b"), json={"name": "Norr"})
    ).status_code == 201

    r = await client.put(
        f"/api/v1/patients/{seed.alice}/care-unit",
        headers=hmc(settings),
        json={"care_unit_id": north["id"]},
    )
    assert r.status_code == 200
    assert r.json() == {"patient_id": str(seed.alice), "care_unit_id": north["id"]}
    r = await client.get("/api/v1/care-units", headers=hmc(settings))
    assert [(u["name"], u["residents"]) for u in r.json()] == [("Norr", 1), ("Syd", 0)]
    assert [
        u["name"]
        for u in (await client.get("/api/v1/care-units", headers=hmc(settings, "b"))).json()
    ] == ["Norr"]
    assert (await client.get("/api/v1/care-units", headers=nurse(settings))).status_code == 403

    patients = (await client.get("/api/v1/patients", headers=nurse(settings))).json()
    assert {p["display_name"]: p["care_unit_id"] for p in patients} == {
        "Alice Andersson": north["id"],
        "Arne Berg": None,
    }
    # The roster's access is logged per patient shown (two), after the placement.
    assert [r[3:6] for r in audit_rows(database_url)[-2:]] == [
        ("patients.list", "patients", seed.alice),
        ("patients.list", "patients", seed.arne),
    ]
    assert audit_rows(database_url)[-3][3:7] == (
        "patient.care_unit",
        f"patients/{seed.alice}/care-unit",
        seed.alice,
        {"care_unit_id": north["id"]},
    )


async def test_placement_stays_within_the_principal(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    unit_a = registry.create_care_unit(db, "a", "Norr")
    unit_b = registry.create_care_unit(db, "b", "Väst")
    put = client.put
    # another principal's unit, another principal's patient, an unknown unit: 404
    r = await put(
        f"/api/v1/patients/{seed.alice}/care-unit",
        headers=hmc(settings),
        json={"care_unit_id": str(unit_b)},
    )
    assert r.status_code == 404 and r.json()["detail"] == "care unit not found"
    r = await put(
        f"/api/v1/patients/{seed.bert}/care-unit",
        headers=hmc(settings),
        json={"care_unit_id": str(unit_a)},
    )
    assert r.status_code == 404 and r.json()["detail"] == "patient not found"
    r = await put(
        f"/api/v1/patients/{seed.alice}/care-unit",
        headers=hmc(settings),
        json={"care_unit_id": str(uuid.uuid4())},
    )
    assert r.status_code == 404
    r = await put(
        f"/api/v1/patients/{seed.alice}/care-unit",
        headers=nurse(settings),
        json={"care_unit_id": str(unit_a)},
    )
    assert r.status_code == 403
    # in, then out again
    r = await put(
        f"/api/v1/patients/{seed.alice}/care-unit",
        headers=hmc(settings),
        json={"care_unit_id": str(unit_a)},
    )
    assert r.status_code == 200
    r = await put(
        f"/api/v1/patients/{seed.alice}/care-unit",
        headers=hmc(settings),
        json={"care_unit_id": None},
    )
    assert r.status_code == 200 and r.json()["care_unit_id"] is None
    # the database refuses a cross-principal placement even without the API's check
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute("UPDATE patients SET care_unit_id = %s WHERE id = %s", (unit_b, seed.alice))


async def test_care_units_claim_limits_a_nurse(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    north = registry.create_care_unit(db, "a", "Norr")
    south = registry.create_care_unit(db, "a", "Syd")
    registry.place_patient(db, seed.alice, south)
    registry.place_patient(db, seed.arne, north)
    n = nurse(settings, care_units=[north])
    me = (await client.get("/api/v1/me", headers=n)).json()
    assert me["care_units"] == [str(north)]

    patients = (await client.get("/api/v1/patients", headers=n)).json()
    assert [p["id"] for p in patients] == [str(seed.arne)]
    # alice (south) is as unknown as another principal's patient
    r = await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=n)
    assert r.status_code == 404
    assert (
        await client.get(f"/api/v1/patients/{seed.alice}/thresholds", headers=n)
    ).status_code == 404
    assert (
        await client.get(f"/api/v1/patients/{seed.arne}/observations", headers=n)
    ).status_code == 200
    assert (await client.get("/api/v1/alerts", headers=n)).json() == []
    assert (await client.get(f"/api/v1/alerts?patient_id={seed.alice}", headers=n)).json() == []
    r = await client.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=n)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/alerts/{seed.alert_a_open}/resolve", headers=n)
    assert r.status_code == 404
    status = db.execute("SELECT status FROM alerts WHERE id = %s", (seed.alert_a_open,)).fetchone()
    assert status == ("open",)

    # the south nurse sees alice and may act on her alert
    s = nurse(settings, care_units=[south])
    assert [
        a["id"] for a in (await client.get("/api/v1/alerts?status=open", headers=s)).json()
    ] == [str(seed.alert_a_open)]
    assert (
        await client.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=s)
    ).status_code == 200
    # both units: both residents; an empty claim: no resident at all (fail closed)
    both = nurse(settings, care_units=[north, south])
    assert len((await client.get("/api/v1/patients", headers=both)).json()) == 2
    assert (
        await client.get("/api/v1/patients", headers=nurse(settings, care_units=[]))
    ).json() == []
    # without the claim, the whole principal, residents in no unit included
    registry.place_patient(db, seed.arne, None)
    assert len((await client.get("/api/v1/patients", headers=nurse(settings))).json()) == 2
    # a unit id of another principal in the claim widens nothing
    unit_b = registry.create_care_unit(db, "b", "Väst")
    registry.place_patient(db, seed.bert, unit_b)
    assert (
        await client.get("/api/v1/patients", headers=nurse(settings, care_units=[unit_b]))
    ).json() == []


@pytest.mark.parametrize("claim", ["not-a-list", ["not-a-uuid"], [1, 2], None])
async def test_malformed_care_units_claim_is_401(
    client: httpx.AsyncClient, settings: Settings, claim: object
) -> None:
    ensure_demo_key(settings.demo_key_file)
    now = datetime.now(UTC)
    token = jwt.encode(
        {
            "sub": "n",
            "role": "nurse",
            "tenant": "a",
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "iat": now,
            "exp": now + timedelta(minutes=5),
            "care_units": claim,
        },
        settings.demo_key_file.read_bytes(),
        algorithm="RS256",
    )
    r = await client.get("/api/v1/patients", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid claim: care_units"


# --- unattributed readings ----------------------------------------------------------------


async def test_unattributed_readings_for_the_owning_fleet_only(
    client: httpx.AsyncClient,
    settings: Settings,
    seed: Seed,
    db: psycopg.Connection[Any],
    database_url: str,
) -> None:
    # The seed's cuff SN-A of principal a has one reading no assignment covered.
    dev_a = registry.device_id_by_stable_id(db, "Omron|BP7150|SN-A")
    assert dev_a is not None
    registry.set_device_owner(db, dev_a, "a")
    # A cuff lent out by b (owner from its first assignment) measured before it was.
    cuff = device(serial="LENT-1", address="C0:FF:EE:00:00:77")
    cuff_id = registry.ensure_device(db, cuff)
    registry.assign_device(db, cuff_id, seed.bert, NOW - timedelta(days=1))
    hub = unique_hub_id()
    entitle(db, hub, cuff_id, "b")  # b's hub: the readings are unattributed, not quarantined
    before = [NOW - timedelta(days=10), NOW - timedelta(days=3)]
    result = store(
        db, [batch(hub, *(bp_reading(200.0, 120.0, dev=cuff, measured_at=t) for t in before))]
    )
    assert result.unattributed == 2 and result.alerts_opened == 0

    r = await client.get("/api/v1/fleet/unattributed", headers=hmc(settings, "b"))
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2
    (row,) = body["devices"]
    first, last = row.pop("first_measured_at"), row.pop("last_measured_at")
    assert [datetime.fromisoformat(first), datetime.fromisoformat(last)] == before
    assert row == {
        "device_id": str(cuff_id),
        "address": "C0:FF:EE:00:00:77",
        "manufacturer": "Acme",
        "model": "BP-1",
        "serial": "LENT-1",
        "hub_id": hub,
        "quarantine": None,
        "readings": 2,
    }
    # never under the resident: bert's observations and alerts do not show them
    obs = (
        await client.get(f"/api/v1/patients/{seed.bert}/observations", headers=nurse(settings, "b"))
    ).json()
    assert all(o["device"]["serial"] != "LENT-1" for o in obs)

    a = (await client.get("/api/v1/fleet/unattributed", headers=hmc(settings, "a"))).json()
    assert [(d["serial"], d["readings"]) for d in a["devices"]] == [("SN-A", 1)]
    since = (NOW - timedelta(days=5)).isoformat()
    r = await client.get(
        "/api/v1/fleet/unattributed", headers=hmc(settings, "b"), params={"since": since}
    )
    assert r.json()["total"] == 1 and r.json()["devices"][0]["readings"] == 1
    admin = bearer(settings, Role.ADMIN, "a", "admin@a")
    assert (await client.get("/api/v1/fleet/unattributed", headers=admin)).json()["total"] == 1
    # nurses and integrations: not theirs to see; another principal: nothing of a's
    for role in (Role.NURSE, Role.INTEGRATION):
        r = await client.get("/api/v1/fleet/unattributed", headers=bearer(settings, role, "a"))
        assert r.status_code == 403
    r = await client.get("/api/v1/fleet/unattributed", headers=hmc(settings, "c"))
    assert r.json() == {"since": None, "total": 0, "devices": []}

    ready = (await client.get("/readyz")).json()
    assert (ready["unattributed_readings"], ready["quarantined_readings"]) == (3, 0)
    assert audit_rows(database_url)[-1][3:7] == (
        "fleet.unattributed",
        "fleet/unattributed",
        None,
        {"devices": 0, "readings": 0, "since": None},
    )


# --- quarantined readings and security events ---------------------------------------------


async def test_quarantined_readings_and_security_events_for_the_devices_principal(
    client: httpx.AsyncClient,
    settings: Settings,
    seed: Seed,
    db: psycopg.Connection[Any],
    database_url: str,
) -> None:
    """A hub of principal a writes for b's cuff: b's HMC sees the readings in the fleet
    view with the reason, and the security events, a page at a time; a sees neither."""
    cuff = device(serial="B-CUFF-9", address="C0:FF:EE:00:0B:99")
    cuff_id = registry.ensure_device(db, cuff)
    registry.assign_device(db, cuff_id, seed.bert, NOW - timedelta(days=30))
    intruder = unique_hub_id("intruder")
    registry.register_hub(db, intruder, "a")
    for days in (3, 2, 1):  # three batches: three security events
        reading = bp_reading(200.0, 120.0, dev=cuff, measured_at=NOW - timedelta(days=days))
        assert store(db, [batch(intruder, reading)]).quarantined == 1

    fleet_b = (await client.get("/api/v1/fleet/unattributed", headers=hmc(settings, "b"))).json()
    [row] = [d for d in fleet_b["devices"] if d["serial"] == "B-CUFF-9"]
    assert (row["hub_id"], row["quarantine"], row["readings"]) == (intruder, "other_principal", 3)
    ready = (await client.get("/readyz")).json()
    assert ready["quarantined_readings"] == 3
    assert ready["unattributed_readings"] == 1  # the seed's, apart from the quarantined

    r = await client.get(
        "/api/v1/fleet/security-events", headers=hmc(settings, "b"), params={"limit": 2}
    )
    assert r.status_code == 200, r.text
    page = r.json()
    # newest first
    assert [datetime.fromisoformat(e["first_measured_at"]) for e in page["events"]] == [
        NOW - timedelta(days=d) for d in (1, 2)
    ]
    event = page["events"][0]
    assert (event["kind"], event["reason"], event["hub_id"], event["hub_tenant_id"]) == (
        "reading_quarantined",
        "other_principal",
        intruder,
        "a",
    )
    assert (event["device_id"], event["readings"]) == (str(cuff_id), 1)
    assert "principal a" in event["detail"] and "principal b" in event["detail"]
    assert page["next_before"] == page["events"][-1]["id"]
    r = await client.get(
        "/api/v1/fleet/security-events",
        headers=hmc(settings, "b"),
        params={"limit": 2, "before": page["next_before"]},
    )
    last = r.json()
    assert [datetime.fromisoformat(e["first_measured_at"]) for e in last["events"]] == [
        NOW - timedelta(days=3)
    ]
    assert last["next_before"] is None
    since = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    r = await client.get(
        "/api/v1/fleet/security-events", headers=hmc(settings, "b"), params={"since": since}
    )
    assert r.json() == {"events": [], "next_before": None}
    assert audit_rows(database_url)[-1][3:7] == (
        "fleet.security_events",
        "fleet/security-events",
        None,
        {"events": 0, "since": since, "before": None, "limit": 100},
    )

    # the sending hub's principal does not see b's events; nurses may not look
    r = await client.get("/api/v1/fleet/security-events", headers=hmc(settings, "a"))
    assert r.json() == {"events": [], "next_before": None}
    admin_b = bearer(settings, Role.ADMIN, "b", "admin@b")
    r = await client.get("/api/v1/fleet/security-events", headers=admin_b)
    assert len(r.json()["events"]) == 3
    for role in (Role.NURSE, Role.INTEGRATION):
        r = await client.get("/api/v1/fleet/security-events", headers=bearer(settings, role, "b"))
        assert r.status_code == 403
    for bad in ({"before": 0}, {"before": 2**63}, {"limit": 0}, {"limit": 1001}):
        r = await client.get(
            "/api/v1/fleet/security-events", headers=hmc(settings, "b"), params=bad
        )
        assert r.status_code == 422, bad
