"""The v1 endpoints against a real, migrated PostgreSQL: tenancy, alerts workflow, audit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import psycopg.errors
import pytest

from api.app import create_app
from api.auth import Role
from hemhub.settings import Settings
from ingest.migrations import MigrationReport, migrate
from ingest.pipeline import DeadLetter, store
from tests.api.helpers import (
    NOW,
    Seed,
    api_client,
    audit_rows,
    bearer,
    make_settings,
    refuse_audit_writes,
)


def nurse(settings: Settings, tenant: str = "a", sub: str = "anna") -> dict[str, str]:
    return bearer(settings, Role.NURSE, tenant, sub)


# --- ops ----------------------------------------------------------------------------------


async def test_healthz_needs_no_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_reports_partitioning(
    client: httpx.AsyncClient, migration: MigrationReport
) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"
    assert r.json()["partitioning"] == migration.partitioning


async def test_readyz_reports_a_hypertable(tmp_path: Path, timescaledb_url: str) -> None:
    """Where the server has TimescaleDB, readings are a hypertable, and /readyz says so."""
    assert migrate(timescaledb_url).partitioning == "timescaledb"
    async with api_client(make_settings(tmp_path, timescaledb_url)) as client:
        r = await client.get("/readyz")
    assert r.status_code == 200
    assert (r.json()["database"], r.json()["partitioning"]) == ("ok", "timescaledb")


async def test_readyz_counts_dead_letters(client: httpx.AsyncClient, database_url: str) -> None:
    before = (await client.get("/readyz")).json()
    topic = f"hemhub/v1/hubs/ready-{uuid.uuid4().hex[:8]}/readings"
    with psycopg.connect(database_url, autocommit=True) as conn:
        bad = DeadLetter(topic, "invalid JSON: EOF", b"{")
        store(conn, [], dead_letters=[bad, bad, DeadLetter(topic, "invalid JSON", b"[")])
    after = (await client.get("/readyz")).json()
    assert after["dead_letters"] - before["dead_letters"] == 2
    assert after["dead_letter_deliveries"] - before["dead_letter_deliveries"] == 3
    assert after["last_dead_letter_at"] is not None
    assert after["last_dead_letter_at"] > (before["last_dead_letter_at"] or "")


async def test_readyz_not_migrated(tmp_path: Path, database_url: str) -> None:
    async with api_client(make_settings(tmp_path, database_url)) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["database"] == "not migrated"


async def test_readyz_database_unreachable(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"  # port 9: discard, closed
    async with api_client(make_settings(tmp_path, url)) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["database"] == "unreachable"
        assert (await client.get("/healthz")).status_code == 200  # liveness is independent


async def test_ui_is_served_with_a_strict_csp(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert '<script type="module" src="/static/js/core/main.js"' in r.text
    for module in ("main", "shell", "dom", "api", "auth", "i18n", "live", "router"):
        js = await client.get(f"/static/js/core/{module}.js")
        assert js.status_code == 200 and ".innerHTML" not in js.text, module


# --- patients and observations ---------------------------------------------------------------


async def test_patients_are_per_tenant(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    r = await client.get("/api/v1/patients", headers=nurse(settings, "a"))
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.json() == [
        {
            "id": str(seed.alice),
            "display_name": "Alice Andersson",
            "programme": "hypertension",
            "open_alerts": 1,
            "care_unit_id": None,
            "principal": "a",
            "deactivated_at": None,
        },
        {
            "id": str(seed.arne),
            "display_name": "Arne Berg",
            "programme": "heart_failure",
            "open_alerts": 0,
            "care_unit_id": None,
            "principal": "a",
            "deactivated_at": None,
        },
    ]
    r = await client.get("/api/v1/patients", headers=nurse(settings, "b", "bo"))
    assert [p["id"] for p in r.json()] == [str(seed.bert)]
    r = await client.get("/api/v1/patients", headers=nurse(settings, "nobody"))
    assert r.json() == []


async def test_observations(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    r = await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=nurse(settings))
    assert r.status_code == 200, r.text
    body = r.json()
    # Newest first; the unattributed reading of the same device is never shown.
    assert [o["id"] for o in body] == list(reversed(seed.alice_readings))
    newest = body[0]
    assert newest["measurement_type"] == "blood_pressure"
    assert newest["values"][0] == {
        "name": "systolic",
        "loinc": "8480-6",
        "value": 180.0,
        "unit": "mm[Hg]",
    }
    assert newest["values"][2]["value"] is None  # a special value stays missing
    assert newest["status"] == ["irregular_pulse"]
    assert newest["device"] == {"address": "C0:11:22:33:44:55", "model": "BP7150", "serial": "SN-A"}
    assert newest["hub_id"] == "hub-1"
    assert newest["clock"] == {
        "source": "offset_measured",
        "offset_s": 12.5,
        "hub_clock_synced": True,
    }
    assert newest["raw_hex"] == "1e7a00"
    assert [o["late"] for o in body] == [False, False, True]


async def test_observation_filters(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    url = f"/api/v1/patients/{seed.alice}/observations"
    headers = nurse(settings)
    since = (NOW - timedelta(days=2, hours=1)).isoformat()
    r = await client.get(url, params={"since": since}, headers=headers)
    assert [o["id"] for o in r.json()] == [seed.alice_readings[2], seed.alice_readings[1]]
    r = await client.get(
        url, params={"since": since, "until": r.json()[0]["measured_at"]}, headers=headers
    )
    assert [o["id"] for o in r.json()] == [seed.alice_readings[1]]
    r = await client.get(url, params={"limit": 1, "type": "blood_pressure"}, headers=headers)
    assert [o["id"] for o in r.json()] == [seed.alice_readings[2]]

    for params in (
        {"type": "weight_of_the_soul"},
        {"limit": 0},
        {"limit": 100000},
        {"since": "2024-01-01T00:00:00"},  # naive: ambiguous, refused
        {"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"},
    ):
        r = await client.get(url, params=params, headers=headers)
        assert r.status_code == 422, params
        assert isinstance(r.json()["detail"], list)
    r = await client.get("/api/v1/patients/not-a-uuid/observations", headers=headers)
    assert r.status_code == 422


async def test_observations_of_another_tenant_are_404(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    r = await client.get(f"/api/v1/patients/{seed.bert}/observations", headers=nurse(settings))
    assert r.status_code == 404
    unknown = await client.get(
        f"/api/v1/patients/{uuid.uuid4()}/observations", headers=nurse(settings)
    )
    # Indistinguishable from an id that does not exist at all.
    assert unknown.status_code == 404 and unknown.json() == r.json()
    # An admin of A is no different.
    admin = bearer(settings, Role.ADMIN, "a", "root")
    r = await client.get(f"/api/v1/patients/{seed.bert}/observations", headers=admin)
    assert r.status_code == 404


# --- alerts ---------------------------------------------------------------------------------


async def test_alerts_are_per_tenant_with_values(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    r = await client.get("/api/v1/alerts", headers=nurse(settings))
    assert r.status_code == 200
    alerts = r.json()
    assert [a["id"] for a in alerts] == [str(seed.alert_a_open), str(seed.alert_a_resolved)]
    first = alerts[0]
    assert first["patient_id"] == str(seed.alice)
    assert first["patient_display_name"] == "Alice Andersson"
    assert (first["rule"], first["rule_version"], first["severity"]) == ("bp_high", 3, "high")
    assert first["status"] == "open" and first["count"] == 2
    assert first["reading_id"] == seed.alice_readings[2]
    assert [v["value"] for v in first["values"]][:2] == [180.0, 90.0]
    assert alerts[1]["values"] is None  # no reading key: no values, not an error

    r = await client.get("/api/v1/alerts", params={"status": "open"}, headers=nurse(settings))
    assert [a["id"] for a in r.json()] == [str(seed.alert_a_open)]
    # Filtering by another tenant's patient shows nothing (and says nothing about it).
    r = await client.get(
        "/api/v1/alerts", params={"patient_id": str(seed.bert)}, headers=nurse(settings)
    )
    assert r.status_code == 200 and r.json() == []
    r = await client.get("/api/v1/alerts", headers=nurse(settings, "b", "bo"))
    assert [a["id"] for a in r.json()] == [str(seed.alert_b_open)]
    assert r.json()[0]["values"][0]["value"] == 190.0
    r = await client.get("/api/v1/alerts", params={"status": "closed"}, headers=nurse(settings))
    assert r.status_code == 422


def _alert_row(database_url: str, alert_id: uuid.UUID) -> tuple[object, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status, acknowledged_by, acknowledged_at, resolved_by, resolution_note"
            " FROM alerts WHERE id = %s",
            (alert_id,),
        ).fetchone()
    assert row is not None
    return row


async def test_ack_records_who_and_is_idempotent(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    url = f"/api/v1/alerts/{seed.alert_a_open}/ack"
    r = await client.post(url, headers=nurse(settings, "a", "anna"))
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "anna"
    assert acked["acknowledged_at"] is not None
    status, by, at, _, _ = _alert_row(database_url, seed.alert_a_open)
    assert (status, by) == ("acknowledged", "anna") and at is not None

    # A second ack (by anyone) changes nothing: the first acknowledger stays on record.
    again = await client.post(url, headers=nurse(settings, "a", "greta"))
    assert again.status_code == 200
    assert again.json() == acked
    assert _alert_row(database_url, seed.alert_a_open)[:3] == (status, by, at)

    r = await client.get("/api/v1/patients", headers=nurse(settings))
    assert r.json()[0]["open_alerts"] == 0


async def test_ack_resolved_is_409(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    r = await client.post(f"/api/v1/alerts/{seed.alert_a_resolved}/ack", headers=nurse(settings))
    assert r.status_code == 409
    assert _alert_row(database_url, seed.alert_a_resolved)[:2] == ("resolved", None)


async def test_alerts_of_another_tenant_cannot_be_touched(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    for action in ("ack", "resolve"):
        r = await client.post(
            f"/api/v1/alerts/{seed.alert_b_open}/{action}", headers=nurse(settings)
        )
        assert r.status_code == 404
        r = await client.post(f"/api/v1/alerts/{uuid.uuid4()}/{action}", headers=nurse(settings))
        assert r.status_code == 404
    assert _alert_row(database_url, seed.alert_b_open)[:2] == ("open", None)


async def test_resolve_with_note(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    url = f"/api/v1/alerts/{seed.alert_a_open}/resolve"
    r = await client.post(
        url, json={"note": "called, re-measured 135/85"}, headers=nurse(settings, "a", "anna")
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved" and r.json()["resolved_by"] == "anna"
    assert r.json()["resolution_note"] == "called, re-measured 135/85"
    again = await client.post(url, headers=nurse(settings, "a", "greta"))  # no body is fine
    assert again.status_code == 200 and again.json() == r.json()
    assert (
        await client.post(url.replace("resolve", "ack"), headers=nurse(settings))
    ).status_code == 409
    r = await client.post(
        f"/api/v1/alerts/{seed.alert_a_resolved}/resolve",
        json={"note": 5, "extra": True},
        headers=nurse(settings),
    )
    assert r.status_code == 422


# --- audit ----------------------------------------------------------------------------------


async def test_every_patient_data_read_is_audited(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    a = nurse(settings, "a", "anna")
    assert audit_rows(database_url) == []

    await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=a)
    rows = audit_rows(database_url)
    assert len(rows) == 1
    subject, role, tenant, action, resource, patient, detail = rows[0]
    assert (subject, role, tenant, action) == ("anna", "nurse", "a", "observations.read")
    assert resource == f"patients/{seed.alice}/observations" and patient == seed.alice
    assert detail["count"] == 3  # type: ignore[index]

    # The roster shows names: one row per patient shown, each with the patient's id.
    await client.get("/api/v1/patients", headers=a)
    assert [r[3:6] for r in audit_rows(database_url)[1:]] == [
        ("patients.list", "patients", seed.alice),
        ("patients.list", "patients", seed.arne),
    ]

    await client.get("/api/v1/alerts", headers=a)  # two alerts, both Alice's: one row
    assert [r[3:6] for r in audit_rows(database_url)[3:]] == [("alerts.list", "alerts", seed.alice)]

    await client.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=a)
    assert audit_rows(database_url)[-1][3:7] == (
        "alert.ack",
        f"alerts/{seed.alert_a_open}",
        seed.alice,
        {"changed": True},
    )

    # A probe of another tenant's patient is logged (and answered 404).
    await client.get(f"/api/v1/patients/{seed.bert}/observations", headers=a)
    assert audit_rows(database_url)[-1][3:7] == (
        "observations.read",
        f"patients/{seed.bert}/observations",
        seed.bert,
        {"outcome": "not_found"},
    )
    # So is an ack of another tenant's alert (404), and an ack of a resolved one (409).
    await client.post(f"/api/v1/alerts/{seed.alert_b_open}/ack", headers=a)
    assert audit_rows(database_url)[-1][3:7] == (
        "alert.ack",
        f"alerts/{seed.alert_b_open}",
        None,
        {"outcome": "not_found"},
    )
    await client.post(f"/api/v1/alerts/{seed.alert_a_resolved}/ack", headers=a)
    assert audit_rows(database_url)[-1][3:7] == (
        "alert.ack",
        f"alerts/{seed.alert_a_resolved}",
        seed.alice,
        {"outcome": "conflict", "status": "resolved"},
    )
    assert len(audit_rows(database_url)) == 8

    # Requests that return no patient data are not: health, readiness, bad tokens, 403s.
    await client.get("/readyz")
    await client.get("/api/v1/patients", headers={"Authorization": "Bearer nope"})
    await client.get("/api/v1/patients", headers=bearer(settings, Role.HMC, "a"))
    assert len(audit_rows(database_url)) == 8


async def test_audit_and_read_share_a_transaction(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    # If the audit row cannot be written, no data leaves.
    with psycopg.connect(database_url, autocommit=True) as conn:
        refuse_audit_writes(conn)
    # ASGITransport re-raises server errors instead of answering 500: either way, no data.
    with pytest.raises(psycopg.errors.RaiseException, match="audit store full"):
        await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=nurse(settings))
    # The ack must not stick either when its audit row fails.
    with pytest.raises(psycopg.errors.RaiseException):
        await client.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=nurse(settings))
    assert _alert_row(database_url, seed.alert_a_open)[0] == "open"


async def test_works_without_lifespan(settings: Settings, seed: Seed) -> None:
    # Some callers (and tests) mount the app on a bare ASGITransport: the pool opens lazily.
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hemhub.test") as client:
        r = await client.get("/api/v1/patients", headers=nurse(settings))
        assert r.status_code == 200 and len(r.json()) == 2
        assert (await client.get("/readyz")).status_code == 200
    await app.state.pool.close()
