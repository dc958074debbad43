"""Never more unacknowledged QoS 1 messages than the configured window (20): paho keys
in-flight messages by a 16-bit id, and a large window slows it down. Proven on the real
broker behind a link that is cut, so that PUBACKs stop coming while the outbox is full."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.outbox import Outbox
from gateway.publisher import OutboxPublisher
from hemhub.contract import topic_readings
from hemhub.settings import MqttTarget
from tests.factories import bp_reading, unique_hub_id
from tests.mqtt_helpers import Listener, clear_retained_status
from tests.netproxy import CuttableProxy

WINDOW = 20


@pytest.mark.timeout(90)
def test_never_more_than_the_window_unacknowledged(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    target = MqttTarget(mqtt_url)
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    box = Outbox(tmp_path / "o.sqlite3")
    readings = [
        bp_reading(100 + i % 90, 70, measured_at=start + timedelta(minutes=i)) for i in range(400)
    ]
    for r in readings:
        box.add(r)
    listener = Listener(mqtt_url, topic_readings(hub))
    with CuttableProxy(target.host, target.port) as proxy:
        publisher = OutboxPublisher(
            box,
            hub_id=hub,
            mqtt_url=proxy.url,
            readings_per_message=1,  # one message per reading: the window is what limits
            max_unacked_messages=WINDOW,
            max_readings_per_s=100_000,
            keepalive_s=5,
            reconnect_max_s=1,
            status_interval_s=0.2,  # status messages compete for the window too
        )
        peaks = {"ours": 0, "paho": 0}
        sampling = True

        def sample() -> None:
            client = publisher._client
            while sampling:
                peaks["ours"] = max(peaks["ours"], len(publisher._in_flight))
                # paho's own count of QoS > 0 messages sent and not yet acknowledged
                # (our readings and the hub's status messages alike).
                peaks["paho"] = max(peaks["paho"], client._inflight_messages)
                time.sleep(0.0005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        publisher.start()
        try:
            deadline = time.monotonic() + 20
            while publisher.published_readings < 50 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert publisher.published_readings >= 50
            proxy.cut()  # no PUBACK comes back any more
            time.sleep(2.0)
            stalled = len(publisher._in_flight)
            depth_during_cut = box.depth()
            # The window fills (one place kept for a status message), then it waits.
            assert stalled == WINDOW - 1
            assert depth_during_cut > 0
            proxy.restore()
            deadline = time.monotonic() + 60
            while box.depth() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert box.depth() == 0
        finally:
            sampling = False
            sampler.join(timeout=5)
            publisher.stop()
            box.close()
    try:
        # At least once: what was sent again after the cut may arrive twice.
        wanted = {r.idempotency_key for r in readings}
        delivered: set[str] = set()
        deadline = time.monotonic() + 20
        while delivered != wanted and time.monotonic() < deadline:
            for b in listener.batches(1, timeout=0.5):
                delivered |= {r.idempotency_key for r in b.readings}
        assert delivered == wanted
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)
    assert peaks["ours"] == WINDOW - 1, peaks  # reading batches: reached, never exceeded
    assert peaks["paho"] <= WINDOW, peaks  # with the status: never more than the window
