"""Hostile payloads against a real IngestWorker over the real Mosquitto and PostgreSQL.

Issue 5: 10,000 malformed or hostile payloads (wrong types, huge strings, wrong hub id
for the topic, schema version from the future, ...): every one in the dead letters with
a reason, the worker stays up and acknowledges everything, and the valid readings sent
in between are stored exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hemhub.contract import (
    MeasurementType,
    Reading,
    topic_config,
    topic_readings,
    topic_status,
)
from hemhub.settings import MqttTarget
from ingest import alerts
from ingest.messages import parse_message
from ingest.pipeline import DeadLetter
from ingest.worker import IngestWorker
from tests.factories import batch, bp_reading, unique_hub_id
from tests.ingest.factories import alerts_of, readings_of_hub, seeded_device
from tests.ingest.test_worker import Publisher, Running, count, wait_for

NOW = datetime.now(UTC).replace(microsecond=0)
MAX_PAYLOAD = 256 * 1024  # a small worker limit, so the test need not send megabytes
#: The payload that crashed the worker in a loop: valid ISO 8601, but not in UTC's range.
OVERFLOW_TIME = "9999-12-31T23:59:59-01:00"


@pytest.fixture
def start_worker(mqtt_url: str, database_url: str) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(**kwargs: Any) -> Running:
        kwargs.setdefault("shared_group", f"test-{uuid.uuid4().hex[:8]}")
        kwargs.setdefault("session_expiry_s", 60)
        kwargs.setdefault("evaluate_every_s", None)
        worker = IngestWorker(
            database_url, mqtt_url, client_id=f"test-ingest-{uuid.uuid4().hex[:8]}", **kwargs
        )
        r = Running(worker)
        running.append(r)
        assert worker.ready.wait(15), "worker did not subscribe"
        return r

    yield start
    for r in running:
        if r.thread.is_alive():
            r.stop()


def publish_all(publisher: Publisher, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1 publishes without waiting for each PUBACK in turn; then wait for all."""
    infos: list[mqtt.MQTTMessageInfo] = []
    for topic, payload in messages:
        infos.append(publisher.client.publish(topic, payload, qos=1))
    deadline = time.monotonic() + 60
    for info in infos:
        info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        assert info.is_published()


# ------------------------------------------------------------------ hostile payloads


def _dump(data: Any) -> bytes:
    return json.dumps(data).encode()


class Hostile:
    """Makes the i-th hostile payload of each kind from a valid batch of `hub`."""

    def __init__(self, hub: str, other: str, make_reading: Callable[[str], Reading]) -> None:
        self.hub, self.other = hub, other
        self.make_reading = make_reading

    def base(self, i: int) -> dict[str, Any]:
        r = self.make_reading(f"hostile-{i}")
        data: dict[str, Any] = json.loads(batch(self.hub, r).model_dump_json())
        return data

    def reading(self, i: int, **changes: Any) -> bytes:
        data = self.base(i)
        data["readings"][0].update(changes)
        return _dump(data)

    def device(self, i: int, **changes: Any) -> bytes:
        data = self.base(i)
        data["readings"][0]["device"].update(changes)
        return _dump(data)

    def value(self, i: int, value: Any) -> bytes:
        data = self.base(i)
        data["readings"][0]["values"][0]["value"] = value
        return _dump(data)

    def text(self, i: int, old: str, new: str) -> bytes:
        """The valid JSON text with a raw textual substitution (NaN, duplicate keys)."""
        text = json.dumps(self.base(i))
        assert old in text
        return text.replace(old, new, 1).encode()

    def top(self, i: int, **changes: Any) -> bytes:
        data = self.base(i)
        data.update(changes)
        return _dump(data)

    def kinds(self) -> list[Callable[[int], tuple[str, bytes]]]:
        """Every kind of hostile payload; the i-th message uses kind i % len(kinds)."""
        hub, other = self.hub, self.other
        readings, status = topic_readings(hub), topic_status(hub)
        r = readings

        def on(topic: str, make: Callable[[int], bytes]) -> Callable[[int], tuple[str, bytes]]:
            return lambda i: (topic, make(i))

        return [
            # timestamps: not representable in UTC, out of the window, naive, wrong type
            on(r, lambda i: self.reading(i, measured_at=OVERFLOW_TIME)),
            on(r, lambda i: self.reading(i, hub_received_at=OVERFLOW_TIME)),
            on(r, lambda i: self.reading(i, measured_at="0001-01-01T00:00:00+01:00")),
            on(r, lambda i: self.reading(i, measured_at="1900-01-01T00:00:00Z")),
            on(r, lambda i: self.reading(i, measured_at="2150-06-01T00:00:00Z")),
            on(r, lambda i: self.reading(i, measured_at="2026-11-24T08:00:00")),
            on(r, lambda i: self.reading(i, measured_at=[2026, 11, 24])),
            on(r, lambda i: self.reading(i, measured_at="yesterday")),
            # numbers that are no numbers
            on(r, lambda i: self.text(i, "115.0", "NaN")),
            on(r, lambda i: self.text(i, "115.0", "Infinity")),
            on(r, lambda i: self.text(i, "115.0", "-Infinity")),
            on(r, lambda i: self.text(i, "115.0", "1e999")),
            on(r, lambda i: self.value(i, {"v": 120})),
            on(r, lambda i: self.value(i, [120])),
            on(r, lambda i: self.reading(i, device_sequence=-1 - i)),
            on(r, lambda i: self.reading(i, device_sequence=10**40 + i)),
            # not JSON, not UTF-8, empty, nested beyond any sense
            on(r, lambda i: b""),
            on(r, lambda i: b"\xff\xfe\x00\x80" + i.to_bytes(4, "big")),
            on(r, lambda i: self.text(i, '"Acme"', '"Acm\xe9"').decode().encode("latin-1")),
            on(r, lambda i: self.text(i, '"Acme"', '"\\ud800"')),  # a lone surrogate
            on(r, lambda i: b"{not json " + str(i).encode()),
            on(r, lambda i: b"[" * (300 + i % 700) + b"]" * (300 + i % 700)),
            on(r, lambda i: b'{"a":' * 400 + str(i).encode() + b"}" * 400),
            # wrong types
            on(r, lambda i: b"null"),
            on(r, lambda i: b"[]"),
            on(r, lambda i: _dump(f"a string {i}")),
            on(r, lambda i: _dump(i)),
            on(r, lambda i: self.reading(i, values="120/80")),
            on(r, lambda i: self.reading(i, device=[hub])),
            on(r, lambda i: self.reading(i, status="irregular_pulse")),
            on(r, lambda i: self.reading(i, clock={"source": "sundial"})),
            on(r, lambda i: self.top(i, hub_id=i)),
            on(r, lambda i: self.top(i, readings={"0": i})),
            on(r, lambda i: self.top(i, readings=[])),
            on(r, lambda i: self.top(i, readings=[None])),
            # oversize strings (inside the payload limit; the contract bounds them)
            on(r, lambda i: self.device(i, manufacturer="x" * (1_000 + i % 20_000))),
            on(r, lambda i: self.device(i, serial="s" * 129)),
            on(
                r,
                lambda i: self.reading(i, status=["y" * 49]),
            ),
            on(r, lambda i: self.reading(i, status=["flag"] * 33)),
            on(r, lambda i: self.reading(i, raw_hex="ab" * 513)),
            on(r, lambda i: self.reading(i, characteristic="2A35" * 100)),
            # the topic's hub is not the payload's
            on(topic_readings(other), lambda i: _dump(self.base(i))),
            on(status, lambda i: _dump({"hub_id": other, "online": True})),
            on(r, lambda i: self.top(i, hub_id="a/b")),
            on(r, lambda i: self.top(i, hub_id="+")),
            # a schema version from the future (or none we speak)
            on(r, lambda i: self.top(i, schema_version=3)),
            on(r, lambda i: self.top(i, schema_version=1_000 + i)),
            on(r, lambda i: self.top(i, schema_version="3")),
            on(status, lambda i: _dump({"schema_version": 3, "hub_id": hub, "online": True})),
            # duplicate keys (the last one wins, and it is wrong)
            on(
                r,
                lambda i: self.text(
                    i, '"schema_version": 2', '"schema_version": 2, "schema_version": 3'
                ),
            ),
            on(
                r,
                lambda i: self.text(
                    i, f'"hub_id": "{hub}"', f'"hub_id": "{hub}", "hub_id": "{other}"'
                ),
            ),
            on(
                r,
                lambda i: self.text(
                    i,
                    '"measurement_type": "blood_pressure"',
                    '"measurement_type": "blood_pressure", "measurement_type": "x"',
                ),
            ),
            on(r, lambda i: _dump({**self.base(i), "readings": self.base(i)["readings"] * 2})),
            # unknown measurement types, and event/values mismatches
            on(r, lambda i: self.reading(i, measurement_type="blood_sugar")),
            on(r, lambda i: self.reading(i, measurement_type="BLOOD_PRESSURE")),
            on(r, lambda i: self.reading(i, measurement_type="")),
            on(r, lambda i: self.reading(i, measurement_type=MeasurementType.MEDICATION_EVENT)),
            on(r, lambda i: self.reading(i, event={"kind": "tamper"})),
            on(r, lambda i: self.reading(i, values=[])),
            # unknown fields, bad identifiers
            on(r, lambda i: self.top(i, evil=True)),
            on(r, lambda i: self.reading(i, patient_id=str(uuid.uuid4()))),
            on(r, lambda i: self.reading(i, idempotency_key="A" * 64)),
            on(r, lambda i: self.reading(i, idempotency_key="ab" * 31)),
            on(r, lambda i: self.device(i, address="not-an-address")),
            # hostile hub status
            on(status, lambda i: _dump({"hub_id": hub, "online": "perhaps"})),
            on(status, lambda i: _dump({"hub_id": hub, "online": True, "at": OVERFLOW_TIME})),
            on(
                status,
                lambda i: _dump(
                    {
                        "hub_id": hub,
                        "online": True,
                        "devices": [
                            {
                                "address": "C0:FF:EE:00:00:01",
                                "profile": "blood_pressure",
                                "last_seen_at": OVERFLOW_TIME,
                            }
                        ],
                    }
                ),
            ),
            on(
                status,
                lambda i: _dump(
                    {
                        "hub_id": hub,
                        "online": True,
                        "devices": [
                            {"address": "C0:FF:EE:00:00:01", "profile": "x", "battery_level": 101}
                        ],
                    }
                ),
            ),
            on(status, lambda i: b"\x00" * (1 + i % 64)),
            # a topic the ingest tier does not consume
            on(topic_config(hub), lambda i: _dump({"hub_id": hub, "version": i})),
        ]

    def rare(self) -> list[tuple[str, bytes, str]]:
        """Expensive kinds, a few of each: (topic, payload, expected reason)."""
        r = topic_readings(self.hub)
        out: list[tuple[str, bytes, str]] = []
        for i in range(3):
            out.append((r, self.device(90_000 + i, manufacturer="x" * 300_000), "oversized"))
            out.append((r, b"[" * 200_000 + b"]" * 200_000, "oversized"))
            out.append((r, b"[" * 100_000, "invalid JSON"))
        # valid JSON the contract accepts but PostgreSQL refuses (NUL in text): these
        # fail a whole batch, which is then stored message by message
        for i in range(2):
            out.append((r, self.reading(91_000 + i, status=["bad\u0000flag"]), "storage rejected"))
            out.append((r, self.device(92_000 + i, model="BP\u00001"), "storage rejected"))
        return out


def test_ten_thousand_hostile_payloads_are_dead_lettered_and_the_worker_stays_up(
    db: psycopg.Connection[Any],
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub, other = unique_hub_id("hostile"), unique_hub_id("hostile-other")
    identity, _, patient_id = seeded_device(
        db, serial=hub, assigned_from=NOW - timedelta(1), hub_id=hub
    )

    def make_reading(salt: str) -> Reading:
        return bp_reading(190, 115, measured_at=NOW, dev=identity, salt=salt)

    gen = Hostile(hub, other, make_reading)
    kinds = gen.kinds()
    rare = gen.rare()
    total_hostile = 10_000
    hostile: list[tuple[str, bytes]] = [kinds[i % len(kinds)](i) for i in range(total_hostile)]
    step = total_hostile // len(rare)
    for n, (topic, payload, _) in enumerate(rare):
        hostile[n * step + 1] = (topic, payload)  # in place of a common one
    # every common kind is refused by parsing already (the rare ones partly by storage)
    for i in range(len(kinds)):
        topic, payload = kinds[i](i)
        assert isinstance(parse_message(topic, payload, NOW, max_bytes=MAX_PAYLOAD), DeadLetter)

    valid = [
        bp_reading(150 + n % 60, 80, measured_at=NOW - timedelta(minutes=n), dev=identity)
        for n in range(100)
    ]
    messages: list[tuple[str, bytes]] = []
    every = total_hostile // len(valid)
    for n, item in enumerate(hostile):
        messages.append(item)
        if n % every == every // 2:
            r = valid[n // every]
            messages.append((topic_readings(hub), batch(hub, r).model_dump_json().encode()))
    assert len(hostile) == total_hostile and len(messages) == total_hostile + len(valid)

    running = start_worker(
        topics=[topic_readings(hub), topic_readings(other), topic_status(hub), topic_config(hub)],
        max_payload_bytes=MAX_PAYLOAD,
    )
    started = time.monotonic()
    publish_all(publisher, messages)
    worker = running.worker
    wait_for(lambda: worker.stats["acked"] >= len(messages), timeout=90, what="all acked")
    elapsed = time.monotonic() - started

    assert running.thread.is_alive()
    assert worker.stats["acked"] == len(messages)
    assert worker.stats["dead_letters"] == total_hostile
    # Each distinct hostile message is one dead letter, raw bytes kept (up to the limit),
    # counting its deliveries: the same bytes sent again are a repeat, not a new row.
    rows = db.execute("SELECT topic, reason, payload, deliveries FROM dead_letters").fetchall()
    assert sum(deliveries for *_, deliveries in rows) == total_hostile
    assert all(reason and reason.strip() for _, reason, _, _ in rows)
    assert Counter({(t, bytes(p)): d for t, _, p, d in rows}) == Counter(
        (t, p[:MAX_PAYLOAD]) for t, p in hostile
    )
    assert len(rows) < total_hostile  # some kinds repeat their bytes
    by_payload = {bytes(p): reason for _, reason, p, _ in rows}
    for _, payload, expected in rare:
        assert expected in by_payload[payload[:MAX_PAYLOAD]], by_payload[payload[:MAX_PAYLOAD]]
    overflow = hostile[len(kinds)][1]  # kind 0, the year 9999 at -01:00
    assert overflow == gen.reading(len(kinds), measured_at=OVERFLOW_TIME)
    assert "less than 2101-01-01T00:00:00Z" in by_payload[overflow]
    # The valid readings in between: each stored exactly once, attributed, alerting.
    stored = Counter(r["idempotency_key"] for r in readings_of_hub(db, hub))
    assert stored == Counter(r.idempotency_key for r in valid)
    assert readings_of_hub(db, other) == []
    assert [a["rule"] for a in alerts_of(db, patient_id)] == ["blood_pressure_high"]
    print(f"{len(messages)} messages, {elapsed:.1f} s, {worker.stats}")


# ------------------------------------------------------------------ storage failures


def _explodes_on_666(reading: Reading) -> str | None:
    for q in reading.values:
        if q.value == 666:
            # what _fmt_time raised for year 9999 at -01:00, before the contract's bounds
            raise OverflowError("date value out of range")
    return None


def test_an_unexpected_exception_while_storing_dead_letters_that_message_only(
    db: psycopg.Connection[Any],
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    """Not only database errors: anything that fails a batch isolates the culprit."""
    hub = unique_hub_id("explode")
    identity, _, _ = seeded_device(db, serial=hub, assigned_from=NOW - timedelta(1), hub_id=hub)
    rule = alerts.Rule(
        "explodes", 1, alerts.Severity.LOW, MeasurementType.BLOOD_PRESSURE, _explodes_on_666
    )
    running = start_worker(topics=[topic_readings(hub)], rules=[rule], batch_seconds=0.5)
    before = bp_reading(measured_at=NOW, dev=identity, salt="before")
    bad = bp_reading(666, 80, measured_at=NOW, dev=identity)
    after = bp_reading(measured_at=NOW, dev=identity, salt="after")
    payloads = [batch(hub, r).model_dump_json().encode() for r in (before, bad, after)]
    publish_all(publisher, [(topic_readings(hub), p) for p in payloads])
    worker = running.worker
    wait_for(lambda: worker.stats["acked"] >= 3, what="all acked")

    assert running.thread.is_alive()
    assert worker.stats["isolated_batches"] >= 1
    assert sorted(r["idempotency_key"] for r in readings_of_hub(db, hub)) == sorted(
        [before.idempotency_key, after.idempotency_key]
    )
    rows = db.execute("SELECT topic, reason, payload FROM dead_letters").fetchall()
    assert [(t, bytes(p)) for t, _, p in rows] == [(topic_readings(hub), payloads[1])]
    assert rows[0][1] == "storage failed: OverflowError: date value out of range"
    # the worker goes on storing
    later = bp_reading(measured_at=NOW, dev=identity, salt="later")
    publisher.publish(topic_readings(hub), batch(hub, later).model_dump_json())
    wait_for(lambda: len(readings_of_hub(db, hub)) == 3, what="a later reading stored")
    assert count(db, "SELECT count(*) FROM dead_letters") == 1


# ------------------------------------------------------------------ worker processes


def _worker_children(parent: int) -> list[int]:
    """Pids of the worker processes `run_ingest` spawned (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _forget_sessions(mqtt_url: str, client_ids: list[str]) -> None:
    """End the persistent sessions the workers left on the shared broker."""
    target = MqttTarget(mqtt_url)
    for client_id in client_ids:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        c.connect(target.host, target.port, clean_start=True, properties=props)
        c.loop_start()
        wait_for(c.is_connected, what=f"{client_id} connected")
        c.disconnect()
        c.loop_stop()


def test_a_killed_worker_process_is_started_again(
    db: psycopg.Connection[Any], database_url: str, mqtt_url: str, publisher: Publisher
) -> None:
    """`hemhub ingest --workers 2`: a worker killed -9 comes back with its client id."""
    prefix, group = f"test-sup-{uuid.uuid4().hex[:8]}", f"test-{uuid.uuid4().hex[:8]}"
    code = (
        "import sys; from hemhub.settings import Settings;"
        " from ingest.supervisor import run_ingest;"
        " run_ingest(Settings(database_url=sys.argv[1], mqtt_url=sys.argv[2]), 2,"
        " group=sys.argv[3], client_prefix=sys.argv[4])"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, database_url, mqtt_url, group, prefix],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(_worker_children(proc.pid)) == 2, timeout=30, what="2 workers")
        first = _worker_children(proc.pid)
        os.kill(first[0], signal.SIGKILL)
        wait_for(
            lambda: len(set(_worker_children(proc.pid)) - set(first)) == 1,
            timeout=30,
            what="the killed worker started again",
        )
        assert first[1] in _worker_children(proc.pid)
        # the group still stores what hubs publish
        hub = unique_hub_id("sup")
        r = bp_reading(measured_at=NOW)
        deadline = time.monotonic() + 30
        while not readings_of_hub(db, hub) and time.monotonic() < deadline:
            publisher.publish(topic_readings(hub), batch(hub, r).model_dump_json())
            time.sleep(1.0)  # the restarted worker may still be subscribing
        assert [x["idempotency_key"] for x in readings_of_hub(db, hub)] == [r.idempotency_key]
        last = _worker_children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert [pid for pid in last if Path(f"/proc/{pid}").exists()] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _forget_sessions(mqtt_url, [f"{prefix}-0", f"{prefix}-1"])
