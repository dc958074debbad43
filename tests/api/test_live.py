"""Live alerts: NOTIFY from ack/resolve, and the SSE stream, against a real PostgreSQL.

The stream is read over a real socket (uvicorn on 127.0.0.1): httpx's ASGI transport
buffers whole responses, so it cannot show events as they come.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role
from hemhub.settings import Settings
from ingest import registry
from ingest.alerts import NOTIFY_CHANNEL
from ingest.pipeline import store
from tests.api.helpers import (
    LiveServer,
    Seed,
    SseEvent,
    audit_rows,
    bearer,
    live_server,
    next_event,
    refuse_audit_writes,
    sse_events,
)
from tests.factories import batch, bp_reading, device
from tests.ingest.factories import entitle

PAYLOAD_KEYS = {"alert_id", "tenant_id", "patient_id", "status", "rule", "event"}


@pytest.fixture
def db(database_url: str, seed: Seed) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
async def server(settings: Settings, seed: Seed) -> AsyncIterator[LiveServer]:
    async with live_server(settings, heartbeat_s=0.2) as s:
        yield s


@asynccontextmanager
async def stream(
    server: LiveServer, headers: dict[str, str]
) -> AsyncIterator[AsyncIterator[SseEvent]]:
    """An open alert stream, after its `ready` event (subscribed from then on)."""
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=10) as client,
        client.stream("GET", "/api/v1/alerts/stream", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        await next_event(events, "ready")
        yield events


def hypertensive_device(conn: psycopg.Connection[Any], patient: uuid.UUID, serial: str) -> Any:
    """A new cuff assigned to `patient` for the last day; returns its identity."""
    identity = device(serial=serial, address="C0:FF:EE:00:00:42")
    device_id = registry.ensure_device(conn, identity)
    registry.assign_device(conn, device_id, patient, datetime.now(UTC) - timedelta(days=1))
    tenant = conn.execute("SELECT tenant_id FROM patients WHERE id = %s", (patient,)).fetchone()
    assert tenant is not None
    entitle(conn, _hub_of(identity), device_id, tenant[0])
    return identity


def _hub_of(identity: Any) -> str:
    """The resident's hub: entitled to the cuff (the database is the test's own)."""
    return f"live-{identity.serial}"


async def store_hypertensive(conn: psycopg.Connection[Any], identity: Any) -> None:
    reading = bp_reading(
        195.0, 118.0, dev=identity, measured_at=datetime.now(UTC).replace(microsecond=0)
    )
    # The real ingest path, off the event loop that serves the API.
    await asyncio.to_thread(store, conn, [batch(_hub_of(identity), reading)])


def nurse(settings: Settings, tenant: str, **kw: Any) -> dict[str, str]:
    return bearer(settings, Role.NURSE, tenant, f"nurse@{tenant}", **kw)


# --- NOTIFY from the API ------------------------------------------------------------------


async def test_ack_and_resolve_notify_like_ingest(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        a = nurse(settings, "a")
        assert (await client.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=a)).is_success
        # idempotent repeat: nothing changed, nothing announced
        assert (await client.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=a)).is_success
        r = await client.post(
            f"/api/v1/alerts/{seed.alert_a_open}/resolve", headers=a, json={"note": "called"}
        )
        assert r.is_success
        got = [json.loads(n.payload) for n in listener.notifies(timeout=2.0, stop_after=3)]
    assert [set(p) for p in got] == [PAYLOAD_KEYS, PAYLOAD_KEYS]
    assert got == [
        {
            "alert_id": str(seed.alert_a_open),
            "tenant_id": "a",
            "patient_id": str(seed.alice),
            "status": status,
            "rule": "bp_high",
            "event": status,
        }
        for status in ("acknowledged", "resolved")
    ]


async def test_no_notify_when_the_change_rolls_back(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        refuse_audit_writes(conn)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with pytest.raises(psycopg.errors.RaiseException):
            await client.post(
                f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=nurse(settings, "a")
            )
        assert list(conn.notifies(timeout=1.0)) == []
        row = conn.execute(
            "SELECT status FROM alerts WHERE id = %s", (seed.alert_a_open,)
        ).fetchone()
        assert row == ("open",)


# --- the stream ---------------------------------------------------------------------------


async def test_stream_delivers_ingest_alert_to_its_tenant_only(
    server: LiveServer,
    settings: Settings,
    seed: Seed,
    db: psycopg.Connection[Any],
    database_url: str,
) -> None:
    cuff = hypertensive_device(db, seed.alice, "LIVE-1")
    async with (
        stream(server, nurse(settings, "a")) as events_a,
        stream(server, nurse(settings, "b")) as events_b,
    ):
        # One LISTEN connection for the process, however many streams.
        listeners = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hemhub-api-listen'"
            " AND datname = current_database()"
        ).fetchone()
        assert listeners == (1,)

        await store_hypertensive(db, cuff)
        got = (await next_event(events_a, "alert")).data
        assert got["event"] == "opened"
        alert = got["alert"]
        assert alert["patient_id"] == str(seed.alice)
        assert alert["rule"] == "blood_pressure_high" and alert["status"] == "open"
        assert [v["value"] for v in alert["values"][:2]] == [195.0, 118.0]

        # Tenant b hears nothing of it: the first alert event b gets is its own, which
        # came after a's on the same (ordered) listener.
        b = nurse(settings, "b")
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            r = await client.post(f"/api/v1/alerts/{seed.alert_b_open}/ack", headers=b)
            assert r.status_code == 200
        own = (await next_event(events_b, "alert")).data
        assert own["event"] == "acknowledged"
        assert own["alert"]["id"] == str(seed.alert_b_open)
        assert own["alert"]["acknowledged_by"] == "nurse@b"

        # Acknowledging a's alert through the API reaches a's stream too.
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            r = await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=nurse(settings, "a"))
            assert r.status_code == 200
        acked = (await next_event(events_a, "alert")).data
        assert acked["event"] == "acknowledged" and acked["alert"]["id"] == alert["id"]
        # heartbeats keep the connection alive between events
        assert (await next_event(events_a, "comment", within_s=2)).data == "heartbeat"

    # Audit: the opening of each stream and every alert delivered, per patient.
    rows = [r for r in audit_rows(database_url) if r[3].startswith("alerts.stream")]
    assert sorted((r[2], r[3], r[5]) for r in rows) == sorted(
        [
            ("a", "alerts.stream.open", None),
            ("b", "alerts.stream.open", None),
            ("a", "alerts.stream", seed.alice),
            ("b", "alerts.stream", seed.bert),
            ("a", "alerts.stream", seed.alice),
        ]
    )
    assert all(r[2] != "b" or r[5] != seed.alice for r in rows)


async def test_stream_honours_care_units(
    server: LiveServer, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    north = registry.create_care_unit(db, "a", "Norr")
    south = registry.create_care_unit(db, "a", "Syd")
    registry.place_patient(db, seed.alice, south)
    registry.place_patient(db, seed.arne, north)
    cuff_alice = hypertensive_device(db, seed.alice, "LIVE-2")
    cuff_arne = hypertensive_device(db, seed.arne, "LIVE-3")
    async with stream(server, nurse(settings, "a", care_units=[north])) as events:
        await store_hypertensive(db, cuff_alice)  # south: not for this nurse
        await store_hypertensive(db, cuff_arne)  # north
        got = (await next_event(events, "alert")).data
        assert got["alert"]["patient_id"] == str(seed.arne)


async def test_stream_needs_a_nurse_token(server: LiveServer, settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        assert (await client.get("/api/v1/alerts/stream")).status_code == 401
        r = await client.get("/api/v1/alerts/stream", headers=bearer(settings, Role.HMC, "a"))
        assert r.status_code == 403
        r = await client.get(
            "/api/v1/alerts/stream", headers=bearer(settings, Role.INTEGRATION, "a")
        )
        assert r.status_code == 403


async def test_stream_ends_when_the_token_expires(
    server: LiveServer, settings: Settings, seed: Seed
) -> None:
    from api.auth import issue_token

    token = issue_token(settings, sub="n", role=Role.NURSE, tenant="a", ttl=timedelta(seconds=2))
    async with stream(server, {"Authorization": f"Bearer {token}"}) as events:
        # the server allows 30 s of clock leeway on verification, not on the stream
        assert (await next_event(events, "expired", within_s=5)).data == {"detail": "token expired"}


async def test_listener_reconnects_and_asks_for_resync(
    server: LiveServer, settings: Settings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    cuff = hypertensive_device(db, seed.alice, "LIVE-4")
    async with stream(server, nurse(settings, "a")) as events:
        # PostgreSQL drops the listening session (a restart, a failover, an idle killer).
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'hemhub-api-listen' AND datname = current_database()"
        ).fetchall()
        assert killed == [(True,)]
        # What was announced while nobody listened is lost: the client is told to reload.
        got = await next_event(events, "resync", within_s=15)
        assert got.data == {"reason": "listener reconnected"}
        await store_hypertensive(db, cuff)
        assert (await next_event(events, "alert")).data["event"] == "opened"
