"""The outbox keeps every reading until ingest's receipt (real broker; real ingest and
PostgreSQL where receipts are involved): pending -> sent (PUBACK) -> forgotten or
rejected (receipt), states that survive a restart."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from gateway import failpoints
from gateway.outbox import Outbox
from gateway.publisher import OutboxPublisher
from hemhub.contract import HubStatus, Reading, topic_readings, topic_status
from tests.factories import bp_reading, unique_hub_id
from tests.mqtt_helpers import Listener, clear_retained_status


def _readings(n: int) -> list[Reading]:
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    return [
        bp_reading(120 + i % 50, 80, measured_at=start + timedelta(minutes=i)) for i in range(n)
    ]


def test_outbox_dedupes_and_remembers_delivered(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    first, second = _readings(2)
    assert box.add(first) and box.add(second)
    assert not box.add(first), "a reading already queued is not queued twice"
    entries = box.pending(10)
    assert [e.idempotency_key for e in entries] == [first.idempotency_key, second.idempotency_key]
    box.mark_sent([entries[0].seq], 60.0, 600.0)
    assert (box.depth(), box.awaiting_receipt()) == (1, 1)
    assert not box.add(first), "a reading sent and waiting for its receipt is not queued again"
    box.apply_receipt([first.idempotency_key], [])
    assert (box.depth(), box.awaiting_receipt()) == (1, 0)
    assert not box.add(first), "a device replaying a delivered record is not republished"
    box.close()


def test_outbox_survives_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    for r in _readings(3):
        box.add(r)
    box.close()
    again = Outbox(tmp_path / "o.sqlite3")
    assert again.depth() == 3
    assert again.oldest_age_s() is not None
    again.close()


def test_publishes_in_order_and_marks_sent_after_puback(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    listener = Listener(mqtt_url, topic_readings(hub))
    box = Outbox(tmp_path / "o.sqlite3")
    readings = _readings(230)
    for r in readings:
        box.add(r)
    publisher = OutboxPublisher(box, hub_id=hub, mqtt_url=mqtt_url, readings_per_message=50)
    publisher.start()
    try:
        batches = listener.batches(230)
        keys = [r.idempotency_key for b in batches for r in b.readings]
        assert keys == [r.idempotency_key for r in readings]
        assert all(b.hub_id == hub for b in batches)
        deadline = time.monotonic() + 10
        while box.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.depth() == 0
        assert box.awaiting_receipt() == 230, "no ingest here: no receipt, nothing forgotten"
    finally:
        publisher.stop()
        listener.close()


def test_unpublished_readings_are_sent_after_restart(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    path = tmp_path / "o.sqlite3"
    # A hub that committed readings and died before it could publish any.
    box = Outbox(path)
    readings = _readings(5)
    for r in readings:
        box.add(r)
    box.close()

    listener = Listener(mqtt_url, topic_readings(hub))
    restarted = Outbox(path)
    publisher = OutboxPublisher(restarted, hub_id=hub, mqtt_url=mqtt_url)
    publisher.start()
    try:
        batches = listener.batches(5)
        assert [r.idempotency_key for b in batches for r in b.readings] == [
            r.idempotency_key for r in readings
        ]
    finally:
        publisher.stop()
        listener.close()


def test_rate_limit_spreads_a_backlog(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    listener = Listener(mqtt_url, topic_readings(hub))
    box = Outbox(tmp_path / "o.sqlite3")
    for r in _readings(60):
        box.add(r)
    publisher = OutboxPublisher(
        box, hub_id=hub, mqtt_url=mqtt_url, readings_per_message=10, max_readings_per_s=20
    )
    started = time.monotonic()
    publisher.start()
    try:
        batches = listener.batches(60)
        elapsed = time.monotonic() - started
        assert sum(len(b.readings) for b in batches) == 60
        # A one-second burst of 20, then 20 per second: 60 readings need about 2 s.
        assert elapsed >= 1.5
        assert max(len(b.readings) for b in batches) <= 10
    finally:
        publisher.stop()
        listener.close()


def test_status_online_on_connect_and_offline_on_stop(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    listener = Listener(mqtt_url, topic_status(hub))
    publisher = OutboxPublisher(Outbox(tmp_path / "o.sqlite3"), hub_id=hub, mqtt_url=mqtt_url)
    publisher.start()
    online = HubStatus.model_validate_json(listener.messages.get(timeout=10).payload)
    assert online.online and online.hub_id == hub and online.outbox_depth == 0
    publisher.stop()
    offline = HubStatus.model_validate_json(listener.messages.get(timeout=10).payload)
    assert not offline.online
    listener.close()
    clear_retained_status(mqtt_url, hub)


def test_rate_below_one_reading_per_second_still_publishes(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    listener = Listener(mqtt_url, topic_readings(hub))
    box = Outbox(tmp_path / "o.sqlite3")
    readings = _readings(3)
    for r in readings:
        box.add(r)
    publisher = OutboxPublisher(box, hub_id=hub, mqtt_url=mqtt_url, max_readings_per_s=0.5)
    started = time.monotonic()
    publisher.start()
    try:
        batches = listener.batches(3, timeout=20)
        elapsed = time.monotonic() - started
        keys = [r.idempotency_key for b in batches for r in b.readings]
        assert keys == [r.idempotency_key for r in readings]
        assert all(len(b.readings) == 1 for b in batches)
        # One at once, then one every 2 s.
        assert elapsed >= 3.5
    finally:
        publisher.stop()
        listener.close()
        clear_retained_status(mqtt_url, hub)


def test_publisher_survives_a_failing_outbox_and_recovers(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    listener = Listener(mqtt_url, topic_readings(hub))
    box = Outbox(tmp_path / "o.sqlite3")
    readings = _readings(5)
    for r in readings:
        box.add(r)
    publisher = OutboxPublisher(box, hub_id=hub, mqtt_url=mqtt_url, stall_after_s=1.0)
    failpoints.configure("outbox.mark_sent=raise")  # the disk is full
    publisher.start()
    try:
        batches = listener.batches(5)
        assert [r.idempotency_key for b in batches for r in b.readings] == [
            r.idempotency_key for r in readings
        ]
        deadline = time.monotonic() + 10
        while publisher.errors < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.errors >= 3, "every failed removal is counted and retried"
        assert publisher.last_error is not None and "No space left" in publisher.last_error
        assert box.depth() == 5, "nothing leaves the outbox that was not removed"
        time.sleep(1.2)
        assert not publisher.healthy(), "a publisher failing for stall_after_s is wedged"
        assert listener.batches(1, timeout=1.0) == [], "acknowledged entries are not resent"

        failpoints.configure("")  # space again
        deadline = time.monotonic() + 10
        while box.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.depth() == 0
        while not publisher.healthy() and time.monotonic() < deadline:
            time.sleep(0.05)  # the pass that removed them completes
        assert publisher.healthy() and publisher.consecutive_errors == 0
        assert publisher.published_readings == 5
        # It still publishes what comes next.
        more = bp_reading(150, 95, salt="after")
        box.add(more)
        publisher.kick()
        (batch,) = listener.batches(1)
        assert [r.idempotency_key for r in batch.readings] == [more.idempotency_key]
    finally:
        failpoints.configure("")
        publisher.stop()
        listener.close()
        clear_retained_status(mqtt_url, hub)


def test_outbox_follows_a_record_counter_over_its_rollover(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    address = bp_reading().device.address

    def add(sequence: int, top: int | None = 0xFFFF) -> int | None:
        reading = bp_reading(salt=f"seq-{sequence}-{top}").model_copy(
            update={"device_sequence": sequence}
        )
        box.add(reading, sequence_max=top)
        return box.last_sequence(address)

    assert add(65534) == 65534
    assert add(100) == 65534, "below the top: an older record, the newest stays"
    assert add(65535) == 65535
    assert add(40000) == 65535, "upper half after the top: precedes it (RFC 1982)"
    assert add(0) == 0, "the counter rolled over: follow it"
    assert add(1) == 1
    assert add(2, top=None) == 2
    # Without the counter's size (a profile without rollover) only larger numbers count.
    assert add(0xFFFF, top=None) == 0xFFFF
    assert add(3, top=None) == 0xFFFF
    # A 32-bit counter (dispensers) rolls over at its own top, not at 65535.
    assert add(5, top=0xFFFFFFFF) == 0xFFFF
    box.close()


def test_outbox_states_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    pending, sent, stored, rejected = _readings(4)
    for r in (pending, sent, stored, rejected):
        box.add(r)
    seqs = {e.idempotency_key: e.seq for e in box.pending(10)}
    box.mark_sent([seqs[k.idempotency_key] for k in (sent, stored, rejected)], 3600.0, 3600.0)
    box.apply_receipt([stored.idempotency_key], [(rejected.idempotency_key, "invalid")])
    box.close()

    again = Outbox(path)
    assert [e.idempotency_key for e in again.pending(10)] == [pending.idempotency_key]
    assert (again.depth(), again.awaiting_receipt(), again.rejected_count()) == (1, 1, 1)
    [(key, reason, payload)] = again.rejected()
    assert (key, reason) == (rejected.idempotency_key, "invalid")
    assert Reading.model_validate_json(payload) == rejected, "kept whole for inspection"
    for r in (sent, stored, rejected):
        assert not again.add(r), "sent, forgotten or rejected: never queued again"
    again.close()


def test_a_sent_reading_without_receipt_is_due_again_with_backoff(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    (reading,) = _readings(1)
    box.add(reading)
    [entry] = box.pending(10)
    box.mark_sent([entry.seq], 0.2, 0.3)
    assert box.pending(10) == [], "sent: waits for its receipt"
    time.sleep(0.3)
    assert box.pending(10) == [entry], "no receipt in time: published again"
    box.mark_sent([entry.seq], 0.2, 3600.0)  # second attempt: twice the timeout
    time.sleep(0.3)
    assert box.pending(10) == [], "the wait doubled"
    time.sleep(0.2)
    assert box.pending(10) == [entry]
    box.close()


def test_an_outbox_of_an_older_hub_is_opened_with_its_entries_pending(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    (reading,) = _readings(1)
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT"
        " NOT NULL UNIQUE, device_key TEXT NOT NULL, payload TEXT NOT NULL, created_at REAL"
        " NOT NULL);"
    )
    old.execute(
        "INSERT INTO outbox (idempotency_key, device_key, payload, created_at) VALUES (?, ?, ?, 0)",
        (reading.idempotency_key, reading.device.stable_id, reading.model_dump_json()),
    )
    old.commit()
    old.close()
    box = Outbox(path)
    assert [e.idempotency_key for e in box.pending(10)] == [reading.idempotency_key]
    assert (box.depth(), box.awaiting_receipt()) == (1, 0)
    box.close()


def _wait(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stored_keys(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT idempotency_key FROM reading_keys")]


def test_receipts_forget_stored_readings_and_keep_rejected_ones(
    tmp_path: Path, ingesting_hub: str, mqtt_url: str, database_url: str
) -> None:
    hub = ingesting_hub
    box = Outbox(tmp_path / "o.sqlite3")
    good = _readings(3)
    for r in good:
        box.add(r)
    # A reading this ingest rejects (a value no quantity may take), committed as is.
    bad = bp_reading(salt="rejected")
    raw = json.loads(bad.model_dump_json())
    raw["values"][0]["value"] = "not a number"
    with box._lock:  # bypass the model: what an older or broken hub may have queued
        box._db.execute(
            "INSERT INTO outbox (idempotency_key, device_key, payload, created_at)"
            " VALUES (?, ?, ?, 0)",
            (bad.idempotency_key, "x", json.dumps(raw)),
        )
    statuses = Listener(mqtt_url, topic_status(hub))
    publisher = OutboxPublisher(
        box, hub_id=hub, mqtt_url=mqtt_url, readings_per_message=1, status_interval_s=0.2
    )
    publisher.start()
    try:
        _wait(lambda: box.depth() == 0 and box.awaiting_receipt() == 0, "the receipts")
        [(key, reason, _)] = box.rejected()
        assert (key, reason) == (bad.idempotency_key, "invalid")
        assert sorted(_stored_keys(database_url)) == sorted(r.idempotency_key for r in good)
        # The status counts what was rejected, for the operator.
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            status = HubStatus.model_validate_json(statuses.messages.get(timeout=20).payload)
            if status.online and status.outbox_rejected == 1:
                break
        assert status is not None and status.outbox_rejected == 1
        assert status.outbox_awaiting_receipt == 0
    finally:
        publisher.stop()
        statuses.close()


def test_a_receipt_lost_on_the_way_back_means_one_resend_and_one_stored(
    tmp_path: Path, ingesting_hub: str, mqtt_url: str, database_url: str
) -> None:
    hub = ingesting_hub
    box = Outbox(tmp_path / "o.sqlite3")
    (reading,) = _readings(1)
    box.add(reading)
    sent = Listener(mqtt_url, topic_readings(hub))
    publisher = OutboxPublisher(
        box, hub_id=hub, mqtt_url=mqtt_url, receipt_timeout_s=1.0, receipt_timeout_max_s=1.0
    )
    failpoints.configure("receipt.received=raise")  # the hub never applies the receipt
    publisher.start()
    try:
        _wait(lambda: _stored_keys(database_url) == [reading.idempotency_key], "the reading")
        _wait(lambda: publisher.receipt_failures == 1, "the receipt, dropped")
        _wait(lambda: box.awaiting_receipt() == 1, "the PUBACK: sent, not forgotten")
        failpoints.configure("")
        _wait(lambda: box.awaiting_receipt() == 0 and box.depth() == 0, "the second receipt")
        published = [r.idempotency_key for b in sent.batches(2, timeout=5) for r in b.readings]
        assert published == [reading.idempotency_key] * 2, "published again, once"
        assert _stored_keys(database_url) == [reading.idempotency_key], "and stored once"
        assert not box.add(reading), "forgotten on its (duplicate) receipt, and remembered"
    finally:
        failpoints.configure("")
        publisher.stop()
        sent.close()
