"""Helpers of the API tests: settings, an in-process client with lifespan, seed rows."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import uvicorn
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from psycopg.types.json import Jsonb

from api.app import create_app
from api.auth import Role, ensure_demo_key, issue_token
from hemhub.settings import Settings


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    # Explicit values everywhere: HEMHUB_* variables of the machine must not leak in.
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": tmp_path,
        "jwt_private_key_file": tmp_path / "demo-signing-key.pem",
        "jwt_jwks_url": None,
        "jwt_issuer": "hemhub-demo",
        "jwt_audience": "hemhub",
        # Tokens are signed with the test's own key (no identity provider here).
        "jwt_allow_self_made_key": True,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind an in-process transport, with its lifespan (pool) running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hemhub.test") as c:
            yield c


def token_claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Valid claims for a nurse of tenant a, with `overrides` (None drops a claim)."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "nurse-1",
        "role": "nurse",
        "tenant": "a",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign_claims(settings: Settings, claims: dict[str, Any]) -> str:
    """`claims` signed with the settings' own key, whatever they say."""
    ensure_demo_key(settings.demo_key_file)
    key = serialization.load_pem_private_key(settings.demo_key_file.read_bytes(), None)
    return jwt.encode(claims, key, algorithm="RS256")  # type: ignore[arg-type]


def bearer(
    settings: Settings,
    role: Role,
    tenant: str,
    sub: str = "nurse-1",
    *,
    care_units: list[uuid.UUID] | None = None,
) -> dict[str, str]:
    token = issue_token(settings, sub=sub, role=role, tenant=tenant, care_units=care_units)
    return {"Authorization": f"Bearer {token}"}


# --- seed data ----------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


def key(label: str) -> str:
    """A well-formed idempotency key (64 hex chars) derived from a label."""
    return hashlib.sha256(label.encode()).hexdigest()


def bp_values(systolic: float, diastolic: float) -> list[dict[str, object]]:
    return [
        {"name": "systolic", "loinc": "8480-6", "value": systolic, "unit": "mm[Hg]"},
        {"name": "diastolic", "loinc": "8462-4", "value": diastolic, "unit": "mm[Hg]"},
        {"name": "pulse_rate", "loinc": "8867-4", "value": None, "unit": "/min"},
    ]


@dataclass
class Seed:
    """Two principals: A (two patients) and B (one), each with a device, readings, alerts."""

    alice: uuid.UUID  # tenant a
    arne: uuid.UUID  # tenant a, no readings
    bert: uuid.UUID  # tenant b
    alice_readings: list[str]  # keys, oldest first
    bert_reading: str
    alert_a_open: uuid.UUID
    alert_a_resolved: uuid.UUID
    alert_b_open: uuid.UUID


def insert_reading(
    conn: psycopg.Connection,
    *,
    label: str,
    device: uuid.UUID,
    patient: uuid.UUID | None,
    tenant: str | None,
    measured_at: datetime,
    values: list[dict[str, object]],
    status: list[str] | None = None,
    late: bool = False,
) -> str:
    k = key(label)
    conn.execute(
        "INSERT INTO reading_keys (idempotency_key, measured_at) VALUES (%s, %s)", (k, measured_at)
    )
    conn.execute(
        """
        INSERT INTO readings (measured_at, idempotency_key, hub_id, device_id, patient_id,
            tenant_id, measurement_type, characteristic, "values", status, device_time,
            hub_received_at, clock_source, clock_offset_s, hub_clock_synced, late, raw)
        VALUES (%s, %s, 'hub-1', %s, %s, %s, 'blood_pressure', '2A35', %s, %s, NULL,
            %s, 'offset_measured', 12.5, true, %s, %s)
        """,
        (
            measured_at,
            k,
            device,
            patient,
            tenant,
            Jsonb(values),
            status or [],
            measured_at + timedelta(seconds=3),
            late,
            bytes.fromhex("1e7a00"),
        ),
    )
    return k


def insert_alert(
    conn: psycopg.Connection,
    *,
    tenant: str,
    patient: uuid.UUID,
    rule: str,
    status: str,
    reading: str | None,
    last_at: datetime,
) -> uuid.UUID:
    row = conn.execute(
        """
        INSERT INTO alerts (tenant_id, patient_id, rule, rule_version, severity, status, reason,
            first_reading_key, last_reading_key, measured_at, opened_at, last_at, count,
            resolved_by, resolved_at)
        VALUES (%s, %s, %s, 3, 'high', %s, 'BP 182/95 mm[Hg]', %s, %s, %s, %s, %s, 2,
            CASE WHEN %s = 'resolved' THEN 'nurse-9' END,
            CASE WHEN %s = 'resolved' THEN now() END)
        RETURNING id
        """,
        (
            tenant,
            patient,
            rule,
            status,
            reading,
            reading,
            last_at,
            last_at,
            last_at,
            status,
            status,
        ),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def seed_database(database_url: str) -> Seed:
    """Insert the two principals' rows with plain SQL (the database must be migrated)."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO tenants (id, name) VALUES ('a', 'Kommun A'), ('b', 'Region B')")

        def patient(tenant: str, name: str, programme: str = "hypertension") -> uuid.UUID:
            row = conn.execute(
                "INSERT INTO patients (tenant_id, display_name, programme)"
                " VALUES (%s, %s, %s) RETURNING id",
                (tenant, name, programme),
            ).fetchone()
            assert row is not None
            return uuid.UUID(str(row[0]))

        def device(serial: str) -> uuid.UUID:
            row = conn.execute(
                "INSERT INTO devices (stable_id, address, manufacturer, model, serial)"
                " VALUES (%s, 'C0:11:22:33:44:55', 'Omron', 'BP7150', %s) RETURNING id",
                (f"Omron|BP7150|{serial}", serial),
            ).fetchone()
            assert row is not None
            return uuid.UUID(str(row[0]))

        alice = patient("a", "Alice Andersson")
        arne = patient("a", "Arne Berg", "heart_failure")
        bert = patient("b", "Bert Carlsson")
        dev_a, dev_b = device("SN-A"), device("SN-B")
        for dev, pat, tenant in ((dev_a, alice, "a"), (dev_b, bert, "b")):
            conn.execute(
                "INSERT INTO device_assignments (device_id, patient_id, tenant_id, started_at)"
                " VALUES (%s, %s, %s, %s)",
                (dev, pat, tenant, NOW - timedelta(days=90)),
            )

        alice_readings = [
            insert_reading(
                conn,
                label=f"alice-{i}",
                device=dev_a,
                patient=alice,
                tenant="a",
                measured_at=NOW - timedelta(days=3 - i),
                values=bp_values(120 + 30 * i, 80 + 5 * i),
                status=["irregular_pulse"] if i == 2 else [],
                late=i == 0,
            )
            for i in range(3)
        ]
        # A reading no assignment covered: stored, never shown to anyone.
        insert_reading(
            conn,
            label="unattributed",
            device=dev_a,
            patient=None,
            tenant=None,
            measured_at=NOW - timedelta(days=200),
            values=bp_values(110, 70),
        )
        bert_reading = insert_reading(
            conn,
            label="bert-0",
            device=dev_b,
            patient=bert,
            tenant="b",
            measured_at=NOW - timedelta(hours=1),
            values=bp_values(190, 100),
        )
        alert_a_open = insert_alert(
            conn,
            tenant="a",
            patient=alice,
            rule="bp_high",
            status="open",
            reading=alice_readings[2],
            last_at=NOW - timedelta(hours=2),
        )
        alert_a_resolved = insert_alert(
            conn,
            tenant="a",
            patient=alice,
            rule="bp_low",
            status="resolved",
            reading=None,
            last_at=NOW - timedelta(days=5),
        )
        alert_b_open = insert_alert(
            conn,
            tenant="b",
            patient=bert,
            rule="bp_high",
            status="open",
            reading=bert_reading,
            last_at=NOW - timedelta(hours=1),
        )
    return Seed(
        alice=alice,
        arne=arne,
        bert=bert,
        alice_readings=alice_readings,
        bert_reading=bert_reading,
        alert_a_open=alert_a_open,
        alert_a_resolved=alert_a_resolved,
        alert_b_open=alert_b_open,
    )


def refuse_audit_writes(conn: psycopg.Connection[Any]) -> None:
    """Make every audit_log insert fail ("audit store full"), as a full disk would."""
    conn.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'audit store full'; END $$"
    )
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse()"
    )


def audit_rows(database_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT subject, role, tenant_id, action, resource, patient_id, detail"
            " FROM audit_log ORDER BY id"
        ).fetchall()


# --- a real HTTP server and an SSE reader (streams need a real socket) ---------------------


@dataclass
class LiveServer:
    base_url: str
    app: FastAPI


@asynccontextmanager
async def live_server(
    settings: Settings, *, heartbeat_s: float = 15.0
) -> AsyncIterator[LiveServer]:
    """The app under uvicorn on 127.0.0.1 (a free port), with its lifespan, in this loop."""
    app = create_app(settings)
    app.state.sse_heartbeat_s = heartbeat_s
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.025)
        assert server.started, "uvicorn did not start"
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@dataclass
class SseEvent:
    event: str  # "message" when unnamed, "comment" for a comment line (heartbeat)
    data: Any


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream response into events (comments included)."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(event, json.loads("\n".join(data)))
            event, data = "message", []
        elif line.startswith(":"):
            yield SseEvent("comment", line[1:].strip())
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())


async def next_event(
    events: AsyncIterator[SseEvent], name: str, within_s: float = 10.0
) -> SseEvent:
    """The next event called `name`, skipping others (heartbeats)."""

    async def find() -> SseEvent:
        async for e in events:
            if e.event == name:
                return e
        raise AssertionError(f"stream ended before a {name!r} event")

    return await asyncio.wait_for(find(), within_s)
