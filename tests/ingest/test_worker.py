"""IngestWorker over the real Mosquitto and PostgreSQL (fixtures `mqtt_url`, `database_url`)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hemhub.contract import HubStatus, topic_readings, topic_status
from hemhub.embedded import EmbeddedBroker
from hemhub.settings import MqttTarget
from ingest import alerts
from ingest.jobs import Job
from ingest.messages import parse_message
from ingest.migrations import migrate
from ingest.pipeline import DeadLetter, StatusUpdate
from ingest.worker import IngestWorker
from tests.factories import batch, bp_reading, unique_hub_id
from tests.ingest.factories import readings_of_hub, seeded_device

NOW = datetime.now(UTC).replace(microsecond=0)


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Publisher:
    """A hub stand-in: QoS 1 publishes, each waited for until the broker's PUBACK."""

    def __init__(self, mqtt_url: str) -> None:
        t = MqttTarget(mqtt_url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.connect(t.host, t.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Running:
    """An IngestWorker on its own thread."""

    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, name=worker.client_id, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def start_worker(mqtt_url: str) -> Iterator[Callable[..., Running]]:
    """Start workers with test-unique client ids and groups; all stopped at the end."""
    running: list[Running] = []
    group = f"test-{uuid.uuid4().hex[:8]}"

    def start(
        database_url: str,
        *,
        client_id: str | None = None,
        wait_ready: bool = True,
        url: str | None = None,
        **kwargs: Any,
    ) -> Running:
        kwargs.setdefault("shared_group", group)
        kwargs.setdefault("session_expiry_s", 60)  # the shared broker keeps no litter
        w = IngestWorker(
            database_url,
            url or mqtt_url,
            client_id=client_id or f"test-ingest-{uuid.uuid4().hex[:8]}",
            **kwargs,
        )
        r = Running(w)
        running.append(r)
        if wait_ready:
            assert w.ready.wait(15), "worker did not subscribe"
        return r

    yield start
    for r in running:
        if r.thread.is_alive():
            r.stop()


def count(conn: psycopg.Connection[Any], query: str, *params: object) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


# ------------------------------------------------------------------ over the broker


def test_reading_published_with_qos1_is_stored_and_acked(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id()
    running = start_worker(database_url)
    assert running.worker.protocol == "5"
    r = bp_reading(measured_at=NOW)
    publisher.publish(topic_readings(hub), batch(hub, r).model_dump_json())
    wait_for(lambda: len(readings_of_hub(db, hub)) == 1, what="reading stored")
    wait_for(lambda: running.worker.stats["acked"] >= 1, what="ack")
    assert readings_of_hub(db, hub)[0]["idempotency_key"] == r.idempotency_key
    assert running.worker.stats["readings_stored"] == 1


def test_same_message_five_times_is_stored_once_and_alerts_once(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        db, serial=hub, assigned_from=NOW - timedelta(1), hub_id=hub
    )
    running = start_worker(database_url, topics=[topic_readings(hub)])
    payload = batch(hub, bp_reading(190, 115, measured_at=NOW, dev=identity)).model_dump_json()
    for _ in range(5):
        publisher.publish(topic_readings(hub), payload)
    wait_for(lambda: running.worker.stats["readings_received"] == 5, what="5 deliveries")
    assert len(readings_of_hub(db, hub)) == 1
    assert running.worker.stats["duplicates"] == 4
    assert db.execute(
        "SELECT count(*), sum(count) FROM alerts WHERE patient_id = %s", (patient_id,)
    ).fetchone() == (1, 1)


def test_alert_notify_reaches_a_listener(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id()
    identity, _, patient_id = seeded_device(
        db, serial=hub, assigned_from=NOW - timedelta(1), hub_id=hub
    )
    start_worker(database_url, topics=[topic_readings(hub)])
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {alerts.NOTIFY_CHANNEL}")
        publisher.publish(
            topic_readings(hub),
            batch(hub, bp_reading(186, 112, measured_at=NOW, dev=identity)).model_dump_json(),
        )
        notes = list(listener.notifies(timeout=15, stop_after=1))
    assert len(notes) == 1
    body = json.loads(notes[0].payload)
    assert body["patient_id"] == str(patient_id)
    assert (body["tenant_id"], body["status"], body["rule"], body["event"]) == (
        "kommun-a",
        "open",
        "blood_pressure_high",
        "opened",
    )
    assert count(db, "SELECT count(*) FROM alerts WHERE id = %s", body["alert_id"]) == 1


def test_malformed_payloads_are_dead_lettered_and_valid_ones_still_stored(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub, other = unique_hub_id(), unique_hub_id()
    running = start_worker(
        database_url,
        topics=[topic_readings(hub), topic_readings(other), topic_status(hub)],
        max_payload_bytes=256 * 1024,  # a small limit, so the test need not send megabytes
    )
    good = batch(hub, bp_reading(measured_at=NOW))
    wrong_types = json.loads(good.model_dump_json())
    wrong_types["readings"][0]["values"] = "120/80"
    huge = json.loads(good.model_dump_json())
    huge["readings"][0]["device"]["manufacturer"] = "x" * 100_000
    oversized = json.loads(good.model_dump_json())
    oversized["readings"][0]["device"]["manufacturer"] = "x" * 300_000
    future = json.loads(good.model_dump_json())
    future["schema_version"] = 3
    nul = json.loads(batch(hub, bp_reading(measured_at=NOW, salt="nul")).model_dump_json())
    nul["readings"][0]["status"] = ["bad\u0000flag"]  # valid JSON, PostgreSQL refuses it
    nan = good.model_dump_json().replace("120.0", "NaN", 1)

    bad: list[tuple[str, str | bytes, str]] = [
        (topic_readings(hub), b"{not json", "invalid JSON"),
        (topic_readings(hub), json.dumps(wrong_types), "validation failed"),
        (topic_readings(hub), json.dumps(huge), "validation failed"),
        (topic_readings(hub), json.dumps(oversized), "oversized"),
        (topic_readings(other), good.model_dump_json(), "does not match topic hub"),
        (topic_readings(hub), json.dumps(future), "unsupported schema_version 3"),
        (topic_readings(hub), json.dumps(nul), "storage rejected"),
        (topic_readings(hub), nan, "finite number"),
        (topic_status(hub), b'{"online": "perhaps"}', "validation failed"),
    ]
    for i, (topic, payload, _) in enumerate(bad):
        publisher.publish(topic, payload)
        if i == 3:  # a valid message in between
            publisher.publish(topic_readings(hub), good.model_dump_json())

    wait_for(
        lambda: count(db, "SELECT count(*) FROM dead_letters") == len(bad), what="dead letters"
    )
    wait_for(lambda: running.worker.stats["acked"] == len(bad) + 1, what="all acked")
    assert running.worker.stats["dead_letters"] == len(bad)
    rows = db.execute("SELECT topic, reason, payload FROM dead_letters").fetchall()
    # One row per bad message, whatever order a batch wrote them in (a loaded machine
    # puts several in one batch).
    stored_rows = {(got_topic, bytes(stored)): reason for got_topic, reason, stored in rows}
    assert len(stored_rows) == len(bad)
    for topic, payload, expected in bad:
        raw = payload.encode() if isinstance(payload, str) else payload
        reason = stored_rows[(topic, raw[: 256 * 1024])]
        assert expected in reason, reason
    assert [r["idempotency_key"] for r in readings_of_hub(db, hub)] == [
        good.readings[0].idempotency_key
    ]
    assert readings_of_hub(db, other) == []
    assert running.thread.is_alive()


def test_status_message_updates_the_hub(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id()
    start_worker(database_url, topics=[topic_status(hub)])
    status = HubStatus(hub_id=hub, online=True, at=NOW, software_version="0.3", outbox_depth=7)
    publisher.publish(topic_status(hub), status.model_dump_json())
    wait_for(
        lambda: count(db, "SELECT count(*) FROM hubs WHERE id = %s AND online", hub) == 1,
        what="hub online",
    )
    publisher.publish(topic_status(hub), HubStatus(hub_id=hub, online=False).model_dump_json())
    wait_for(
        lambda: count(db, "SELECT count(*) FROM hubs WHERE id = %s AND NOT online", hub) == 1,
        what="hub offline",
    )
    row = db.execute(
        "SELECT last_status, last_status_at FROM hubs WHERE id = %s", (hub,)
    ).fetchone()
    assert row is not None and row[0]["online"] is False and row[1] is not None


def test_database_outage_mid_run_is_retried(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id()
    running = start_worker(database_url, topics=[topic_readings(hub)])
    publisher.publish(
        topic_readings(hub), batch(hub, bp_reading(measured_at=NOW, salt="1")).model_dump_json()
    )
    wait_for(lambda: len(readings_of_hub(db, hub)) == 1, what="first reading")
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name LIKE 'hemhub-ingest%%' AND datname = current_database()"
    )
    publisher.publish(
        topic_readings(hub), batch(hub, bp_reading(measured_at=NOW, salt="2")).model_dump_json()
    )
    wait_for(lambda: len(readings_of_hub(db, hub)) == 2, what="second reading after reconnect")
    assert running.worker.stats["db_errors"] >= 1


def test_nothing_is_acked_while_the_database_is_down(
    postgres_server: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    """Messages received while storage fails stay in the session and come back."""
    name = f"hemhub_test_{uuid.uuid4().hex[:12]}"
    info = psycopg.conninfo.conninfo_to_dict(postgres_server)
    info["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    hub = unique_hub_id()
    client_id = f"test-ingest-{uuid.uuid4().hex[:8]}"

    # its database does not exist yet
    first = start_worker(url, client_id=client_id, topics=[topic_readings(hub)])
    r = bp_reading(measured_at=NOW)
    publisher.publish(topic_readings(hub), batch(hub, r).model_dump_json())
    wait_for(lambda: first.worker.stats["db_errors"] >= 2, what="retries")
    first.stop()
    assert first.worker.stats["acked"] == 0

    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(url)
        # the same client id resumes the session: the broker redelivers
        second = start_worker(url, client_id=client_id, topics=[topic_readings(hub)])
        with psycopg.connect(url, autocommit=True) as conn:
            wait_for(lambda: len(readings_of_hub(conn, hub)) == 1, what="redelivered reading")
        wait_for(lambda: second.worker.stats["acked"] == 1, what="ack after commit")
        second.stop()
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_workers_share_the_subscription(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id()
    one, two = (start_worker(database_url, topics=[topic_readings(hub)]) for _ in range(2))
    n = 40
    for i in range(n):
        publisher.publish(
            topic_readings(hub),
            batch(hub, bp_reading(measured_at=NOW - timedelta(minutes=i))).model_dump_json(),
        )
    wait_for(lambda: len(readings_of_hub(db, hub)) == n, what="all readings")
    got = one.worker.stats["messages"] + two.worker.stats["messages"]
    assert got == n  # each message went to exactly one member of the group
    assert one.worker.stats["messages"] > 0 and two.worker.stats["messages"] > 0


def test_large_batches_are_split_over_connections_and_each_hub_stays_in_order(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    """Bursts are split by hub over the commit threads, trickles are not; either way a
    resident's readings are judged in order: the sensor alert (which clears at the next
    unflagged reading) is open at the end exactly when their latest reading is flagged.
    Stored out of order, a flagged reading committed after a later clean one would
    leave it open."""
    hubs = [unique_hub_id() for _ in range(6)]
    residents = {
        hub: seeded_device(db, serial=hub, assigned_from=NOW - timedelta(days=1), hub_id=hub)
        for hub in hubs
    }
    # Per hub: flagged, flagged, clean, flagged, ...; the hubs end differently.
    steps = 24
    flagged = {hub: [(i + k) % 3 != 2 for i in range(steps)] for k, hub in enumerate(hubs)}
    payloads: list[tuple[str, str]] = []
    for i in range(steps):
        for hub in hubs:
            identity = residents[hub][0]
            at = NOW - timedelta(minutes=steps - i)
            r = bp_reading(measured_at=at, dev=identity)
            if flagged[hub][i]:
                r = r.model_copy(update={"status": ["cuff_too_loose"]})
            payloads.append((hub, batch(hub, r).model_dump_json()))
    running = start_worker(
        database_url,
        topics=[topic_readings(hub) for hub in hubs],
        connections=3,
        fanout_readings=10,
        batch_size=40,
        wait_ready=True,
    )
    running.worker.stop()  # let the burst queue up in the session, then take it at once
    running.thread.join(20)
    half = len(payloads) // 2
    for hub, body in payloads[:half]:
        publisher.publish(topic_readings(hub), body)
    burst = start_worker(
        database_url,
        client_id=running.worker.client_id,
        topics=[topic_readings(hub) for hub in hubs],
        connections=3,
        fanout_readings=10,
        fanout_patience=1,
        batch_size=40,
    )
    wait_for(lambda: burst.worker.stats["readings_stored"] == half, what="the burst")
    for hub, body in payloads[half:]:  # one by one: batches too small to split
        publisher.publish(topic_readings(hub), body)
    wait_for(lambda: burst.worker.stats["readings_stored"] == len(payloads), what="the rest")
    assert burst.worker.stats["split_batches"] > 0
    assert burst.worker.stats["acked"] == burst.worker.stats["messages"] == len(payloads)
    for hub in hubs:
        patient_id = residents[hub][2]
        rows = db.execute(
            "SELECT status, count FROM alerts WHERE patient_id = %s AND rule = %s"
            " ORDER BY opened_at",
            (patient_id, "sensor_status_blood_pressure"),
        ).fetchall()
        # (a batch holding flagged, clean, flagged for a resident repeats one alert)
        assert sum(count for _, count in rows) == sum(flagged[hub]), hub
        assert [status for status, _ in rows[:-1]] == ["resolved"] * (len(rows) - 1), hub
        assert rows[-1][0] == ("open" if flagged[hub][-1] else "resolved"), hub


def test_a_long_periodic_job_does_not_hold_up_readings(
    db: psycopg.Connection[Any],
    database_url: str,
    mqtt_url: str,
    publisher: Publisher,
) -> None:
    """The scheduled evaluation over a large population can take seconds: it runs on a
    thread and connection of its own while readings keep being stored and acked."""
    hubs = [unique_hub_id() for _ in range(6)]
    release, started = threading.Event(), threading.Event()

    def slow_job(conn: psycopg.Connection[Any]) -> None:
        started.set()
        assert release.wait(30), "the test never released the job"

    worker = IngestWorker(
        database_url,
        mqtt_url,
        client_id=f"test-ingest-{uuid.uuid4().hex[:8]}",
        shared_group=f"test-{uuid.uuid4().hex[:8]}",
        session_expiry_s=60,
        topics=[topic_readings(hub) for hub in hubs],
        evaluate_every_s=None,
    )
    worker._jobs.append(Job("slow", 3600.0, 0x74657374, slow_job))
    running = Running(worker)
    try:
        assert worker.ready.wait(15), "worker did not subscribe"
        assert started.wait(15), "the job did not start"
        for k, hub in enumerate(hubs):
            r = bp_reading(measured_at=NOW - timedelta(minutes=k))  # keys of their own
            publisher.publish(topic_readings(hub), batch(hub, r).model_dump_json())
        wait_for(lambda: worker.stats["acked"] == len(hubs), what="readings acked during the job")
        assert all(len(readings_of_hub(db, hub)) == 1 for hub in hubs)
        assert not release.is_set()  # the job was still running throughout
    finally:
        release.set()
        running.stop()


def test_falls_back_to_mqtt_311_on_a_broker_without_v5(
    db: psycopg.Connection[Any],
    database_url: str,
    tmp_path: Path,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id()
    with EmbeddedBroker(tmp_path / "amqtt") as url:
        running = start_worker(database_url, url=url)
        assert running.worker.protocol == "3.1.1"
        pub = Publisher(url)
        try:
            pub.publish(
                topic_readings(hub), batch(hub, bp_reading(measured_at=NOW)).model_dump_json()
            )
            wait_for(lambda: len(readings_of_hub(db, hub)) == 1, what="reading via amqtt")
        finally:
            pub.close()
        running.stop()


# ------------------------------------------------------------------ parsing (no servers)


def test_parse_message_outcomes() -> None:
    hub = "hub-1"
    good = batch(hub, bp_reading(measured_at=NOW)).model_dump_json().encode()
    assert parse_message(topic_readings(hub), good, NOW).hub_id == hub  # type: ignore[union-attr]
    status = parse_message(topic_status(hub), b'{"hub_id": "hub-1", "online": true}', NOW)
    assert isinstance(status, StatusUpdate) and status.received_at == NOW
    assert parse_message(topic_status(hub), b"", NOW) is None  # retained status cleared
    cases = {
        "hemhub/v1/hubs/hub-1/config": "does not consume 'config'",
        "hemhub/v2/hubs/hub-1/readings": "topic:",
        "hemhub/v1/hubs/bad+id/readings": "topic:",
    }
    for topic, reason in cases.items():
        got = parse_message(topic, good, NOW)
        assert isinstance(got, DeadLetter) and reason in got.reason, (topic, got)
    small = parse_message(topic_readings(hub), good, NOW, max_bytes=100)
    assert isinstance(small, DeadLetter) and small.reason.startswith("oversized")
    assert small.payload == good[:100]
