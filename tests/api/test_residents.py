"""Residents' registry (HMC/admin manage, nurses read), principals and care units through
the API: roles, confinement to the principal, audit, and deactivation all the way down
to ingest (history kept, nothing new attributed, no new alerts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role
from hemhub.settings import Settings
from ingest import registry
from ingest.pipeline import store
from ingest.schedule import run_scheduled_evaluation
from tests.api.helpers import NOW, Seed, api_client, audit_rows, bearer, make_settings
from tests.factories import batch, bp_reading, device, unique_hub_id
from tests.ingest.factories import entitle


@pytest.fixture
def db(database_url: str, seed: Seed) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def hmc(settings: Settings, tenant: str = "a", **kw: Any) -> dict[str, str]:
    return bearer(settings, Role.HMC, tenant, f"hmc@{tenant}", **kw)


def nurse(settings: Settings, tenant: str = "a", **kw: Any) -> dict[str, str]:
    return bearer(settings, Role.NURSE, tenant, f"nurse@{tenant}", **kw)


def admin(settings: Settings, tenant: str = "a") -> dict[str, str]:
    return bearer(settings, Role.ADMIN, tenant, f"admin@{tenant}")


def actions(database_url: str, patient: uuid.UUID | None = None) -> list[tuple[Any, ...]]:
    """(subject, tenant, action, patient) of the audit rows (of one patient)."""
    return [
        (r[0], r[2], r[3], r[5])
        for r in audit_rows(database_url)
        if patient is None or r[5] == patient
    ]


async def test_hmc_manages_residents_nurses_read(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    unit = (
        await client.post("/api/v1/care-units", headers=hmc(settings), json={"name": "Norr"})
    ).json()["id"]
    r = await client.post(
        "/api/v1/residents",
        headers=hmc(settings),
        json={"display_name": " Cecilia Dahl ", "programme": "copd", "care_unit_id": unit},
    )
    assert r.status_code == 201, r.text
    cecilia = r.json()
    assert cecilia["display_name"] == "Cecilia Dahl" and cecilia["principal"] == "a"
    assert (cecilia["programme"], cecilia["care_unit_id"], cecilia["schedules"]) == (
        "copd",
        unit,
        [],
    )
    assert cecilia["deactivated_at"] is None
    cid = cecilia["id"]

    # a nurse reads the registry but cannot change it
    assert (
        await client.post("/api/v1/residents", headers=nurse(settings), json={"display_name": "X"})
    ).status_code == 403
    assert (
        await client.patch(
            f"/api/v1/residents/{cid}", headers=nurse(settings), json={"display_name": "X"}
        )
    ).status_code == 403
    r = await client.get("/api/v1/residents", headers=nurse(settings))
    assert [p["display_name"] for p in r.json()] == [
        "Alice Andersson",
        "Arne Berg",
        "Cecilia Dahl",
    ]
    assert (await client.get(f"/api/v1/residents/{cid}", headers=nurse(settings))).json() == (
        cecilia
    )
    # a nurse of the unit sees its residents only
    r = await client.get("/api/v1/residents", headers=nurse(settings, care_units=[unit]))
    assert [p["id"] for p in r.json()] == [cid]

    # bad input: clear 422s
    for bad in (
        {"display_name": ""},
        {"display_name": "Y", "programme": "astrology"},
        {"display_name": "Y", "care_unit_id": "nope"},
        {"display_name": "Y", "x": 1},
    ):
        r = await client.post("/api/v1/residents", headers=hmc(settings), json=bad)
        assert r.status_code == 422, bad
    r = await client.patch(f"/api/v1/residents/{cid}", headers=hmc(settings), json={})
    assert r.status_code == 422 and "nothing to change" in r.text

    r = await client.patch(
        f"/api/v1/residents/{cid}",
        headers=admin(settings),
        json={"display_name": "Cecilia Dahl-Ek", "programme": "heart_failure"},
    )
    assert r.status_code == 200
    assert (r.json()["display_name"], r.json()["programme"]) == ("Cecilia Dahl-Ek", "heart_failure")

    r = await client.put(
        f"/api/v1/residents/{cid}/schedules/body_weight",
        headers=hmc(settings),
        json={"every": "P1D"},
    )
    assert r.status_code == 200, r.text
    [sched] = r.json()["schedules"]
    assert (sched["measurement_type"], sched["every"], sched["active"]) == (
        "body_weight",
        "P1D",
        True,
    )
    for bad_path, body in (
        ("schedules/body_weight", {"every": "PT1M"}),
        ("schedules/body_weight", {"every": "P1Y"}),
        ("schedules/mood", {"every": "P1D"}),
    ):
        r = await client.put(
            f"/api/v1/residents/{cid}/{bad_path}", headers=hmc(settings), json=body
        )
        assert r.status_code == 422, (bad_path, body)
    r = await client.delete(f"/api/v1/residents/{cid}/schedules/body_weight", headers=hmc(settings))
    assert r.status_code == 200 and r.json()["schedules"][0]["active"] is False
    r = await client.delete(f"/api/v1/residents/{cid}/schedules/glucose", headers=hmc(settings))
    assert r.status_code == 404

    # every change is audited under the resident
    cid_uuid = uuid.UUID(cid)
    assert [a[2] for a in actions(database_url, cid_uuid) if a[0] != "nurse@a"] == [
        "resident.create",
        "resident.update",
        "resident.schedule",
        "resident.schedule",
        "resident.schedule",  # the refused one (no glucose schedule)
    ]
    update = next(r for r in audit_rows(database_url) if r[3] == "resident.update")
    assert update[6]["changes"]["programme"] == {"from": "copd", "to": "heart_failure"}


async def test_hmc_sees_no_clinical_values(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    for path in (
        "/api/v1/patients",
        f"/api/v1/patients/{seed.alice}/observations",
        "/api/v1/alerts",
        f"/api/v1/patients/{seed.alice}/thresholds",
    ):
        assert (await client.get(path, headers=hmc(settings))).status_code == 403, path
    r = await client.get(f"/api/v1/residents/{seed.alice}", headers=hmc(settings))
    assert r.status_code == 200
    assert set(r.json()) == {
        "id",
        "principal",
        "display_name",
        "programme",
        "care_unit_id",
        "created_at",
        "deactivated_at",
        "deactivated_by",
        "deactivation_reason",
        "schedules",
    }


async def test_every_resident_endpoint_is_confined_to_its_principal(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    bert = seed.bert  # principal b's
    calls = [
        ("GET", f"/api/v1/residents/{bert}", None),
        ("PATCH", f"/api/v1/residents/{bert}", {"display_name": "X"}),
        ("PUT", f"/api/v1/residents/{bert}/schedules/blood_pressure", {"every": "P1D"}),
        ("DELETE", f"/api/v1/residents/{bert}/schedules/blood_pressure", None),
        ("POST", f"/api/v1/residents/{bert}/deactivate", {"reason": "moved"}),
        ("PUT", f"/api/v1/patients/{bert}/care-unit", {"care_unit_id": None}),
        ("GET", f"/api/v1/residents/{uuid.uuid4()}", None),
    ]
    for method, path, body in calls:
        r = await client.request(method, path, headers=admin(settings), json=body)
        assert r.status_code == 404 and r.json() == {"detail": "patient not found"}, path
    # the probes are audited
    assert sum(1 for a in actions(database_url, bert) if a[0] == "admin@a") == 6
    r = await client.get("/api/v1/residents", headers=admin(settings, "b"))
    assert [p["id"] for p in r.json()] == [str(bert)]
    # another principal's care unit is unknown too
    unit_b = (
        await client.post("/api/v1/care-units", headers=hmc(settings, "b"), json={"name": "Väst"})
    ).json()["id"]
    r = await client.post(
        "/api/v1/residents",
        headers=hmc(settings),
        json={"display_name": "Y", "care_unit_id": unit_b},
    )
    assert r.status_code == 404 and r.json() == {"detail": "care unit not found"}
    r = await client.patch(
        f"/api/v1/care-units/{unit_b}", headers=hmc(settings), json={"name": "Mine"}
    )
    assert r.status_code == 404


async def test_care_units_rename(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    north = (
        await client.post("/api/v1/care-units", headers=hmc(settings), json={"name": "Norr"})
    ).json()
    await client.post("/api/v1/care-units", headers=hmc(settings), json={"name": "Syd"})
    path = f"/api/v1/care-units/{north['id']}"
    r = await client.patch(path, headers=hmc(settings), json={"name": " Norra "})
    assert r.status_code == 200 and r.json()["name"] == "Norra"
    assert (
        await client.patch(path, headers=hmc(settings), json={"name": "Syd"})
    ).status_code == 409
    assert (await client.patch(path, headers=hmc(settings), json={"name": ""})).status_code == 422
    assert (
        await client.patch(path, headers=nurse(settings), json={"name": "X"})
    ).status_code == 403
    rename = [r for r in audit_rows(database_url) if r[3] == "care_unit.rename"]
    assert [(r[0], r[6]) for r in rename] == [("hmc@a", {"from": "Norr", "to": "Norra"})]


async def test_principals(tmp_path: Path, database_url: str, seed: Seed) -> None:
    settings = make_settings(tmp_path, database_url, operator_principal="ops")
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.ensure_tenant(conn, "ops", "Platform operator")
    operator = admin(settings, "ops")
    async with api_client(settings) as client:
        r = await client.post(
            "/api/v1/principals", headers=operator, json={"id": "kommun-c", "name": "Kommun C"}
        )
        assert r.status_code == 201 and r.json()["id"] == "kommun-c"
        r = await client.post(
            "/api/v1/principals", headers=operator, json={"id": "kommun-c", "name": "Again"}
        )
        assert r.status_code == 409
        for bad in ({"id": "Kommun C", "name": "x"}, {"id": "c", "name": ""}):
            r = await client.post("/api/v1/principals", headers=operator, json=bad)
            assert r.status_code == 422, bad
        # an admin of another principal, and HMC, create none
        r = await client.post(
            "/api/v1/principals", headers=admin(settings), json={"id": "x", "name": "X"}
        )
        assert r.status_code == 403 and "operator" in r.json()["detail"]
        r = await client.post(
            "/api/v1/principals", headers=hmc(settings, "ops"), json={"id": "x", "name": "X"}
        )
        assert r.status_code == 403
        r = await client.get("/api/v1/principals", headers=operator)
        assert [p["id"] for p in r.json()] == ["a", "b", "kommun-c", "ops"]
        r = await client.get("/api/v1/principals", headers=hmc(settings))
        assert [p["id"] for p in r.json()] == ["a"]
        assert (await client.get("/api/v1/principals/b", headers=hmc(settings))).status_code == 404
        r = await client.patch(
            "/api/v1/principals/a", headers=admin(settings), json={"name": "Kommun A-stad"}
        )
        assert r.status_code == 200 and r.json()["name"] == "Kommun A-stad"
        assert (
            await client.patch("/api/v1/principals/b", headers=admin(settings), json={"name": "Z"})
        ).status_code == 404
        assert (
            await client.patch("/api/v1/principals/a", headers=hmc(settings), json={"name": "Z"})
        ).status_code == 403
    assert [(a[0], a[2]) for a in actions(database_url) if a[2].startswith("principal.")] == [
        ("admin@ops", "principal.create"),
        ("admin@a", "principal.rename"),
    ]


async def test_deactivated_resident_keeps_history_gets_nothing_new(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    cuff = device(serial="DEACT-1")
    cuff_id = registry.ensure_device(db, cuff)
    assigned_from = NOW - timedelta(days=5)
    registry.assign_device(db, cuff_id, seed.arne, assigned_from)
    hub = unique_hub_id()
    entitle(db, hub, cuff_id, "a")
    r = await client.put(
        f"/api/v1/residents/{seed.arne}/schedules/blood_pressure",
        headers=hmc(settings),
        json={"every": "P1D", "starts_at": (NOW - timedelta(days=5)).isoformat()},
    )
    assert r.status_code == 200

    # a device still assigned: 409, naming it
    path = f"/api/v1/residents/{seed.arne}/deactivate"
    r = await client.post(path, headers=hmc(settings), json={"reason": "moved away"})
    assert r.status_code == 409 and cuff.stable_id in r.json()["detail"]
    assert (await client.post(path, headers=hmc(settings), json={"reason": " "})).status_code == 422

    registry.end_assignment(db, cuff_id, NOW - timedelta(hours=1))
    r = await client.post(path, headers=hmc(settings), json={"reason": "moved away"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["deactivated_by"] == "hmc@a" and body["deactivation_reason"] == "moved away"
    assert [s["active"] for s in body["schedules"]] == [False]
    assert (await client.post(path, headers=hmc(settings), json={"reason": "x"})).status_code == 409
    r = await client.put(
        f"/api/v1/residents/{seed.arne}/schedules/blood_pressure",
        headers=hmc(settings),
        json={"every": "P1D"},
    )
    assert r.status_code == 409

    # no device can be assigned to it any more
    with pytest.raises(registry.AssignmentError, match="deactivated"):
        registry.assign_device(db, registry.ensure_device(db, device(serial="D-2")), seed.arne, NOW)

    # ingest: a late reading measured while assigned is kept (history), judges nothing;
    # one measured after the assignment ended is attributed to no one.
    before = bp_reading(230.0, 130.0, dev=cuff, measured_at=NOW - timedelta(hours=3))
    after = bp_reading(231.0, 131.0, dev=cuff, measured_at=NOW - timedelta(minutes=30))
    result = store(db, [batch(hub, before, after)])
    assert result.stored == 2 and result.alerts_opened == 0
    rows = db.execute(
        "SELECT measured_at, patient_id FROM readings WHERE device_id = %s ORDER BY measured_at",
        (cuff_id,),
    ).fetchall()
    assert [r[1] for r in rows] == [seed.arne, None]
    # nor do the time-driven rules alert (its schedule would be overdue by days)
    run_scheduled_evaluation(db, NOW + timedelta(days=3))
    assert db.execute(
        "SELECT count(*) FROM alerts WHERE patient_id = %s", (seed.arne,)
    ).fetchone() == (0,)

    # nurses still read its history; the roster lists it only when asked
    r = await client.get(f"/api/v1/patients/{seed.arne}/observations", headers=nurse(settings))
    assert [o["values"][0]["value"] for o in r.json()] == [230.0]
    roster = (await client.get("/api/v1/patients", headers=nurse(settings))).json()
    assert str(seed.arne) not in [p["id"] for p in roster]
    roster = (await client.get("/api/v1/patients?deactivated=true", headers=nurse(settings))).json()
    assert [p["deactivated_at"] is not None for p in roster if p["id"] == str(seed.arne)] == [True]
