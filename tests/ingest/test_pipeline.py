"""pipeline.store against the real PostgreSQL: dedupe, attribution, provenance, alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from hemhub.contract import ClockSource, ClockTrust, DeviceIdentity, HubStatus, Quantity
from ingest import alerts, registry
from ingest.pipeline import DEVICE_SEEN_RESOLUTION, DeadLetter, StatusUpdate, store
from ingest.programmes import PROFILE_VERSION
from tests.factories import batch, bp_reading, device, unique_hub_id
from tests.ingest.conftest import on_both_partitionings
from tests.ingest.factories import alerts_of, entitle, readings_of_hub, seeded_device

T0 = datetime(2026, 11, 24, 7, 2, tzinfo=UTC)


@on_both_partitionings
def test_valid_batch_is_stored_with_all_provenance(conn: psycopg.Connection[Any]) -> None:
    hub = unique_hub_id()
    identity, device_id, patient_id = seeded_device(
        conn, serial="P-1", assigned_from=T0 - timedelta(days=30), hub_id=hub
    )
    r = bp_reading(128, 84, measured_at=T0, dev=identity)
    r = r.model_copy(
        update={
            "status": ["irregular_pulse"],
            "clock": ClockTrust(
                source=ClockSource.OFFSET_MEASURED, offset_s=-42.5, hub_clock_synced=False
            ),
        }
    )
    result = store(conn, [batch(hub, r)])

    assert (result.received, result.stored, result.duplicates, result.unattributed) == (1, 1, 0, 0)
    [row] = readings_of_hub(conn, hub)
    assert row["idempotency_key"] == r.idempotency_key
    assert row["measured_at"] == T0
    assert row["hub_id"] == hub
    assert row["device_id"] == device_id
    assert row["patient_id"] == patient_id
    assert row["tenant_id"] == "kommun-a"
    assert row["measurement_type"] == "blood_pressure"
    assert row["characteristic"] == "2A35"
    assert row["values"] == [q.model_dump() for q in r.values]
    assert row["status"] == ["irregular_pulse"]
    assert row["device_time"] == T0.replace(tzinfo=None)
    assert row["hub_received_at"] == r.hub_received_at
    assert row["ingested_at"] is not None
    assert row["clock_source"] == "offset_measured"
    assert row["clock_offset_s"] == -42.5
    assert row["hub_clock_synced"] is False
    assert row["late"] is False
    assert bytes(row["raw"]) == bytes.fromhex(r.raw_hex)
    # hub and device registered, device last seen at the reading's receive time
    assert conn.execute("SELECT count(*) FROM hubs WHERE id = %s", (hub,)).fetchone() == (1,)
    seen = conn.execute("SELECT last_seen_at FROM devices WHERE id = %s", (device_id,)).fetchone()
    assert seen is not None and seen[0] >= r.hub_received_at - timedelta(seconds=1)


def test_new_device_is_registered_by_stable_id(conn: psycopg.Connection[Any]) -> None:
    hub = unique_hub_id()
    dev = device(serial="NEW-1")
    store(conn, [batch(hub, bp_reading(measured_at=T0, dev=dev))])
    newer = dev.model_copy(update={"firmware": "2.0", "address": "C0:FF:EE:00:00:02"})
    store(conn, [batch(hub, bp_reading(measured_at=T0 + timedelta(hours=1), dev=newer))])
    # an older sighting (backlog) does not roll the firmware back
    store(conn, [batch(hub, bp_reading(measured_at=T0 - timedelta(days=1), dev=dev))])
    rows = conn.execute(
        "SELECT stable_id, firmware, address FROM devices WHERE serial = 'NEW-1'"
    ).fetchall()
    assert rows == [(dev.stable_id, "2.0", "C0:FF:EE:00:00:02")]


def test_device_row_is_rewritten_only_when_it_changes(conn: psycopg.Connection[Any]) -> None:
    hub = unique_hub_id()
    dev = device(serial="SEEN-1")

    def seen(at: datetime, d: DeviceIdentity = dev) -> tuple[Any, ...]:
        store(conn, [batch(hub, bp_reading(measured_at=at, received_at=at, dev=d))])
        row = conn.execute(
            "SELECT last_seen_at, firmware, address FROM devices WHERE stable_id = %s",
            (dev.stable_id,),
        ).fetchone()
        assert row is not None
        return tuple(row)

    assert seen(T0) == (T0, dev.firmware, dev.address)
    # seen again within DEVICE_SEEN_RESOLUTION, unchanged: the row is left as it is
    assert seen(T0 + timedelta(seconds=30)) == (T0, dev.firmware, dev.address)
    # a firmware update or a new address is recorded at once
    newer = dev.model_copy(update={"firmware": "9.9"})
    assert seen(T0 + timedelta(seconds=40), newer) == (
        T0 + timedelta(seconds=40),
        "9.9",
        dev.address,
    )
    moved = newer.model_copy(update={"address": "C0:FF:EE:00:00:99"})
    at = T0 + timedelta(seconds=50)
    assert seen(at, moved) == (at, "9.9", "C0:FF:EE:00:00:99")
    # a reading without Device Information keeps the firmware known
    bare = moved.model_copy(update={"firmware": None})
    assert seen(at + timedelta(seconds=5), bare) == (at, "9.9", "C0:FF:EE:00:00:99")
    # past the resolution the sighting is recorded
    later = at + DEVICE_SEEN_RESOLUTION + timedelta(seconds=1)
    assert seen(later, moved) == (later, "9.9", "C0:FF:EE:00:00:99")


@on_both_partitionings
def test_same_reading_five_times_is_stored_once_and_alerts_once(
    conn: psycopg.Connection[Any],
) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        conn, serial="P-5", assigned_from=T0 - timedelta(1), hub_id=hub
    )
    r = bp_reading(190, 100, measured_at=T0, dev=identity)
    # twice inside one store call (two messages of one worker batch) ...
    first = store(conn, [batch(hub, r), batch(hub, r)])
    # ... and three more deliveries later
    later = [store(conn, [batch(hub, r)]) for _ in range(3)]

    assert (first.received, first.stored, first.duplicates, first.alerts_opened) == (2, 1, 1, 1)
    assert all(
        (x.stored, x.duplicates, x.alerts_opened, x.alerts_updated) == (0, 1, 0, 0) for x in later
    )
    assert len(readings_of_hub(conn, hub)) == 1
    [alert] = alerts_of(conn, patient_id)
    assert alert["count"] == 1


@on_both_partitionings
def test_key_already_stored_is_dropped_even_with_another_measured_at(
    conn: psycopg.Connection[Any],
) -> None:
    hub = unique_hub_id()
    r = bp_reading(measured_at=T0)
    store(conn, [batch(hub, r)])
    moved = r.model_copy(update={"measured_at": T0 - timedelta(days=90)})
    result = store(conn, [batch(hub, moved)])
    assert (result.stored, result.duplicates) == (0, 1)
    assert [row["measured_at"] for row in readings_of_hub(conn, hub)] == [T0]


def test_hypertensive_reading_opens_one_alert_and_a_repeat_updates_it(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        conn, serial="P-H", assigned_from=T0 - timedelta(1), hub_id=hub
    )
    first = bp_reading(186, 112, measured_at=T0, dev=identity)
    second = bp_reading(181, 90, measured_at=T0 + timedelta(hours=2), dev=identity)

    opened = store(conn, [batch(hub, first)])
    assert (opened.alerts_opened, opened.alerts_updated) == (1, 0)
    [alert] = alerts_of(conn, patient_id)
    assert alert["rule"] == "blood_pressure_high"
    assert alert["rule_version"] == PROFILE_VERSION
    assert alert["severity"] == "high"
    assert alert["status"] == "open"
    assert alert["tenant_id"] == "kommun-a"
    assert alert["reason"] == "BP 186/112 mm[Hg] at 2026-11-24T07:02Z (threshold 180/110)"
    assert alert["first_reading_key"] == alert["last_reading_key"] == first.idempotency_key
    assert alert["measured_at"] == T0
    assert alert["count"] == 1
    assert alert["late"] is False

    updated = store(conn, [batch(hub, second)])
    assert (updated.alerts_opened, updated.alerts_updated) == (0, 1)
    [again] = alerts_of(conn, patient_id)
    assert again["id"] == alert["id"]
    assert again["count"] == 2
    assert again["last_reading_key"] == second.idempotency_key
    assert again["first_reading_key"] == first.idempotency_key
    assert again["last_at"] >= alert["last_at"]


def test_two_hypertensive_readings_in_one_batch_make_one_alert(
    conn: psycopg.Connection[Any],
) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        conn, serial="P-2", assigned_from=T0 - timedelta(1), hub_id=hub
    )
    a = bp_reading(200, 120, measured_at=T0, dev=identity)
    b = bp_reading(185, 95, measured_at=T0 + timedelta(minutes=3), dev=identity)
    result = store(conn, [batch(hub, b, a)])
    assert (result.alerts_opened, result.alerts_updated) == (1, 0)
    [alert] = alerts_of(conn, patient_id)
    assert alert["count"] == 2
    assert alert["first_reading_key"] == a.idempotency_key
    assert alert["last_reading_key"] == b.idempotency_key
    assert alert["reason"].startswith("BP 200/120 mm[Hg]")


def test_resolved_alert_lets_a_new_one_open(conn: psycopg.Connection[Any]) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        conn, serial="P-R", assigned_from=T0 - timedelta(1), hub_id=hub
    )
    store(conn, [batch(hub, bp_reading(190, 100, measured_at=T0, dev=identity))])
    conn.execute("UPDATE alerts SET status = 'resolved', resolved_at = now()")
    result = store(
        conn, [batch(hub, bp_reading(190, 100, measured_at=T0 + timedelta(1), dev=identity))]
    )
    assert result.alerts_opened == 1
    assert [a["status"] for a in alerts_of(conn, patient_id)] == ["resolved", "open"]


@pytest.mark.parametrize(
    ("systolic", "diastolic"),
    [(120, 80), (159, 99), (None, None)],  # hypertension: grade 2 (160/100) is medium
    ids=["normal", "just-below", "device-error"],
)
def test_no_alert_below_threshold_or_for_missing_values(
    conn: psycopg.Connection[Any], systolic: float | None, diastolic: float | None
) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        conn, serial="P-N", assigned_from=T0 - timedelta(1), hub_id=hub
    )
    r = bp_reading(systolic, diastolic, measured_at=T0, dev=identity, pulse=None)
    result = store(conn, [batch(hub, r)])
    assert result.stored == 1
    assert (result.alerts_opened, result.alerts_updated) == (0, 0)
    assert alerts_of(conn, patient_id) == []


@on_both_partitionings
def test_reassigned_device_attributes_by_measurement_time(conn: psycopg.Connection[Any]) -> None:
    hub_a, hub_b = unique_hub_id("hub-a"), unique_hub_id("hub-b")
    switch = T0
    identity, device_id, patient_a = seeded_device(
        conn, serial="REUSED", patient_name="A", assigned_from=switch - timedelta(days=60)
    )
    registry.ensure_tenant(conn, "region-b", "Region B")
    patient_b = registry.create_patient(conn, "region-b", "B", programme="heart_failure")
    registry.end_assignment(conn, device_id, switch)
    registry.assign_device(conn, device_id, patient_b, switch)
    entitle(conn, hub_a, device_id, "kommun-a", since=switch - timedelta(days=60))
    registry.disallow_device(conn, hub_a, device_id, switch)
    entitle(conn, hub_b, device_id, "region-b", since=switch)

    before = bp_reading(190, 100, measured_at=switch - timedelta(days=2), dev=identity, salt="1")
    after = bp_reading(125, 80, measured_at=switch + timedelta(hours=1), dev=identity, salt="2")
    # measured at A's home before the switch, uploaded only now by B's hub (of another
    # principal): not B's to write; kept quarantined, never A's value either
    late = bp_reading(
        195,
        100,
        measured_at=switch - timedelta(minutes=5),
        received_at=switch + timedelta(days=1),
        dev=identity,
        salt="3",
    )
    store(conn, [batch(hub_a, before)])
    store(conn, [batch(hub_b, after, late)])

    owner = {
        row["idempotency_key"]: (row["patient_id"], row["tenant_id"], row["quarantine"])
        for row in readings_of_hub(conn, hub_a) + readings_of_hub(conn, hub_b)
    }
    assert owner[before.idempotency_key] == (patient_a, "kommun-a", None)
    assert owner[after.idempotency_key] == (patient_b, "region-b", None)
    assert owner[late.idempotency_key] == (None, None, "other_principal")
    # the quarantined hypertensive reading touches no alert: A's has one reading, B none
    [alert_a] = alerts_of(conn, patient_a)
    assert (alert_a["count"], alert_a["late"], alert_a["tenant_id"]) == (1, False, "kommun-a")
    assert alerts_of(conn, patient_b) == []


@on_both_partitionings
def test_reading_at_the_switch_instant_belongs_to_the_new_owner(
    conn: psycopg.Connection[Any],
) -> None:
    hub = unique_hub_id()
    identity, device_id, _ = seeded_device(
        conn, serial="EDGE", assigned_from=T0 - timedelta(1), hub_id=hub
    )
    registry.end_assignment(conn, device_id, T0)
    patient_b = registry.create_patient(conn, "kommun-a", "B")
    registry.assign_device(conn, device_id, patient_b, T0)
    store(conn, [batch(hub, bp_reading(measured_at=T0, dev=identity))])
    assert readings_of_hub(conn, hub)[0]["patient_id"] == patient_b


@on_both_partitionings
def test_reading_without_assignment_is_stored_unattributed(
    conn: psycopg.Connection[Any],
) -> None:
    hub = unique_hub_id()
    # assigned only from T0 (on the hub's allow-list long before): a reading from before
    # is nobody's; a device not on the hub's allow-list is quarantined, not unattributed
    identity, _, patient_id = seeded_device(conn, serial="P-U", assigned_from=T0, hub_id=hub)
    early = bp_reading(199, 119, measured_at=T0 - timedelta(hours=3), dev=identity)
    stranger = bp_reading(199, 119, measured_at=T0, dev=device(serial="UNKNOWN"))
    result = store(conn, [batch(hub, early, stranger)])
    assert (result.stored, result.unattributed, result.quarantined) == (2, 1, 1)
    assert result.quarantine_reasons == {stranger.idempotency_key: "hub_not_entitled"}
    assert (result.alerts_opened, result.alerts_updated) == (0, 0)
    rows = readings_of_hub(conn, hub)
    assert [(r["patient_id"], r["tenant_id"], r["quarantine"]) for r in rows] == [
        (None, None, None),
        (None, None, "hub_not_entitled"),
    ]
    assert alerts_of(conn) == []
    assert patient_id is not None


@on_both_partitionings
def test_late_reading_is_marked_late(conn: psycopg.Connection[Any]) -> None:
    hub = unique_hub_id()
    on_time = bp_reading(measured_at=T0, received_at=T0 + timedelta(minutes=59), salt="a")
    late = bp_reading(measured_at=T0, received_at=T0 + timedelta(minutes=61), salt="b")
    result = store(conn, [batch(hub, on_time, late)])
    assert result.late == 1
    flags = {r["idempotency_key"]: r["late"] for r in readings_of_hub(conn, hub)}
    assert flags == {on_time.idempotency_key: False, late.idempotency_key: True}


@on_both_partitionings
def test_hub_backlog_reaching_ingest_late_is_marked_late(conn: psycopg.Connection[Any]) -> None:
    """A reading the hub received at once but held in its outbox (hub offline) for hours
    is late too: what counts is also when it reached the ingest tier."""
    hub = unique_hub_id()
    held = bp_reading(measured_at=T0, received_at=T0 + timedelta(seconds=5), salt="held")
    fresh = bp_reading(
        measured_at=T0 + timedelta(hours=3), received_at=T0 + timedelta(hours=3), salt="fresh"
    )
    result = store(conn, [batch(hub, held, fresh)], arrived_at=T0 + timedelta(hours=3, seconds=2))
    assert result.late == 1
    flags = {r["idempotency_key"]: r["late"] for r in readings_of_hub(conn, hub)}
    assert flags == {held.idempotency_key: True, fresh.idempotency_key: False}


def test_alert_is_announced_on_notify_at_commit(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        conn, serial="P-L", assigned_from=T0 - timedelta(1), hub_id=hub
    )
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {alerts.NOTIFY_CHANNEL}")
        store(conn, [batch(hub, bp_reading(190, 100, measured_at=T0, dev=identity))])
        store(conn, [batch(hub, bp_reading(191, 100, measured_at=T0 + timedelta(1), dev=identity))])
        got = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=2)]
    [alert] = alerts_of(conn, patient_id)
    expected = {
        "alert_id": str(alert["id"]),
        "tenant_id": "kommun-a",
        "patient_id": str(patient_id),
        "status": "open",
        "rule": "blood_pressure_high",
    }
    assert got == [{**expected, "event": "opened"}, {**expected, "event": "updated"}]


def test_no_notify_when_the_transaction_rolls_back(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    hub = unique_hub_id()
    identity, _, _ = seeded_device(conn, serial="P-RB", assigned_from=T0 - timedelta(1), hub_id=hub)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {alerts.NOTIFY_CHANNEL}")
        with pytest.raises(RuntimeError), conn.transaction():
            store(conn, [batch(hub, bp_reading(190, 100, measured_at=T0, dev=identity))])
            raise RuntimeError("caller fails after store")
        assert list(listener.notifies(timeout=0.5)) == []
    assert readings_of_hub(conn, hub) == []


def test_a_dead_letter_delivered_again_is_counted_not_repeated(
    conn: psycopg.Connection[Any],
) -> None:
    topic = f"hemhub/v1/hubs/{unique_hub_id()}/readings"
    first = DeadLetter(topic, "invalid JSON: EOF", b"{")
    # twice in one batch (a redelivery before the ack), then once more later
    store(conn, [], dead_letters=[first, first, DeadLetter(topic, "other", b"[")])
    store(conn, [], dead_letters=[DeadLetter(topic, "invalid JSON again", b"{")])
    rows = conn.execute(
        "SELECT reason, payload, deliveries, last_received_at >= received_at"
        " FROM dead_letters WHERE topic = %s ORDER BY reason",
        (topic,),
    ).fetchall()
    assert rows == [("invalid JSON: EOF", b"{", 3, True), ("other", b"[", 1, True)]
    # the same bytes on another topic are another message
    other = topic.replace("readings", "status")
    store(conn, [], dead_letters=[DeadLetter(other, "x", b"{")])
    row = conn.execute(
        "SELECT count(*) FROM dead_letters WHERE payload = %s AND topic IN (%s, %s)",
        (b"{", topic, other),
    ).fetchone()
    assert row == (2,)


def test_dead_letters_and_status_in_the_same_commit(conn: psycopg.Connection[Any]) -> None:
    hub = unique_hub_id()
    now = datetime.now(UTC)
    status = HubStatus(hub_id=hub, online=True, software_version="1.2.3", outbox_depth=4)
    result = store(
        conn,
        [batch(hub, bp_reading(measured_at=T0))],
        dead_letters=[DeadLetter("hemhub/v1/hubs/x/readings", "bad json\x00", b"\x00{")],
        statuses=[
            StatusUpdate(status.model_copy(update={"online": False}), now - timedelta(1)),
            StatusUpdate(status, now),
        ],
    )
    assert (result.stored, result.dead_letters, result.statuses) == (1, 1, 2)
    assert conn.execute("SELECT topic, reason, payload FROM dead_letters").fetchall() == [
        ("hemhub/v1/hubs/x/readings", "bad json\\0", b"\x00{")
    ]
    row = conn.execute(
        "SELECT online, last_status, last_status_at FROM hubs WHERE id = %s", (hub,)
    ).fetchone()
    assert row is not None
    assert row[0] is True and row[1]["software_version"] == "1.2.3" and row[2] == now
    # an older status arriving later does not overwrite the newer one
    store(
        conn,
        [],
        statuses=[
            StatusUpdate(status.model_copy(update={"online": False}), now - timedelta(hours=1))
        ],
    )
    assert conn.execute("SELECT online FROM hubs WHERE id = %s", (hub,)).fetchone() == (True,)


def test_blood_pressure_rule_in_kpa_and_partial_values() -> None:
    rule = alerts.BLOOD_PRESSURE_HIGH
    r = bp_reading(measured_at=T0)
    kpa = r.model_copy(
        update={
            "values": [
                Quantity(name="systolic", loinc="8480-6", value=24.0, unit="kPa"),  # 180 mmHg
                Quantity(name="diastolic", loinc="8462-4", value=None, unit="kPa"),
            ]
        }
    )
    assert rule.predicate(kpa) == "BP 180/? mm[Hg] at 2026-11-24T07:02Z (threshold 180/110)"
    assert rule.predicate(bp_reading(120, 110, measured_at=T0)) is not None
    assert rule.predicate(bp_reading(None, 115, measured_at=T0)) is not None
    assert rule.predicate(bp_reading(179.5, 109.9, measured_at=T0)) is None
