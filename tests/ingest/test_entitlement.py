"""A hub writes only for its own devices: a reading is attributed to a resident only when
the sending hub was entitled to the device at measurement time (registered under the
device's principal, the device on its allow-list then). Any other reading is stored
quarantined with the reason, never a resident's value, never judged by a rule, counted,
and raises a security event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from hemhub.contract import DeviceIdentity, topic_readings
from ingest import registry
from ingest.pipeline import store
from tests.factories import batch, bp_reading, device, unique_hub_id
from tests.ingest.factories import alerts_of, entitle, readings_of_hub
from tests.ingest.test_worker import Publisher, Running, count, start_worker, wait_for

__all__ = ["start_worker"]  # the fixture, imported for this module's tests

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = datetime(2026, 11, 24, 7, 2, tzinfo=UTC)


def home(
    conn: psycopg.Connection[Any], tenant: str, hub: str, serial: str, address: str
) -> tuple[DeviceIdentity, UUID, UUID]:
    """A principal's resident with a cuff, on the allow-list of the principal's hub.
    Returns (cuff identity, device id, patient id)."""
    registry.ensure_tenant(conn, tenant, tenant.title())
    identity = device(serial=serial, address=address)
    device_id = registry.ensure_device(conn, identity)
    patient = registry.create_patient(conn, tenant, f"Resident of {tenant}")
    registry.assign_device(conn, device_id, patient, T0 - timedelta(days=60))
    entitle(conn, hub, device_id, tenant, since=T0 - timedelta(days=60))
    return identity, device_id, patient


def security_events(conn: psycopg.Connection[Any], hub: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM security_events WHERE hub_id = %s ORDER BY id", (hub,)
        ).fetchall()


# ------------------------------------------------------------ over the broker, real ingest


def test_two_principals_hubs_cannot_write_each_others_devices(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub_a, hub_b = unique_hub_id("ent-a"), unique_hub_id("ent-b")
    cuff_a, dev_a, alice = home(db, "kommun-a", hub_a, "CUFF-A", "C0:FF:EE:00:0A:01")
    cuff_b, dev_b, bert = home(db, "region-b", hub_b, "CUFF-B", "C0:FF:EE:00:0B:01")
    running = start_worker(database_url, topics=[topic_readings(hub_a), topic_readings(hub_b)])

    # Each hub writes hypertensive readings naming the other principal's cuff.
    forged_by_a = [bp_reading(200, 120, measured_at=NOW - timedelta(minutes=m), dev=cuff_b,
                              salt="a") for m in range(3)]  # fmt: skip
    forged_by_b = [bp_reading(205, 125, measured_at=NOW - timedelta(minutes=m), dev=cuff_a,
                              salt="b") for m in range(2)]  # fmt: skip
    publisher.publish(topic_readings(hub_a), batch(hub_a, *forged_by_a).model_dump_json())
    publisher.publish(topic_readings(hub_b), batch(hub_b, *forged_by_b).model_dump_json())
    wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 5, what="5 readings stored")

    rows = readings_of_hub(db, hub_a) + readings_of_hub(db, hub_b)
    assert len(rows) == 5
    # nothing attributed: no resident, no principal, the reason kept
    assert {(r["patient_id"], r["tenant_id"], r["quarantine"]) for r in rows} == {
        (None, None, "other_principal")
    }
    assert {r["device_id"] for r in readings_of_hub(db, hub_a)} == {dev_b}
    assert {r["device_id"] for r in readings_of_hub(db, hub_b)} == {dev_a}
    # never judged by a clinical rule
    assert alerts_of(db) == []
    # a security event per hub and device, naming both principals
    [event_a] = security_events(db, hub_a)
    assert (event_a["kind"], event_a["reason"], event_a["readings"]) == (
        "reading_quarantined",
        "other_principal",
        3,
    )
    assert (event_a["hub_tenant_id"], event_a["device_id"], event_a["device_tenant_id"]) == (
        "kommun-a",
        dev_b,
        "region-b",
    )
    assert event_a["first_measured_at"] == NOW - timedelta(minutes=2)
    assert event_a["last_measured_at"] == NOW
    assert "principal kommun-a" in event_a["detail"] and "principal region-b" in event_a["detail"]
    [event_b] = security_events(db, hub_b)
    assert (event_b["readings"], event_b["device_tenant_id"]) == (2, "kommun-a")
    # counted by the worker, and stored for the hub: a resend is a duplicate
    wait_for(lambda: running.worker.stats["quarantined"] == 5, what="5 counted quarantined")
    assert running.worker.stats["unattributed"] == 0

    # Each hub's own reading is still attributed to its own resident, and alerts there.
    publisher.publish(topic_readings(hub_a), batch(hub_a, *forged_by_a).model_dump_json())
    own_a = bp_reading(190, 110, measured_at=NOW, dev=cuff_a, salt="own")
    own_b = bp_reading(191, 111, measured_at=NOW, dev=cuff_b, salt="own")
    publisher.publish(topic_readings(hub_a), batch(hub_a, own_a).model_dump_json())
    publisher.publish(topic_readings(hub_b), batch(hub_b, own_b).model_dump_json())
    wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 7, what="own readings")
    wait_for(lambda: running.worker.stats["duplicates"] == 3, what="the resend as duplicates")
    assert count(db, "SELECT count(*) FROM readings WHERE quarantine IS NOT NULL") == 5
    assert [(a["patient_id"], a["tenant_id"]) for a in alerts_of(db, alice)] == [
        (alice, "kommun-a")
    ]
    assert [(a["patient_id"], a["tenant_id"]) for a in alerts_of(db, bert)] == [(bert, "region-b")]
    assert len(security_events(db, hub_a)) == 1  # the resend raised no second event


def test_quarantined_readings_are_one_warning_per_batch(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hub forging readings of several devices makes one warning line for the batch (a
    summary: how many, why, how many security events), not one per device."""
    hub_a, hub_b = unique_hub_id("ent-a"), unique_hub_id("ent-b")
    home(db, "kommun-a", hub_a, "CUFF-A", "C0:FF:EE:00:0A:01")
    cuffs = [home(db, "region-b", hub_b, f"CUFF-B{i}", f"C0:FF:EE:00:0B:0{i}")[0] for i in range(3)]
    running = start_worker(database_url, topics=[topic_readings(hub_a)])
    forged = [bp_reading(200, 120, measured_at=NOW - timedelta(minutes=m), dev=cuff, salt="q")
              for cuff in cuffs for m in range(2)]  # fmt: skip
    with caplog.at_level("WARNING", logger="ingest.worker"):
        publisher.publish(topic_readings(hub_a), batch(hub_a, *forged).model_dump_json())
        wait_for(lambda: running.worker.stats["quarantined"] == 6, what="6 quarantined")
    lines = [r.getMessage() for r in caplog.records if "ingest.quarantined" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "ingest.quarantined readings=6 reasons=other_principal=6 security_events=3 first="
    )
    assert len(security_events(db, hub_a)) == 3


# ------------------------------------------------------------------ the rule, per reason


def test_unregistered_hub_is_quarantined_as_unknown_hub(conn: psycopg.Connection[Any]) -> None:
    hub, stranger = unique_hub_id(), unique_hub_id("stranger")
    cuff, _, patient = home(conn, "kommun-a", hub, "UNK-1", "C0:FF:EE:00:00:11")
    r = bp_reading(200, 120, measured_at=T0, dev=cuff)
    result = store(conn, [batch(stranger, r)])
    assert (result.stored, result.quarantined, result.unattributed) == (1, 1, 0)
    assert result.quarantine_reasons == {r.idempotency_key: "unknown_hub"}
    [row] = readings_of_hub(conn, stranger)
    assert (row["patient_id"], row["quarantine"]) == (None, "unknown_hub")
    assert alerts_of(conn, patient) == []
    [event] = security_events(conn, stranger)
    assert (event["hub_tenant_id"], event["device_tenant_id"]) == (None, "kommun-a")
    assert "not registered" in event["detail"]


def test_hub_of_the_same_principal_without_the_device_is_not_entitled(
    conn: psycopg.Connection[Any],
) -> None:
    hub, neighbour = unique_hub_id(), unique_hub_id("neighbour")
    cuff, _, patient = home(conn, "kommun-a", hub, "NE-1", "C0:FF:EE:00:00:12")
    registry.register_hub(conn, neighbour, "kommun-a")
    result = store(conn, [batch(neighbour, bp_reading(200, 120, measured_at=T0, dev=cuff))])
    assert (result.quarantined, result.alerts_opened) == (1, 0)
    assert readings_of_hub(conn, neighbour)[0]["quarantine"] == "hub_not_entitled"
    assert alerts_of(conn, patient) == []


def test_entitlement_is_judged_at_measurement_time(conn: psycopg.Connection[Any]) -> None:
    """On the allow-list from T0 until T0 + 1 day: a reading measured outside the period
    is quarantined even when it arrives while the device is listed, and one measured
    inside is attributed even when it arrives after the device was taken off."""
    hub = unique_hub_id()
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    cuff = device(serial="PERIOD-1", address="C0:FF:EE:00:00:13")
    device_id = registry.ensure_device(conn, cuff)
    patient = registry.create_patient(conn, "kommun-a", "Resident")
    registry.assign_device(conn, device_id, patient, T0 - timedelta(days=30))
    entitle(conn, hub, device_id, "kommun-a", since=T0)
    registry.disallow_device(conn, hub, device_id, T0 + timedelta(days=1))

    before = bp_reading(measured_at=T0 - timedelta(seconds=1), dev=cuff, salt="before")
    start = bp_reading(measured_at=T0, dev=cuff, salt="start")
    inside = bp_reading(measured_at=T0 + timedelta(hours=23), dev=cuff, salt="inside")
    end = bp_reading(measured_at=T0 + timedelta(days=1), dev=cuff, salt="end")
    result = store(conn, [batch(hub, before, start, inside, end)])
    assert (result.stored, result.quarantined) == (4, 2)
    got = {
        r["idempotency_key"]: (r["patient_id"], r["quarantine"]) for r in readings_of_hub(conn, hub)
    }
    assert got == {
        before.idempotency_key: (None, "hub_not_entitled"),
        start.idempotency_key: (patient, None),
        inside.idempotency_key: (patient, None),
        end.idempotency_key: (None, "hub_not_entitled"),
    }
    # a quarantined reading sent again is a duplicate, like any stored one
    again = store(conn, [batch(hub, before)])
    assert (again.stored, again.duplicates, again.quarantined) == (0, 1, 0)


def test_a_device_of_another_principal_cannot_be_put_on_a_hub(
    conn: psycopg.Connection[Any],
) -> None:
    hub_a, hub_b = unique_hub_id("a"), unique_hub_id("b")
    _, dev_b, _ = home(conn, "region-b", hub_b, "REG-B", "C0:FF:EE:00:00:14")
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    registry.register_hub(conn, hub_a, "kommun-a")
    with pytest.raises(registry.RegistryError, match="principal region-b"):
        registry.allow_device(conn, hub_a, dev_b, T0)
    # a hub stays with its principal
    with pytest.raises(registry.RegistryError, match="another principal"):
        registry.register_hub(conn, hub_b, "kommun-a")
    registry.register_hub(conn, hub_b, "region-b")  # again, same principal: a no-op
    with pytest.raises(registry.RegistryError, match="unknown tenant"):
        registry.register_hub(conn, unique_hub_id(), "nobody")
    # an unregistered hub gets no devices
    with pytest.raises(registry.RegistryError, match="not registered"):
        registry.allow_device(conn, unique_hub_id(), dev_b, T0)


def test_allow_list_periods_do_not_overlap(conn: psycopg.Connection[Any]) -> None:
    hub = unique_hub_id()
    _, device_id, _ = home(conn, "kommun-a", hub, "OVL-1", "C0:FF:EE:00:00:15")
    with pytest.raises(registry.AllowListError, match="take it off first"):
        registry.allow_device(conn, hub, device_id, T0)
    with pytest.raises(registry.AllowListError, match="is not after the start"):
        registry.disallow_device(conn, hub, device_id, T0 - timedelta(days=90))
    with pytest.raises(registry.RegistryError, match="UTC offset"):
        registry.disallow_device(conn, hub, device_id, T0.replace(tzinfo=None))
    registry.disallow_device(conn, hub, device_id, T0)
    with pytest.raises(registry.AllowListError, match="is not on hub"):
        registry.disallow_device(conn, hub, device_id, T0 + timedelta(days=1))
    with pytest.raises(registry.AllowListError, match="cannot start before"):
        registry.allow_device(conn, hub, device_id, T0 - timedelta(days=1))
    registry.allow_device(conn, hub, device_id, T0 + timedelta(days=1))
    periods = conn.execute(
        "SELECT started_at, ended_at FROM hub_devices WHERE hub_id = %s ORDER BY started_at",
        (hub,),
    ).fetchall()
    assert periods == [(T0 - timedelta(days=60), T0), (T0 + timedelta(days=1), None)]


# ------------------------------------------------------------------------------ upgrade

_UNDO_0008 = """
DROP TABLE hub_devices, security_events, device_last_hub;
DROP INDEX readings_quarantined;
ALTER TABLE readings DROP COLUMN quarantine;
ALTER TABLE hubs DROP COLUMN tenant_id;
DELETE FROM schema_migrations WHERE version = '0008_hub_entitlement';
"""


def test_upgrade_entitles_hubs_that_wrote_for_one_principal(database_url: str) -> None:
    """Migration 0008 on a database in use: a hub whose attributed readings were all of
    one principal keeps attributing; one that wrote into two principals is left
    unregistered, its new readings quarantined."""
    from ingest.migrations import migrate

    migrate(database_url, partitioning="native")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_UNDO_0008)  # the database as it was before 0008
        home_hub, mixed_hub = unique_hub_id("home"), unique_hub_id("mixed")
        residents = {}
        for tenant, serial, address in (
            ("kommun-a", "UP-A", "C0:FF:EE:00:00:21"),
            ("region-b", "UP-B", "C0:FF:EE:00:00:22"),
        ):
            registry.ensure_tenant(conn, tenant, tenant.title())
            cuff = device(serial=serial, address=address)
            device_id = registry.ensure_device(conn, cuff)
            patient = registry.create_patient(conn, tenant, "Resident")
            registry.assign_device(conn, device_id, patient, T0 - timedelta(days=30))
            residents[tenant] = (cuff, device_id, patient)
        cuff_a, dev_a, alice = residents["kommun-a"]
        cuff_b, _, _ = residents["region-b"]
        # what the old store() did: no entitlement check (the columns it knew)
        conn.execute("INSERT INTO hubs (id) VALUES (%s), (%s)", (home_hub, mixed_hub))
        for hub, cuff, tenant, at in (
            (home_hub, cuff_a, "kommun-a", T0 - timedelta(days=2)),
            (home_hub, cuff_a, "kommun-a", T0 - timedelta(days=1)),
            (mixed_hub, cuff_a, "kommun-a", T0 - timedelta(days=1)),
            (mixed_hub, cuff_b, "region-b", T0 - timedelta(days=1)),
        ):
            patient = residents[tenant][2]
            device_id = residents[tenant][1]
            conn.execute(
                "INSERT INTO readings (measured_at, idempotency_key, hub_id, device_id,"
                ' patient_id, tenant_id, measurement_type, characteristic, "values",'
                " hub_received_at, clock_source, clock_offset_s, hub_clock_synced, raw)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'blood_pressure', '2A35', '[]', %s,"
                " 'set_by_hub', 0, true, '\\x00')",
                (at, f"{hub}-{cuff.serial}-{at}", hub, device_id, patient, tenant, at),
            )

    assert migrate(database_url).applied == ["0008_hub_entitlement"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        hubs = dict(conn.execute("SELECT id, tenant_id FROM hubs").fetchall())
        assert hubs == {home_hub: "kommun-a", mixed_hub: None}
        periods = conn.execute("SELECT hub_id, device_id, started_at, ended_at FROM hub_devices")
        assert periods.fetchall() == [(home_hub, dev_a, T0 - timedelta(days=2), None)]
        # the home hub keeps attributing; the mixed one is quarantined until registered
        r_home = bp_reading(measured_at=T0, dev=cuff_a, salt="home")
        r_mixed = bp_reading(measured_at=T0, dev=cuff_a, salt="mixed")
        store(conn, [batch(home_hub, r_home), batch(mixed_hub, r_mixed)])
        assert readings_of_hub(conn, home_hub)[-1]["patient_id"] == alice
        assert readings_of_hub(conn, mixed_hub)[-1]["quarantine"] == "unknown_hub"
