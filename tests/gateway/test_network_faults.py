"""The hub's link to the broker fails like home WiFi does (real broker behind a cuttable
proxy): the last will marks the hub offline, and a backlog is replayed without loss,
without duplicates, in order per device."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from gateway.outbox import Outbox
from gateway.publisher import OutboxPublisher
from hemhub.contract import HubStatus, topic_readings, topic_status
from hemhub.settings import MqttTarget
from ingest.migrations import migrate
from ingest.worker import IngestWorker
from tests.factories import bp_reading, device, unique_hub_id
from tests.mqtt_helpers import Listener, clear_retained_status
from tests.netproxy import CuttableProxy

KEEPALIVE_S = 5


@pytest.fixture
def proxy(mqtt_url: str) -> Iterator[CuttableProxy]:
    target = MqttTarget(mqtt_url)
    with CuttableProxy(target.host, target.port) as p:
        yield p


def test_last_will_marks_hub_offline_within_keepalive(
    tmp_path: Path, mqtt_url: str, proxy: CuttableProxy
) -> None:
    hub = unique_hub_id()
    listener = Listener(mqtt_url, topic_status(hub))
    publisher = OutboxPublisher(
        Outbox(tmp_path / "o.sqlite3"), hub_id=hub, mqtt_url=proxy.url, keepalive_s=KEEPALIVE_S
    )
    publisher.start()
    try:
        online = HubStatus.model_validate_json(listener.messages.get(timeout=10).payload)
        assert online.online
        proxy.cut()
        cut_at = time.monotonic()
        offline = HubStatus.model_validate_json(
            listener.messages.get(timeout=KEEPALIVE_S * 3).payload
        )
        # MQTT: the broker gives up after 1.5 keepalives without a packet; its periodic
        # check and a loaded CI machine add a few seconds.
        assert not offline.online
        assert time.monotonic() - cut_at <= KEEPALIVE_S * 2 + 3
    finally:
        proxy.restore()
        publisher.stop()
        listener.close()
        clear_retained_status(mqtt_url, hub)


def test_long_outage_backlog_is_replayed_once_in_order(
    tmp_path: Path, mqtt_url: str, database_url: str, proxy: CuttableProxy
) -> None:
    migrate(database_url)
    hub = unique_hub_id()
    worker = IngestWorker(
        database_url, mqtt_url, client_id=f"ingest-{hub}", topics=(topic_readings(hub),)
    )
    worker_thread = threading.Thread(target=worker.run, daemon=True)
    worker_thread.start()
    assert worker.ready.wait(10)
    listener = Listener(mqtt_url, topic_readings(hub))

    box = Outbox(tmp_path / "o.sqlite3")
    publisher = OutboxPublisher(
        box,
        hub_id=hub,
        mqtt_url=proxy.url,
        keepalive_s=KEEPALIVE_S,
        reconnect_max_s=2,
        readings_per_message=20,
        max_readings_per_s=400,
    )
    cuffs = [device(serial="CUFF-A", address="C0:00:00:00:00:0A"), device(serial="CUFF-B")]
    start = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    readings = [
        bp_reading(110 + i % 60, 75, measured_at=start + timedelta(minutes=i), dev=cuffs[i % 2])
        for i in range(600)
    ]
    publisher.start()
    try:
        for r in readings[:50]:  # some go through before the outage
            box.add(r)
        publisher.kick()
        time.sleep(1.0)
        proxy.cut()
        for r in readings[50:]:  # the rest is measured while the hub is cut off
            box.add(r)
        publisher.kick()
        time.sleep(KEEPALIVE_S * 2)  # long enough for both ends to give up the connection
        assert box.depth() >= 500, "nothing leaves the outbox without a PUBACK"
        proxy.restore()

        received = listener.batches(600, timeout=60)
        first_seen: list[str] = []
        for b in received:
            for r in b.readings:
                if r.idempotency_key not in first_seen:
                    first_seen.append(r.idempotency_key)
        assert len(first_seen) == 600
        for cuff in cuffs:
            expected = [r.idempotency_key for r in readings if r.device == cuff]
            assert [k for k in first_seen if k in set(expected)] == expected, "order per device"

        deadline = time.monotonic() + 30
        count = 0
        while count < 600 and time.monotonic() < deadline:
            with psycopg.connect(database_url) as conn:
                (count,) = conn.execute("SELECT count(*) FROM readings").fetchone()  # type: ignore[misc]
            time.sleep(0.2)
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT idempotency_key, count(*) FROM readings GROUP BY 1"
            ).fetchall()
        assert len(rows) == 600 and all(n == 1 for _, n in rows)
        assert box.depth() == 0
    finally:
        proxy.restore()
        publisher.stop()
        listener.close()
        worker.stop()
        worker_thread.join(timeout=20)
        clear_retained_status(mqtt_url, hub)
