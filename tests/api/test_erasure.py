"""A resident's erasure (POST /api/v1/residents/{id}/erasure, ingest/sql/0024): afterwards
nothing in the database identifies the resident, the access log keeps every row (under
a pseudonym) and its hash chain still verifies; who may erase, and when."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from psycopg import sql

from api.auth import Role
from hemhub.settings import Settings
from ingest.audit_chain import verify_database
from ingest.migrations import migrate
from tests.api.helpers import Seed, bearer, seed_database


def _mentions(database_url: str, needles: list[str]) -> dict[str, int]:
    """Rows of every table of the schema whose text (all columns) holds any needle."""
    found: dict[str, int] = {}
    with psycopg.connect(database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
                " AND NOT c.relispartition"
            )
        ]
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(
                sql.Identifier(table),
                sql.SQL(" OR ").join(
                    sql.SQL("strpos(lower(t::text), {}) > 0").format(sql.Literal(n.lower()))
                    for n in needles
                ),
            )
            row = conn.execute(query).fetchone()
            if row and row[0]:
                found[table] = row[0]
    return found


async def test_after_erasure_nothing_identifies_the_resident_and_the_chain_verifies(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    hmc = bearer(settings, Role.HMC, "a", "tech@a")
    admin = bearer(settings, Role.ADMIN, "a", "admin@a")
    nurse = bearer(settings, Role.NURSE, "a", "anna")
    alice = seed.alice
    # a history: read, renamed, scheduled, shared, probed by another principal
    assert (await client.get(f"/api/v1/patients/{alice}/observations", headers=nurse)).is_success
    r = await client.patch(
        f"/api/v1/residents/{alice}", json={"display_name": "Alice Lindqvist"}, headers=hmc
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        f"/api/v1/residents/{alice}/schedules/blood_pressure", json={"every": "P1D"}, headers=hmc
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/residents/{alice}/shares",
        json={
            "grantee": "b",
            "purpose": "primary care follow-up",
            "reason": "Alice Andersson consented on the phone",
            "ends_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/alerts/{seed.alert_a_open}/ack",
        json={"note": "called Alice, she feels fine"},
        headers=nurse,
    )
    assert r.status_code == 200, r.text
    probe = await client.get(
        f"/api/v1/residents/{alice}", headers=bearer(settings, Role.HMC, "b", "tech@b")
    )
    assert probe.status_code == 404

    # only a deactivated resident, only by its own principal's HMC or admin
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(  # the cuff was returned
            "UPDATE device_assignments SET ended_at = now() WHERE patient_id = %s", (alice,)
        )
    r = await client.post(
        f"/api/v1/residents/{alice}/erasure", json={"basis": "request"}, headers=hmc
    )
    assert r.status_code == 409 and "deactivate" in r.json()["detail"]
    r = await client.post(
        f"/api/v1/residents/{alice}/deactivate",
        json={"reason": "moved to Solgården; Alice Lindqvist's daughter told"},
        headers=hmc,
    )
    assert r.status_code == 200, r.text
    for who, status in (
        (nurse, 403),
        (bearer(settings, Role.AUDITOR, "a"), 403),
        (bearer(settings, Role.HMC, "b"), 404),
    ):
        r = await client.post(
            f"/api/v1/residents/{alice}/erasure", json={"basis": "request"}, headers=who
        )
        assert r.status_code == status, r.text
    r = await client.post(f"/api/v1/residents/{alice}/erasure", json={"basis": "whim"}, headers=hmc)
    assert r.status_code == 422

    needles = [str(alice), "Alice", "Andersson", "Lindqvist", "Solgården", "consented"]
    before = _mentions(database_url, needles)
    held = {"patients", "readings", "alerts", "alert_events", "audit_log", "patient_shares"}
    assert held <= set(before)

    r = await client.post(
        f"/api/v1/residents/{alice}/erasure", json={"basis": "request"}, headers=hmc
    )
    assert r.status_code == 200, r.text
    report = r.json()
    pseudonym = uuid.UUID(report["pseudonym"])
    assert report["readings_deleted"] == 3
    assert report["alerts_deleted"] == 2 and report["alert_events_deleted"] == 1
    assert report["shares_deleted"] == 1 and report["schedules_deleted"] == 1
    assert report["device_periods_pseudonymised"] == 1
    assert report["audit_rows"] >= 8

    # nothing identifying is left anywhere: not the id, not a name, not the free text
    assert _mentions(database_url, needles) == {}
    # everything else is as it was: Arne and Bert, their readings, Bert's alert
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone() == (3,)
        assert conn.execute(
            "SELECT count(*) FROM readings WHERE patient_id = %s", (seed.bert,)
        ).fetchone() == (1,)
        # the device's history survives under the pseudonym (the fleet's traceability)
        assert conn.execute(
            "SELECT count(*) FROM device_assignments WHERE patient_id = %s", (pseudonym,)
        ).fetchone() == (1,)

    verdict = verify_database(database_url)
    assert verdict.ok, verdict.as_dict()
    assert verdict.erasures == 1 and verdict.pseudonymised_rows == report["audit_rows"]

    # the auditor still answers "who looked at this resident?" by the pseudonym
    auditor = bearer(settings, Role.AUDITOR, "a")
    page = (
        await client.get("/api/v1/audit", params={"patient": str(pseudonym)}, headers=auditor)
    ).json()
    actions = [e["action"] for e in page["entries"]]
    assert actions[0] == "observations.read" and actions[-1] == "resident.erase"
    assert all(e["pseudonymised"] for e in page["entries"][:-1])
    assert page["entries"][-1]["detail"]["basis"] == "request"
    # the old id is gone: a second erasure finds nobody
    r = await client.post(
        f"/api/v1/residents/{alice}/erasure", json={"basis": "request"}, headers=hmc
    )
    assert r.status_code == 404


async def test_a_forged_pseudonymisation_breaks_the_chain(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    """Marking another row as erased (to hide whose data it was) does not verify: the
    erasure's own row recorded which rows it pseudonymised."""
    hmc = bearer(settings, Role.HMC, "a", "tech@a")
    await client.get(f"/api/v1/residents/{seed.arne}", headers=hmc)
    await client.get(f"/api/v1/residents/{seed.alice}", headers=hmc)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE device_assignments SET ended_at = now()")
    await client.post(
        f"/api/v1/residents/{seed.arne}/deactivate", json={"reason": "moved"}, headers=hmc
    )
    r = await client.post(
        f"/api/v1/residents/{seed.arne}/erasure", json={"basis": "retention"}, headers=hmc
    )
    assert r.status_code == 200, r.text
    pseudonym = r.json()["pseudonym"]
    assert verify_database(database_url).ok
    with psycopg.connect(database_url) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete")
        conn.execute(
            "UPDATE audit_log SET patient_id = %s, content_salt = NULL, pseudonymised_as = %s"
            " WHERE patient_id = %s",
            (pseudonym, pseudonym, seed.alice),
        )
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_or_delete")
    verdict = verify_database(database_url)
    assert not verdict.ok
    assert verdict.problem is not None and "the erasure recorded" in verdict.problem


def test_erasure_on_a_hypertable(timescaledb_url: str) -> None:
    """On TimescaleDB the readings are a hypertable: the erasure deletes from it too.
    (Called as the API calls it, without the API: PGlite serves one connection at a time,
    and the API's pool may hold a second one waiting.)"""
    assert migrate(timescaledb_url).partitioning == "timescaledb"
    seed = seed_database(timescaledb_url)
    pseudonym = uuid.uuid4()
    with psycopg.connect(timescaledb_url) as conn:
        conn.execute("UPDATE device_assignments SET ended_at = now()")
        conn.execute("UPDATE patients SET deactivated_at = now() WHERE id = %s", (seed.alice,))
        row = conn.execute(
            "SELECT hemhub_erase_resident(%s, 'a', %s)", (seed.alice, pseudonym)
        ).fetchone()
    assert row is not None and row[0]["readings_deleted"] == 3
    assert _mentions(timescaledb_url, [str(seed.alice), "Alice"]) == {}
    assert verify_database(timescaledb_url).ok


async def test_erasure_refuses_while_a_table_it_does_not_know_holds_resident_data(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    """A later migration's table that references residents (or their alerts): erasure
    refuses with the table's name rather than erase half."""
    hmc = bearer(settings, Role.HMC, "a", "tech@a")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE device_assignments SET ended_at = now()")
        conn.execute("CREATE TABLE alert_photos (alert_id uuid REFERENCES alerts(id), jpeg bytea)")
    r = await client.post(
        f"/api/v1/residents/{seed.alice}/deactivate", json={"reason": "moved"}, headers=hmc
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/residents/{seed.alice}/erasure", json={"basis": "request"}, headers=hmc
    )
    assert r.status_code == 409
    assert "alert_photos -> alerts" in r.json()["detail"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM readings WHERE patient_id = %s", (seed.alice,)
        ).fetchone() == (3,)
        last = conn.execute(
            "SELECT action, patient_id, detail->>'outcome' FROM audit_log ORDER BY chain_seq DESC"
            " LIMIT 1"
        ).fetchone()
    assert last == ("resident.erase", seed.alice, "conflict")
