"""The ingest metrics move with a real ingest (Mosquitto -> worker -> PostgreSQL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from prometheus_client import REGISTRY

from hemhub.contract import HubStatus, topic_readings, topic_status
from hemhub.embedded import reachable
from ingest import metrics
from ingest.migrations import migrate
from tests.factories import batch, bp_reading, unique_hub_id
from tests.ingest.factories import seeded_device
from tests.ingest.test_worker import Publisher
from tests.mqtt_helpers import clear_retained_status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_counters_move_after_a_real_ingest(
    database_url: str, ingesting_hub: str, publisher: Publisher
) -> None:
    hub = ingesting_hub
    with psycopg.connect(database_url, autocommit=True) as conn:
        identity, _, _ = seeded_device(
            conn, serial="M-1", assigned_from=datetime(2020, 1, 1, tzinfo=UTC), hub_id=hub
        )
    before: dict[str, Any] = {
        name: value(name)
        for name in (
            "hemhub_ingest_readings_stored_total",
            "hemhub_ingest_readings_duplicate_total",
            "hemhub_ingest_dead_letters_total",
            "hemhub_ingest_statuses_total",
            "hemhub_ingest_receipts_sent_total",
            "hemhub_ingest_batch_seconds_count",
        )
    }
    rejected = value("hemhub_ingest_readings_rejected_total", reason="invalid")
    reading = batch(
        hub, bp_reading(dev=identity, measured_at=datetime.now(UTC).replace(microsecond=0))
    )
    publisher.publish(topic_readings(hub), reading.model_dump_json())
    publisher.publish(topic_readings(hub), reading.model_dump_json())  # a duplicate
    broken = reading.model_dump_json().replace('"values":[', '"values":"x","v":[', 1)
    publisher.publish(topic_readings(hub), broken)
    publisher.publish(topic_status(hub), HubStatus(hub_id=hub, online=True).model_dump_json())

    def moved(name: str, by: float) -> bool:
        return value(name) - before[name] >= by

    wait_for(lambda: moved("hemhub_ingest_readings_stored_total", 1), "stored")
    wait_for(lambda: moved("hemhub_ingest_readings_duplicate_total", 1), "duplicate")
    wait_for(lambda: moved("hemhub_ingest_dead_letters_total", 1), "dead letter")
    wait_for(lambda: moved("hemhub_ingest_statuses_total", 1), "status")
    wait_for(lambda: moved("hemhub_ingest_receipts_sent_total", 1), "receipts")
    assert moved("hemhub_ingest_batch_seconds_count", 1)
    assert value("hemhub_ingest_readings_rejected_total", reason="invalid") == rejected + 1


def test_served_over_http(ingesting_hub: str, publisher: Publisher) -> None:
    port = free_port()
    metrics.serve_in_process(port)
    hub = ingesting_hub
    publisher.publish(topic_status(hub), HubStatus(hub_id=hub, online=False).model_dump_json())
    wait_for(lambda: value("hemhub_ingest_statuses_total") >= 1, "status")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "hemhub_ingest_statuses_total" in text
    assert "hemhub_ingest_batch_seconds_bucket" in text


def test_several_workers_export_their_sum_through_the_supervisor(
    database_url: str, mqtt_url: str, publisher: Publisher
) -> None:
    """`hemhub ingest --workers 2 --metrics-port P`: the supervisor serves the workers'
    counters summed (prometheus-client's multiprocess mode), from real processes."""
    migrate(database_url)
    port, tag = free_port(), uuid.uuid4().hex[:8]
    code = (
        "from hemhub.settings import Settings; from ingest.supervisor import run_ingest;"
        f"run_ingest(Settings(database_url={database_url!r}, mqtt_url={mqtt_url!r},"
        f" ingest_metrics_port={port}), workers=2, group='test-{tag}',"
        f" client_prefix='test-ingest-{tag}')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEMHUB_", "PROMETHEUS"))}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    hubs = [unique_hub_id() for _ in range(6)]
    try:
        wait_for(lambda: reachable("127.0.0.1", port), "metrics endpoint", timeout=30)

        def stored() -> bool:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM hubs WHERE id = ANY(%s) AND online", (hubs,)
                ).fetchone()
            return row == (len(hubs),)

        # Until the workers have subscribed (spawned processes start slowly on a busy
        # machine) a shared subscription drops what is published: publish again until
        # stored (a hub's newest status wins, so repeats change nothing).
        deadline = time.monotonic() + 90
        while not stored():
            assert time.monotonic() < deadline, "statuses not stored"
            for hub in hubs:  # a shared subscription spreads them over both workers
                status = HubStatus(hub_id=hub, online=True).model_dump_json()
                publisher.publish(topic_status(hub), status)
            time.sleep(2.0)

        def exported() -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("hemhub_ingest_statuses_total "):
                        return float(line.split()[1])
            return 0.0

        # Other tests' hubs on the shared broker may be counted too: at least ours.
        wait_for(lambda: exported() >= len(hubs), "summed counter")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for hub in hubs:
            clear_retained_status(mqtt_url, hub)
