"""A resident shared between two principals: principal a's admin shares Alice with
principal b; b's nurses see her, her readings and alerts measured in the shared period
(the list, the observations and the live stream) while the share is in force, nothing
after revocation or expiry, and nothing of a's other residents. Real PostgreSQL, the API
over a real socket (the stream needs one), readings through the real ingest path."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Principal, Role
from api.db import create_pool, open_pool
from api.live import AlertEvent
from api.routers.stream import SharedResidents
from hemhub.settings import Settings
from ingest import registry
from ingest.pipeline import store
from tests.api.helpers import (
    NOW,
    LiveServer,
    Seed,
    SseEvent,
    audit_rows,
    bearer,
    live_server,
    next_event,
    sse_events,
)
from tests.factories import batch, bp_reading, device
from tests.ingest.factories import entitle


@pytest.fixture
def db(database_url: str, seed: Seed) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
async def api(settings: Settings, seed: Seed) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        live_server(settings, heartbeat_s=0.2) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=10) as client,
    ):
        client.server = server  # type: ignore[attr-defined]
        yield client


def nurse(settings: Settings, tenant: str, **kw: Any) -> dict[str, str]:
    return bearer(settings, Role.NURSE, tenant, f"nurse@{tenant}", **kw)


def admin(settings: Settings, tenant: str) -> dict[str, str]:
    return bearer(settings, Role.ADMIN, tenant, f"admin@{tenant}")


@asynccontextmanager
async def stream(
    server: LiveServer, headers: dict[str, str]
) -> AsyncIterator[AsyncIterator[SseEvent]]:
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=10) as client,
        client.stream("GET", "/api/v1/alerts/stream", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        events = sse_events(response)
        await next_event(events, "ready")
        yield events


def share_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "grantee": "b",
        "purpose": "home care",
        "reason": "resident's consent 2026-12-01, care plan with Region B",
        "starts_at": (NOW - timedelta(days=2, hours=12)).isoformat(),
        "ends_at": (NOW + timedelta(days=30)).isoformat(),
    }
    body.update(overrides)
    return body


async def test_shared_resident_seen_in_period_until_revoked(
    api: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    b = nurse(settings, "b")
    server: LiveServer = api.server  # type: ignore[attr-defined]
    # before any share: a's resident is unknown to b
    r = await api.get(f"/api/v1/patients/{seed.alice}/observations", headers=b)
    assert r.status_code == 404

    r = await api.post(
        f"/api/v1/residents/{seed.alice}/shares", headers=admin(settings, "a"), json=share_body()
    )
    assert r.status_code == 201, r.text
    share = r.json()
    assert (share["owner"], share["grantee"], share["in_force"]) == ("a", "b", True)
    assert share["granted_by"] == "admin@a" and share["revoked_at"] is None

    # the roster: b's own resident and the shared one (no care unit of a's shown)
    roster = (await api.get("/api/v1/patients", headers=b)).json()
    assert [(p["display_name"], p["principal"], p["care_unit_id"]) for p in roster] == [
        ("Alice Andersson", "a", None),
        ("Bert Carlsson", "b", None),
    ]
    assert roster[0]["open_alerts"] == 1
    # readings measured in the period only (the one 3 days ago is before it)
    r = await api.get(f"/api/v1/patients/{seed.alice}/observations", headers=b)
    assert r.status_code == 200
    assert [o["id"] for o in r.json()] == [seed.alice_readings[2], seed.alice_readings[1]]
    # alerts: the open one (measured 2 h ago); not the resolved one measured before
    alerts = (await api.get("/api/v1/alerts", headers=b)).json()
    assert {(a["id"], a["principal"]) for a in alerts} == {
        (str(seed.alert_a_open), "a"),
        (str(seed.alert_b_open), "b"),
    }
    # nothing else of principal a: its other resident, the resident's thresholds
    assert (
        await api.get(f"/api/v1/patients/{seed.arne}/observations", headers=b)
    ).status_code == 404
    assert (
        await api.get(f"/api/v1/patients/{seed.alice}/thresholds", headers=b)
    ).status_code == 404
    assert (await api.get(f"/api/v1/residents/{seed.alice}", headers=b)).status_code == 404
    # seeing is not acting: the owner's nurses handle its alerts
    r = await api.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=b)
    assert r.status_code == 403
    # a care-unit token of b sees no shared resident (shares are to principals)
    unit = (
        await api.post(
            "/api/v1/care-units", headers=admin(settings, "b"), json={"name": "Hemtjänst"}
        )
    ).json()["id"]
    unit_nurse = nurse(settings, "b", care_units=[uuid.UUID(unit)])
    assert (await api.get("/api/v1/patients", headers=unit_nurse)).json() == []
    assert (
        await api.get(f"/api/v1/patients/{seed.alice}/observations", headers=unit_nurse)
    ).status_code == 404

    # a new reading of Alice through ingest, and its alert, reach b (list and stream)
    cuff = device(serial="SHARED-1", address="C0:FF:EE:00:00:77")
    cuff_id = registry.ensure_device(db, cuff)
    registry.assign_device(db, cuff_id, seed.alice, NOW - timedelta(hours=12))
    entitle(db, "hub-alice", cuff_id, "a")
    async with stream(server, b) as events:
        high = bp_reading(
            205.0, 121.0, dev=cuff, measured_at=datetime.now(UTC).replace(microsecond=0)
        )
        result = await asyncio.to_thread(store, db, [batch("hub-alice", high)])
        assert result.alerts_opened >= 1
        event = await next_event(events, "alert")
        assert event.data["alert"]["patient_id"] == str(seed.alice)
        assert event.data["alert"]["principal"] == "a"
        obs = (await api.get(f"/api/v1/patients/{seed.alice}/observations", headers=b)).json()
        assert obs[0]["values"][0]["value"] == 205.0

        # revocation: only the owner, with a reason
        path = f"/api/v1/shares/{share['id']}/revoke"
        r = await api.post(path, headers=admin(settings, "b"), json={"reason": "x"})
        assert r.status_code == 403
        r = await api.post(path, headers=admin(settings, "a"), json={"reason": ""})
        assert r.status_code == 422
        r = await api.post(path, headers=admin(settings, "a"), json={"reason": "consent withdrawn"})
        assert r.status_code == 200
        assert (r.json()["in_force"], r.json()["revoked_by"]) == (False, "admin@a")
        r = await api.post(path, headers=admin(settings, "a"), json={"reason": "again"})
        assert r.status_code == 409

        # after revocation: an alert change of Alice is not streamed to b; b's own is
        a = nurse(settings, "a")
        assert (await api.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=a)).is_success
        assert (await api.post(f"/api/v1/alerts/{seed.alert_b_open}/ack", headers=b)).is_success
        event = await next_event(events, "alert")
        assert event.data["alert"]["id"] == str(seed.alert_b_open)

    # and nothing in the lists or by id
    roster = (await api.get("/api/v1/patients", headers=b)).json()
    assert [p["display_name"] for p in roster] == ["Bert Carlsson"]
    assert (
        await api.get(f"/api/v1/patients/{seed.alice}/observations", headers=b)
    ).status_code == 404
    alerts = (await api.get(f"/api/v1/alerts?patient_id={seed.alice}", headers=b)).json()
    assert alerts == []

    # the audit: the grant and the revocation under Alice with who and why, b's reads
    rows = [r for r in audit_rows(db.info.dsn) if r[5] == seed.alice]
    grant = next(r for r in rows if r[3] == "share.grant")
    assert (grant[0], grant[2], grant[6]["grantee"], grant[6]["purpose"]) == (
        "admin@a",
        "a",
        "b",
        "home care",
    )
    revokes = [
        (r[0], r[6].get("outcome"), r[6].get("reason")) for r in rows if r[3] == "share.revoke"
    ]
    assert revokes == [
        ("admin@b", "refused", None),  # the grantee may not
        ("admin@a", None, "consent withdrawn"),
        ("admin@a", "conflict", None),  # revoked already
    ]
    assert ("nurse@b", "b", "observations.read") in {(r[0], r[2], r[3]) for r in rows}
    assert ("nurse@b", "b", "alerts.stream") in {(r[0], r[2], r[3]) for r in rows}


async def test_share_expiry_and_future_period(
    api: httpx.AsyncClient, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    b = nurse(settings, "b")
    r = await api.post(
        f"/api/v1/residents/{seed.alice}/shares", headers=admin(settings, "a"), json=share_body()
    )
    share_id = r.json()["id"]
    assert len((await api.get("/api/v1/patients", headers=b)).json()) == 2
    # the period ran out (moved into the past, as time would)
    db.execute(
        "UPDATE patient_shares SET starts_at = now() - interval '9 days',"
        " ends_at = now() - interval '1 second' WHERE id = %s",
        (share_id,),
    )
    assert [p["principal"] for p in (await api.get("/api/v1/patients", headers=b)).json()] == ["b"]
    assert (
        await api.get(f"/api/v1/patients/{seed.alice}/observations", headers=b)
    ).status_code == 404
    # a share that starts tomorrow grants nothing today
    r = await api.post(
        f"/api/v1/residents/{seed.alice}/shares",
        headers=admin(settings, "a"),
        json=share_body(starts_at=(NOW + timedelta(days=1)).isoformat()),
    )
    assert r.status_code == 201 and r.json()["in_force"] is False
    assert [p["principal"] for p in (await api.get("/api/v1/patients", headers=b)).json()] == ["b"]
    listed = (
        await api.get("/api/v1/shares?direction=received", headers=admin(settings, "b"))
    ).json()
    assert len(listed) == 2
    listed = (
        await api.get(
            "/api/v1/shares?direction=received&in_force=true", headers=admin(settings, "b")
        )
    ).json()
    assert listed == []


async def test_share_endpoints_roles_confinement_and_bad_input(
    api: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    path = f"/api/v1/residents/{seed.alice}/shares"
    # only the owner's admins grant: not its HMC or nurses, not another principal
    for headers in (
        bearer(settings, Role.HMC, "a", "hmc@a"),
        nurse(settings, "a"),
    ):
        assert (await api.post(path, headers=headers, json=share_body())).status_code == 403
    r = await api.post(path, headers=admin(settings, "b"), json=share_body(grantee="a"))
    assert r.status_code == 404 and r.json() == {"detail": "patient not found"}
    r = await api.post(
        f"/api/v1/residents/{seed.bert}/shares", headers=admin(settings, "a"), json=share_body()
    )
    assert r.status_code == 404
    a = admin(settings, "a")
    for bad, why in (
        (share_body(grantee="a"), "already"),
        (share_body(grantee="nobody"), None),
        (share_body(ends_at=(NOW - timedelta(days=3)).isoformat()), "after starts_at"),
        (
            share_body(
                starts_at=(NOW - timedelta(days=9)).isoformat(),
                ends_at=(NOW - timedelta(days=1)).isoformat(),
            ),
            "past",
        ),
        (share_body(purpose=""), None),
        (share_body(reason="  "), None),
        ({k: v for k, v in share_body().items() if k != "reason"}, None),
        (share_body(ends_at="2026-13-01"), None),
    ):
        r = await api.post(path, headers=a, json=bad)
        if bad["grantee"] == "nobody":
            assert r.status_code == 404 and r.json() == {"detail": "principal not found"}
            continue
        assert r.status_code == 422, (bad, r.text)
        if why:
            assert why in r.text
    share = (await api.post(path, headers=a, json=share_body())).json()
    # the share is seen by its two principals' admins, by no one else
    assert (await api.get(f"/api/v1/shares/{share['id']}", headers=a)).status_code == 200
    assert (
        await api.get(f"/api/v1/shares/{share['id']}", headers=admin(settings, "b"))
    ).status_code == 200
    assert (
        await api.get(f"/api/v1/shares/{share['id']}", headers=admin(settings, "c"))
    ).status_code == 404
    assert (
        await api.post(
            f"/api/v1/shares/{share['id']}/revoke",
            headers=admin(settings, "c"),
            json={"reason": "x"},
        )
    ).status_code == 404
    assert [s["id"] for s in (await api.get(path, headers=a)).json()] == [share["id"]]
    assert (await api.get(path, headers=admin(settings, "b"))).status_code == 404
    assert (await api.get("/api/v1/shares", headers=admin(settings, "c"))).json() == []


async def test_stream_prefilter_of_shared_residents(
    api: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    """The live stream asks the database only about other principals' events of residents
    shared with the caller's; a care-unit token never (it sees no shared resident)."""

    def event(tenant: str, patient: uuid.UUID) -> AlertEvent:
        return AlertEvent(uuid.uuid4(), tenant, patient, "open", "bp_high", "opened")

    await api.post(
        f"/api/v1/residents/{seed.alice}/shares", headers=admin(settings, "a"), json=share_body()
    )
    pool = create_pool(database_url)
    await open_pool(pool)
    try:
        whole = SharedResidents(pool, Principal("n", Role.NURSE, "b"))
        assert await whole.may_show(event("b", seed.bert))
        assert await whole.may_show(event("a", seed.alice))
        assert not await whole.may_show(event("a", seed.arne))
        unit = SharedResidents(pool, Principal("n", Role.NURSE, "b", frozenset({uuid.uuid4()})))
        assert not await unit.may_show(event("a", seed.alice))
        assert unit.loaded_at is None  # no database round trip
    finally:
        await pool.close()
