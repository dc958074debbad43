"""The ingest benchmark: raw COPY limit, end-to-end ingest, publish -> alert latency.

Everything runs against real servers: PostgreSQL at HEMHUB_BENCH_DATABASE_URL and the
broker at HEMHUB_BENCH_MQTT_URL, by default the local ones (127.0.0.1:5432/1883), else
embedded ones (hemhub.embedded). Each run works in a database of its own, created and
dropped here, and on hub ids / topics / client ids of its own; the workers' broker
sessions are removed at the end.

Processes: every ingest worker is a real `IngestWorker` in a process of its own (two
workers on a shared subscription then use both cores), and hubs are publisher processes,
so publishing costs no worker CPU. The main process only coordinates, samples counters
that the workers export through shared memory, and listens for alert NOTIFYs.

Flow control: a hub waits for its broker's PUBACK, not for our commit, so a publisher
faster than ingest would pile messages up in the broker, whose default queue limit
(1000 per session) drops the excess. The publishers therefore keep at most `window`
messages published but not yet acknowledged by the workers (acked = committed); the
window (900 per worker) stays below what the broker holds for a session without
dropping (its in-flight messages plus max_queued_messages, 1000 by default); against the
private broker with the shipped queue settings it is 8,000.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench import fleet as fleet_bench
from bench import gateway as gateway_bench
from bench import ui_nurse as ui_bench
from hemhub.contract import (
    ClockSource,
    ClockTrust,
    DeviceIdentity,
    MeasurementType,
    Quantity,
    Reading,
    ReadingBatch,
    topic_readings,
)
from hemhub.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, reachable
from hemhub.settings import MqttTarget
from ingest import alerts
from ingest.messages import parse_message
from ingest.migrations import migrate
from ingest.pipeline import store
from ingest.worker import IngestWorker, tune_gc

log = logging.getLogger("bench")

_CTX = multiprocessing.get_context("spawn")
_TENANT = "bench"
_MODEL = "BP-1"
_MANUFACTURER = "Bench"
#: A Blood Pressure Measurement (0x2A35) packet: flags, 3 SFLOATs, time stamp, pulse.
_RAW_HEX = "1e780050006400e907011e0e1e00480000"
#: Devices (each assigned to a resident) behind the hubs in the throughput runs, and
#: how many a home hub has (a cuff, a scale, an oximeter, a dispenser): 500 hubs.
_THROUGHPUT_DEVICES = 2000
_DEVICES_PER_HUB = 4
_HUBS = _THROUGHPUT_DEVICES // _DEVICES_PER_HUB
#: Hubs of the paced latency run (one reading per message, a resident per reading).
_LATENCY_HUBS = 10
#: Share of hypertensive readings in the throughput runs (they open or update alerts).
_HIGH_EVERY = 100


# --------------------------------------------------------------------------- servers


def _with_database(server_url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


_SHIPPED_MOSQUITTO_CONF = Path(__file__).resolve().parents[1] / "deploy/mosquitto/mosquitto.conf"
#: The lines of the shipped broker configuration that decide how a broker queues and
#: delivers QoS 1 messages: the bench broker runs with exactly these.
_QUEUE_SETTINGS = re.compile(r"^(max_queued_\w+|max_inflight_\w+|max_packet_size)\s.*$", re.M)


PRIVATE_BROKER_NOTE = "MQTT: a private Mosquitto with the queue settings of deploy/mosquitto"


@contextlib.contextmanager
def private_mosquitto(data_dir: Path) -> Iterator[str]:
    """A Mosquitto of this run's own on a free loopback port, queueing as production does
    (deploy/mosquitto: never drop queued QoS 1 messages), anonymous and plain: the bench
    measures ingest, not TLS or passwords. The machine's broker keeps its defaults
    (max_queued_messages 1000 drops what a slow subscriber has not taken yet)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    lines = [m.group(0) for m in _QUEUE_SETTINGS.finditer(_SHIPPED_MOSQUITTO_CONF.read_text())]
    assert len(lines) >= 3, f"queue settings not found in {_SHIPPED_MOSQUITTO_CONF}"
    conf = data_dir / "mosquitto.conf"
    conf.write_text(
        "\n".join([f"listener {port} 127.0.0.1", "allow_anonymous true", *lines]) + "\n"
    )
    log_path = data_dir / "mosquitto.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", port, timeout=0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench mosquitto did not start: {log_path.read_text()}")
            time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def resolve_servers(stack: contextlib.ExitStack, data_dir: Path) -> tuple[str, str, list[str]]:
    """(PostgreSQL server URL, MQTT URL, notes): env, else local servers, else embedded.
    The broker: HEMHUB_BENCH_MQTT_URL, else a private Mosquitto with the shipped queue
    settings where Mosquitto is installed, else the one on 127.0.0.1:1883, else amqtt."""
    notes: list[str] = []
    db = os.environ.get("HEMHUB_BENCH_DATABASE_URL")
    if not db:
        if reachable("127.0.0.1", 5432):
            db = "postgresql://postgres@127.0.0.1:5432/postgres"
        else:
            db = stack.enter_context(EmbeddedPostgres(data_dir / "pg"))
            notes.append("PostgreSQL: embedded pgserver (no server on 127.0.0.1:5432)")
    broker = os.environ.get("HEMHUB_BENCH_MQTT_URL")
    if not broker:
        if shutil.which("mosquitto") or os.access("/usr/sbin/mosquitto", os.X_OK):
            broker = stack.enter_context(private_mosquitto(data_dir))
            notes.append(PRIVATE_BROKER_NOTE)
        elif reachable("127.0.0.1", 1883):
            broker = "mqtt://127.0.0.1:1883"
        else:
            broker = stack.enter_context(EmbeddedBroker(data_dir / "amqtt"))
            notes.append("MQTT: embedded amqtt (MQTT 3.1.1, no shared subscriptions)")
    return db, broker, notes


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "hemhub_bench") -> Iterator[str]:
    """A new, empty database on that server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- data


def hub_id(run: str, n: int) -> str:
    return f"bench-{run}-{n:02d}"


def device_identity(run: str, n: int) -> DeviceIdentity:
    return DeviceIdentity(
        address=f"C0:FF:EE:{(n >> 16) & 255:02X}:{(n >> 8) & 255:02X}:{n & 255:02X}",
        manufacturer=_MANUFACTURER,
        model=_MODEL,
        serial=f"{run}-{n:06d}",
        firmware="1.0",
    )


def seed_registry(conn: psycopg.Connection[Any], run: str, devices: int) -> None:
    """`devices` devices, each assigned since yesterday to a resident of its own and on
    the allow-list of the hub that sends its readings, all of one principal."""
    serial = f"'{run}-' || lpad(g::text, 6, '0')"
    stable = f"'{_MANUFACTURER}|{_MODEL}|' || {serial}"
    with conn.transaction():
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 'Bench')", (_TENANT,))
        conn.execute(
            f"""
            INSERT INTO devices (stable_id, address, manufacturer, model, serial, firmware)
            SELECT {stable}, 'C0:FF:EE:00:00:00', %s, %s, {serial}, '1.0'
            FROM generate_series(0, %s - 1) g
            """,
            (_MANUFACTURER, _MODEL, devices),
        )
        conn.execute(
            "INSERT INTO patients (tenant_id, display_name)"
            " SELECT %s, 'Resident ' || g FROM generate_series(0, %s - 1) g",
            (_TENANT, devices),
        )
        conn.execute(
            """
            INSERT INTO device_assignments (device_id, patient_id, tenant_id, started_at)
            SELECT d.id, p.id, %s, now() - interval '1 day'
            FROM (SELECT id, row_number() OVER (ORDER BY serial) AS n FROM devices) d
            JOIN (SELECT id, row_number() OVER (ORDER BY display_name) AS n FROM patients) p
              USING (n)
            """,
            (_TENANT,),
        )
        # Each hub of the principal is entitled to the devices it sends (`_payloads`):
        # throughput hub h to devices 4h .. 4h + 3, latency hub h to every tenth device
        # from h on. The hub ids are `hub_id(run, h)`.
        hub_of = (
            f"CASE WHEN g < {_THROUGHPUT_DEVICES} THEN g / {_DEVICES_PER_HUB}"
            f" ELSE mod(g - {_THROUGHPUT_DEVICES}, {_LATENCY_HUBS}) END"
        )
        name = "'bench-' || %(run)s || '-' || CASE WHEN h < 10 THEN '0' || h ELSE h::text END"
        conn.execute(
            f"""
            INSERT INTO hubs (id, tenant_id)
            SELECT DISTINCT {name}, %(tenant)s
            FROM (SELECT {hub_of} AS h FROM generate_series(0, %(devices)s - 1) g) x
            """,
            {"run": run, "tenant": _TENANT, "devices": devices},
        )
        conn.execute(
            f"""
            INSERT INTO hub_devices (hub_id, device_id, started_at)
            SELECT {name}, d.id, now() - interval '1 day'
            FROM (SELECT {hub_of} AS h, {stable} AS stable_id
                  FROM generate_series(0, %(devices)s - 1) g) x
            JOIN devices d USING (stable_id)
            """,
            {"run": run, "devices": devices},
        )
    conn.execute("ANALYZE devices, patients, device_assignments, hubs, hub_devices")


_SENTINEL_KEY = "f" * 64


class ReadingTemplate:
    """Reading JSON made by string substitution into a contract-valid template (fast)."""

    def __init__(self, run: str) -> None:
        self.run = run
        at = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
        sample = Reading(
            idempotency_key=_SENTINEL_KEY,
            device=DeviceIdentity(
                address="AA:BB:CC:DD:EE:FF",
                manufacturer=_MANUFACTURER,
                model=_MODEL,
                serial="SERIAL",
                firmware="1.0",
            ),
            measurement_type=MeasurementType.BLOOD_PRESSURE,
            characteristic="2A35",
            values=[
                Quantity(name="systolic", loinc="8480-6", value=111.5, unit="mm[Hg]"),
                Quantity(name="diastolic", loinc="8462-4", value=80.0, unit="mm[Hg]"),
                Quantity(name="pulse", loinc="8867-4", value=70.0, unit="/min"),
            ],
            device_time=at.replace(tzinfo=None),
            hub_received_at=at + timedelta(seconds=1),
            measured_at=at,
            clock=ClockTrust(source=ClockSource.SET_BY_HUB, hub_clock_synced=True),
            raw_hex=_RAW_HEX,
        ).model_dump_json()
        device_time = at.replace(tzinfo=None).isoformat()
        sample = sample.replace("%", "%%")
        for old, new in (
            (_SENTINEL_KEY, "%(key)s"),
            ("AA:BB:CC:DD:EE:FF", "%(address)s"),
            ("SERIAL", "%(serial)s"),
            ("111.5", "%(systolic)s"),
            (f'"{device_time}"', '"%(device_time)s"'),
            ('"hub_received_at":"2001-02-03T04:05:07Z"', '"hub_received_at":"%(received)s"'),
            ('"measured_at":"2001-02-03T04:05:06Z"', '"measured_at":"%(measured)s"'),
        ):
            assert old in sample, (old, sample)
            sample = sample.replace(old, new)
        self._template = sample

    def reading(
        self, phase: str, i: int, device: int, at: datetime, received: datetime, high: bool
    ) -> str:
        dev = device_identity(self.run, device)
        return self._template % {
            "key": hashlib.sha256(f"{self.run}:{phase}:{i}".encode()).hexdigest(),
            "address": dev.address,
            "serial": dev.serial,
            "systolic": "186.0" if high else "121.0",
            "device_time": at.replace(tzinfo=None).isoformat(),
            "received": received.isoformat(),
            "measured": at.isoformat(),
        }

    @staticmethod
    def batch(hub: str, readings: Sequence[str]) -> bytes:
        return f'{{"schema_version":2,"hub_id":"{hub}","readings":[{",".join(readings)}]}}'.encode()


# --------------------------------------------------------------------------- (a) COPY


def copy_limit(database_url: str, run: str, rows: int, batch_rows: int = 10_000) -> float:
    """Readings/s of a bare binary COPY of the same rows into `readings`, with the same
    unique key (`reading_keys`), 10k rows per transaction; the rows are built beforehand."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        device_ids = [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT d.id, a.patient_id FROM devices d"
                " JOIN device_assignments a ON a.device_id = d.id ORDER BY d.serial LIMIT %s",
                (_THROUGHPUT_DEVICES,),
            )
        ]
        hub = hub_id(run, 0)
        conn.execute("INSERT INTO hubs (id) VALUES (%s) ON CONFLICT DO NOTHING", (hub,))
        base = datetime.now(UTC) - timedelta(minutes=30)
        values = json.dumps(
            [
                {"name": "systolic", "loinc": "8480-6", "value": 121.0, "unit": "mm[Hg]"},
                {"name": "diastolic", "loinc": "8462-4", "value": 80.0, "unit": "mm[Hg]"},
                {"name": "pulse", "loinc": "8867-4", "value": 70.0, "unit": "/min"},
            ]
        )
        raw = bytes.fromhex(_RAW_HEX)
        data: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = []
        for start in range(0, rows, batch_rows):
            keys: list[tuple[Any, ...]] = []
            readings: list[tuple[Any, ...]] = []
            for i in range(start, min(rows, start + batch_rows)):
                key = hashlib.sha256(f"{run}:copy:{i}".encode()).hexdigest()
                at = base + timedelta(milliseconds=i)
                dev, patient = device_ids[i % len(device_ids)]
                keys.append((key, at))
                readings.append(
                    (at, key, hub, dev, patient, _TENANT, "blood_pressure", "2A35", values,
                     [], at.replace(tzinfo=None), at, "set_by_hub", 0.0, True, False, raw)
                )  # fmt: skip
            data.append((keys, readings))
        key_copy = "COPY reading_keys (idempotency_key, measured_at) FROM STDIN (FORMAT BINARY)"
        reading_copy = (
            "COPY readings (measured_at, idempotency_key, hub_id, device_id, patient_id,"
            ' tenant_id, measurement_type, characteristic, "values", status, device_time,'
            " hub_received_at, clock_source, clock_offset_s, hub_clock_synced, late, raw)"
            " FROM STDIN (FORMAT BINARY)"
        )
        reading_types = ["timestamptz", "text", "text", "uuid", "uuid", "text", "text", "text",
                         "jsonb", "text[]", "timestamp", "timestamptz", "text", "float8", "bool",
                         "bool", "bytea"]  # fmt: skip
        started = time.perf_counter()
        for keys, readings in data:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(key_copy) as copy:
                    copy.set_types(["text", "timestamptz"])
                    for k in keys:
                        copy.write_row(k)
                with cur.copy(reading_copy) as copy:
                    copy.set_types(reading_types)
                    for r in readings:
                        copy.write_row(r)
        return rows / (time.perf_counter() - started)


# --------------------------------------------------------------------------- breakdown


def stage_costs(database_url: str, run: str, readings: int) -> dict[str, float]:
    """In-process CPU/wall microseconds per reading of the worker's stages, no broker:
    parse (JSON + contract validation), store() of attributed readings (alert rules
    evaluated) and store() of unattributed ones (same SQL path, nothing to evaluate)."""
    tune_gc()  # as a worker runs
    tpl = ReadingTemplate(run)
    now = datetime.now(UTC)
    out: dict[str, float] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, first_device in (("attributed", 0), ("unattributed", 10_000_000)):
            spec = PublishSpec("mqtt://unused", run, f"stage-{name}", "unused",
                               tuple(hub_id(run, h) for h in range(_HUBS)), first_device,
                               _THROUGHPUT_DEVICES, 0, readings, 100)  # fmt: skip
            payloads = _payloads(spec, tpl, now)
            t = time.perf_counter()
            parsed = [parse_message(topic, body, now) for topic, body in payloads]
            out["parse_us_per_reading"] = (time.perf_counter() - t) / readings * 1e6
            batches = [p for p in parsed if isinstance(p, ReadingBatch)]
            t = time.perf_counter()
            for k in range(0, len(batches), 20):  # the worker's 2000-reading batches
                store(conn, batches[k : k + 20])
            out[f"store_{name}_us_per_reading"] = (time.perf_counter() - t) / readings * 1e6
    out["alert_evaluation_us_per_reading"] = (
        out["store_attributed_us_per_reading"] - out["store_unattributed_us_per_reading"]
    )
    return {k: round(v, 1) for k, v in out.items()}


# --------------------------------------------------------------------------- processes

#: What each worker exports, one int64 slot each, in this order.
_EXPORTED = (
    "messages",
    "acked",
    "readings_received",
    "readings_stored",
    "alerts_opened",
    "alerts_updated",
    "dead_letters",
    "db_errors",
    "batches",
)
_SLOTS = len(_EXPORTED) + 2  # + ready, protocol


@dataclass(frozen=True)
class WorkerSpec:
    database_url: str
    mqtt_url: str
    client_id: str
    group: str
    topics: tuple[str, ...]
    batch_size: int
    batch_seconds: float
    static_rules_only: bool = False
    #: "ingest": an IngestWorker; "mqtt_floor": a bare paho consumer (see _mqtt_floor).
    consumer: str = "ingest"


def use_static_rules_only() -> None:
    """Diagnostic (--without-alert-engine): evaluate only the static rules table at
    store time (`alerts.evaluate` + `alerts.apply`; the table is empty by default, so
    nothing) instead of the alert engine, to tell the cost of the ingest path from the
    cost of the engine."""
    from ingest import engine

    def static(conn: Any, candidates: Any, rules: Any = alerts.DEFAULT_RULES) -> Any:
        return alerts.apply(conn, alerts.evaluate(candidates, rules))

    engine.evaluate_stored = static  # type: ignore[assignment]


def _mqtt_floor(spec: WorkerSpec, counters: Any, slot: int, stop: Any) -> None:
    """A bare consumer, the baseline of single-reading ingest: paho as the worker uses
    it (MQTT v5, QoS 1, persistent session, the same receive maximum, manual acks sent
    from another thread than paho's), and nothing else: no parsing, no database. Each
    message is acknowledged as soon as it is taken off the queue."""
    tune_gc()
    target = MqttTarget(spec.mqtt_url)
    inbox: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=spec.client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.manual_ack_set(True)
    client.on_message = lambda c, u, m: inbox.put((m.mid, m.qos))
    client.on_subscribe = lambda *a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    props.ReceiveMaximum = 10_000
    client.connect(target.host, target.port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe([(f"$share/{spec.group}/{t}", 1) for t in spec.topics])
    subscribed.wait(30)
    base = slot * _SLOTS
    counters[base + 1] = 5
    counters[base] = 1
    done = 0
    names = [2 + _EXPORTED.index(n) for n in ("messages", "acked", "readings_received",
                                                "readings_stored")]  # fmt: skip
    while not stop.is_set():
        try:
            mid, qos = inbox.get(timeout=0.05)
        except queue.Empty:
            continue
        client.ack(mid, qos)
        done += 1
        if done % 50 == 0 or inbox.empty():
            for j in names:
                counters[base + j] = done
    client.disconnect()
    client.loop_stop()


def _worker_process(spec: WorkerSpec, counters: Any, slot: int, stop: Any) -> None:
    """Child process: one IngestWorker, its stats exported to `counters` every 20 ms."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    if spec.consumer == "mqtt_floor":
        _mqtt_floor(spec, counters, slot, stop)
        return
    if spec.static_rules_only:
        use_static_rules_only()
    worker = IngestWorker(
        spec.database_url,
        spec.mqtt_url,
        client_id=spec.client_id,
        shared_group=spec.group,
        topics=spec.topics,
        batch_size=spec.batch_size,
        batch_seconds=spec.batch_seconds,
        session_expiry_s=300,  # a crashed bench leaves no session for long
    )
    thread = threading.Thread(target=worker.run, name="ingest", daemon=True)
    thread.start()
    base = slot * _SLOTS
    while True:
        stopping = bool(stop.wait(0.02))
        if stopping:
            worker.stop()
            thread.join(60)
        counters[base] = int(worker.ready.is_set())
        counters[base + 1] = 5 if worker.protocol == "5" else 3
        for j, name in enumerate(_EXPORTED):
            counters[base + 2 + j] = worker.stats[name]
        if stopping or not thread.is_alive():
            return


@dataclass(frozen=True)
class PublishSpec:
    mqtt_url: str
    run: str
    phase: str
    client_id: str
    hubs: tuple[str, ...]
    first_device: int
    devices: int
    #: Readings of this publisher: indexes [first, first + count).
    first: int
    count: int
    per_message: int
    #: Readings per second (paced, timestamps taken at publish), or 0: as fast as allowed.
    rate: float = 0.0
    #: Every reading hypertensive (latency run) instead of one in _HIGH_EVERY.
    all_high: bool = False
    #: Most messages published but not yet acked by the workers (all publishers together).
    window: int = 900


def _hub_client(spec: PublishSpec) -> mqtt.Client:
    target = MqttTarget(spec.mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=spec.client_id,
        protocol=MQTTProtocolVersion.MQTTv311,  # what hubs speak
        clean_session=True,
    )
    if target.username:
        client.username_pw_set(target.username, target.password)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(target.host, target.port, keepalive=30)
    client.loop_start()
    return client


def _payloads(spec: PublishSpec, tpl: ReadingTemplate, now: datetime) -> list[tuple[str, bytes]]:
    """The messages of a throughput run, round robin over the hubs; each hub sends the
    readings of its own devices (hub h has devices h * 4 .. h * 4 + 3)."""
    out: list[tuple[str, bytes]] = []
    per_hub = max(1, spec.devices // len(spec.hubs))
    for m in range(spec.first, spec.first + spec.count, spec.per_message):
        n = m // spec.per_message
        h = n % len(spec.hubs)
        hub = spec.hubs[h]
        readings = []
        for k, i in enumerate(range(m, min(m + spec.per_message, spec.first + spec.count))):
            at = now - timedelta(milliseconds=i)  # distinct, recent (well within the hour)
            dev = spec.first_device + (h * per_hub + (n // len(spec.hubs) + k) % per_hub)
            readings.append(tpl.reading(spec.phase, i, dev, at, now, i % _HIGH_EVERY == 0))
        out.append((topic_readings(hub), tpl.batch(hub, readings)))
    return out


def _publisher_process(
    spec: PublishSpec, published: Any, counters: Any, ready: Any, go: Any, halt: Any, stats: Any
) -> None:
    """Child process: a hub (or many hubs) publishing QoS 1, as fast as the window lets
    through or paced at `rate`; the payload timestamps are publish times when paced."""
    tpl = ReadingTemplate(spec.run)
    now = datetime.now(UTC)
    prebuilt = [] if spec.rate else _payloads(spec, tpl, now)
    if prebuilt:
        ReadingBatch.model_validate_json(prebuilt[0][1])  # the template is contract-valid
    client = _hub_client(spec)
    ready.set()
    go.wait()
    started = time.perf_counter()
    last: mqtt.MQTTMessageInfo | None = None
    if spec.rate:
        interval = spec.per_message / spec.rate
        for n, m in enumerate(range(spec.first, spec.first + spec.count, spec.per_message)):
            due = started + n * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if halt.is_set():
                break
            at = datetime.now(UTC)
            hub = spec.hubs[n % len(spec.hubs)]
            dev = spec.first_device + (m - spec.first) % spec.devices
            body = tpl.reading(spec.phase, m, dev, at, at, spec.all_high)
            last = client.publish(topic_readings(hub), tpl.batch(hub, [body]), qos=1)
    else:
        for n, (topic, payload) in enumerate(prebuilt):
            if n % 50 == 0:
                with published.get_lock():
                    published.value += 50
                while published.value - _total(counters, "acked") > spec.window:
                    if halt.wait(0.001):
                        break
                if halt.is_set():
                    break
            last = client.publish(topic, payload, qos=1)
    if last is not None:
        last.wait_for_publish(timeout=60)
    stats[0] = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()


def _total(counters: Any, name: str) -> int:
    j = 2 + _EXPORTED.index(name)
    return sum(counters[k * _SLOTS + j] for k in range(len(counters) // _SLOTS))


def drop_session(mqtt_url: str, client_id: str) -> None:
    """Remove a worker's persistent session from the broker (clean start, expiry 0)."""
    target = MqttTarget(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if target.username:
        client.username_pw_set(target.username, target.password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    try:
        client.connect(target.host, target.port, clean_start=True, properties=props)
        client.loop_start()
        connected.wait(5)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


class Workers:
    """`n` IngestWorker processes on one shared subscription, with exported counters."""

    def __init__(self, spec: WorkerSpec, n: int) -> None:
        self.spec = spec
        self.counters = _CTX.Array("q", n * _SLOTS, lock=False)
        self.stop_event = _CTX.Event()
        self.ids = [f"{spec.client_id}-{k}" for k in range(n)]
        self.procs = [
            _CTX.Process(
                target=_worker_process,
                args=(
                    WorkerSpec(**{**spec.__dict__, "client_id": cid}),
                    self.counters,
                    k,
                    self.stop_event,
                ),
                name=cid,
            )
            for k, cid in enumerate(self.ids)
        ]

    def start(self, timeout: float = 30.0) -> None:
        for p in self.procs:
            p.start()
        deadline = time.monotonic() + timeout
        while not all(self.counters[k * _SLOTS] for k in range(len(self.procs))):
            if time.monotonic() > deadline or not all(p.is_alive() for p in self.procs):
                raise RuntimeError("ingest workers did not subscribe in time")
            time.sleep(0.05)

    @property
    def protocol(self) -> int:
        return int(self.counters[1])

    def total(self, name: str) -> int:
        return _total(self.counters, name)

    def cpu_seconds(self) -> float | None:
        return _cpu_seconds([p.pid for p in self.procs if p.pid is not None])

    def stop(self) -> None:
        self.stop_event.set()
        for p in self.procs:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
        for cid in self.ids:
            drop_session(self.spec.mqtt_url, cid)

    def __enter__(self) -> Workers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_cpu_seconds(stat: str) -> float:
    """User + system CPU seconds in a /proc/<pid>/stat line."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds of these (live) processes, from /proc (Linux)."""
    total = 0.0
    for pid in pids:
        try:
            total += _stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
        except OSError:
            return None
    return total


#: Local server processes whose CPU a throughput run reports, by process name.
_SERVER_PROCESSES = {"postgres": "postgres", "mosquitto": "broker"}


@dataclass(frozen=True)
class _CpuSnapshot:
    """CPU seconds so far: the whole machine's (busy and in all), and the local servers'."""

    busy: float
    total: float
    servers: dict[str, float]


def _machine_cpu() -> _CpuSnapshot | None:
    """From /proc (Linux; None elsewhere). Servers: PostgreSQL's processes (backends,
    WAL writer, checkpointer) and Mosquitto, when they run on this machine."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    servers = dict.fromkeys(_SERVER_PROCESSES.values(), 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        name = text[text.find("(") + 1 : text.rfind(")")]
        label = _SERVER_PROCESSES.get(name)
        if label is not None:
            servers[label] += _stat_cpu_seconds(text)
    return _CpuSnapshot((sum(ticks) - idle) / _TICK, sum(ticks) / _TICK, servers)


def _cores(
    before: _CpuSnapshot | None,
    after: _CpuSnapshot | None,
    seconds: float,
    own: dict[str, tuple[float | None, float | None]],
) -> dict[str, float] | None:
    """Cores used on average over `seconds`: the machine's busy ones, the local servers,
    and `own` (name -> CPU seconds before and after, as _cpu_seconds gives)."""
    if before is None or after is None or seconds <= 0:
        return None
    out = {"machine_busy": (after.busy - before.busy) / seconds}
    out["machine_cores"] = (after.total - before.total) / seconds
    for name, value in after.servers.items():
        out[name] = (value - before.servers.get(name, 0.0)) / seconds
    for name, (a, b) in own.items():
        if a is not None and b is not None:
            out[name] = (b - a) / seconds
    return {k: round(v, 2) for k, v in out.items()}


class Publishers:
    """Publisher processes sharing one flow-control window over the workers' acks."""

    def __init__(self, specs: Sequence[PublishSpec], counters: Any) -> None:
        self.published: Synchronized[int] = _CTX.Value("q", 0)
        self.go = _CTX.Event()
        self.halt = _CTX.Event()
        self.readies = [_CTX.Event() for _ in specs]
        self.stats: list[SynchronizedArray[float]] = [_CTX.Array("d", 1) for _ in specs]
        self.procs = [
            _CTX.Process(
                target=_publisher_process,
                args=(s, self.published, counters, r, self.go, self.halt, st),
                name=s.client_id,
            )
            for s, r, st in zip(specs, self.readies, self.stats, strict=True)
        ]

    def start(self, timeout: float = 120.0) -> None:
        for p in self.procs:
            p.start()
        deadline = time.monotonic() + timeout
        for r, p in zip(self.readies, self.procs, strict=True):
            while not r.wait(0.1):
                if not p.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"publisher {p.name} did not get ready (exit {p.exitcode})")

    def release(self) -> float:
        self.go.set()
        return time.perf_counter()

    def cpu_seconds(self) -> float | None:
        return _cpu_seconds([p.pid for p in self.procs if p.pid is not None])

    def join(self, timeout: float = 60.0, *, halt: bool = False) -> float:
        """Wait for the publishers (stopped first if `halt`); return the longest
        publishing time (s)."""
        if halt:
            self.halt.set()
        for p in self.procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()
        return max(s[0] for s in self.stats)


# --------------------------------------------------------------------------- (b), (d)


def _rounded(figures: object) -> dict[str, Any]:
    """A dataclass of figures as JSON-ready values, floats to 2 decimals."""
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in vars(figures).items()}


@dataclass
class Throughput:
    readings_per_s: float
    readings: int
    stored: int
    seconds: float
    complete: bool
    worker_cpu_s: float | None
    protocol: int
    #: Cores in use on average from release to the last sample, by whom (see _cores).
    cpu_cores: dict[str, float] | None = None


def _worker_spec(
    database_url: str,
    mqtt_url: str,
    run: str,
    phase: str,
    hubs: Sequence[str],
    static_rules_only: bool = False,
    consumer: str = "ingest",
) -> WorkerSpec:
    """The workers of one phase: the production batching, a group and ids of their own."""
    return WorkerSpec(
        database_url,
        mqtt_url,
        client_id=f"bench-ingest-{run}-{phase}",
        group=f"bench-{run}-{phase}",
        topics=tuple(topic_readings(h) for h in hubs),
        batch_size=2000,
        batch_seconds=0.05,
        static_rules_only=static_rules_only,
        consumer=consumer,
    )


def _truncate(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, reading_keys, alerts, dead_letters")
        conn.execute("CHECKPOINT")  # the previous phase's dirty pages are not our cost


def ingest_throughput(
    database_url: str,
    mqtt_url: str,
    run: str,
    phase: str,
    *,
    readings: int,
    per_message: int,
    workers: int = 1,
    publishers: int = 1,
    timeout: float = 40.0,
    static_rules_only: bool = False,
    window_per_worker: int = 900,
    consumer: str = "ingest",
) -> Throughput:
    """Stored readings/s, end to end through the broker, in the steady part of a run:
    from the moment 10% of the readings were stored to the moment all were."""
    _truncate(database_url)
    hubs = tuple(hub_id(run, h) for h in range(_HUBS))
    spec = _worker_spec(database_url, mqtt_url, run, phase, hubs, static_rules_only, consumer)
    share = readings // publishers
    specs = [
        PublishSpec(
            mqtt_url,
            run,
            phase,
            client_id=f"bench-hub-{run}-{phase}-{k}",
            hubs=hubs,
            first_device=0,
            devices=_THROUGHPUT_DEVICES,
            first=k * share,
            count=share,
            per_message=per_message,
            window=window_per_worker * workers,
        )
        for k in range(publishers)
    ]
    total = share * publishers
    with Workers(spec, workers) as pool:
        pubs = Publishers(specs, pool.counters)
        pubs.start()
        cpu0, pub0, machine0 = pool.cpu_seconds(), pubs.cpu_seconds(), _machine_cpu()
        t0 = pubs.release()
        samples: list[tuple[float, int]] = []
        while True:
            stored = pool.total("readings_stored")
            now = time.perf_counter()
            samples.append((now, stored))
            if stored >= total or now - t0 > timeout:
                break
            time.sleep(0.02)
        cpu1, pub1, machine1 = pool.cpu_seconds(), pubs.cpu_seconds(), _machine_cpu()
        cores = _cores(machine0, machine1, time.perf_counter() - t0,
                       {"workers": (cpu0, cpu1), "publishers": (pub0, pub1)})  # fmt: skip
        pubs.join(halt=True)
        protocol = pool.protocol
    t_end, stored = samples[-1]
    t_start = next(t for t, s in samples if s >= 0.1 * total)
    steady = max(t_end - t_start, 1e-6)
    rate = (stored - 0.1 * total) / steady if stored > 0.1 * total else stored / (t_end - t0)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM reading_keys").fetchone()
    return Throughput(
        readings_per_s=rate,
        readings=total,
        stored=int(row[0]) if row else 0,
        seconds=t_end - t0,
        complete=stored >= total,
        worker_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        protocol=protocol,
        cpu_cores=cores,
    )


# --------------------------------------------------------------------------- (c)


@dataclass
class Latency:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    alerts: int
    readings: int
    publish_rate: float


def alert_latency(
    database_url: str,
    mqtt_url: str,
    run: str,
    *,
    rate: float,
    seconds: float,
    first_device: int,
) -> Latency:
    """Publish -> committed alert: NOTIFY receipt time minus the `hub_received_at` that
    the publisher stamped into the reading as it published it. Every reading is
    hypertensive and comes from a resident of its own, so each opens one alert whose
    first_reading_key names the reading (an unambiguous pairing)."""
    _truncate(database_url)
    phase = "latency"
    count = int(rate * seconds)
    hubs = tuple(hub_id(run, h) for h in range(_LATENCY_HUBS))
    spec = _worker_spec(database_url, mqtt_url, run, phase, hubs)
    pub = PublishSpec(
        mqtt_url,
        run,
        phase,
        client_id=f"bench-hub-{run}-{phase}",
        hubs=hubs,
        first_device=first_device,
        devices=count,
        first=0,
        count=count,
        per_message=1,
        rate=rate,
        all_high=True,
    )
    received: list[tuple[str, float]] = []
    with Workers(spec, 1) as pool, psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {alerts.NOTIFY_CHANNEL}")
        pubs = Publishers([pub], pool.counters)
        pubs.start()
        pubs.release()
        deadline = time.monotonic() + seconds + 30
        while len(received) < count and time.monotonic() < deadline:
            for note in listener.notifies(timeout=1.0):
                received.append((json.loads(note.payload)["alert_id"], time.time()))
                if len(received) >= count:
                    break
            # the generator ends on its timeout; loop to check the deadline
        elapsed = pubs.join()
    with psycopg.connect(database_url) as conn:
        published: dict[str, float] = dict(
            conn.execute(
                "SELECT a.id::text, extract(epoch FROM r.hub_received_at)::float8"
                " FROM alerts a JOIN readings r ON r.idempotency_key = a.first_reading_key"
            ).fetchall()
        )
    ms = np.array([(t - published[a]) * 1000 for a, t in received if a in published])
    if not len(ms):
        raise RuntimeError("no alert was committed during the latency run")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Latency(
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(ms.max()),
        alerts=len(ms),
        readings=count,
        publish_rate=count / elapsed if elapsed else 0.0,
    )


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Row:
    name: str
    value: float | None
    unit: str
    ratio: float | None
    target: str
    met: bool | None


def _table(rows: Sequence[Row]) -> str:
    head = ("figure", "value", "unit", "ratio to (a)", "target", "met?")
    cells = [
        (
            r.name,
            "-" if r.value is None else f"{r.value:,.0f}" if r.value >= 100 else f"{r.value:.1f}",
            r.unit,
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.target,
            "-" if r.met is None else "yes" if r.met else "NO",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *cells]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_rows(results: dict[str, Any]) -> list[Row]:
    a = results["copy_limit_readings_per_s"]
    batched = results["ingest_batched_readings_per_s"]
    single = results["ingest_single_readings_per_s"]
    two = results.get("ingest_batched_2workers_readings_per_s")
    p50, p99 = results["alert_latency_p50_ms"], results["alert_latency_p99_ms"]

    def ratio(v: float | None) -> float | None:
        return None if v is None or not a else v / a

    rows = [
        Row("(a) copy_limit", a, "readings/s", 1.0, "-", None),
        Row("(b) ingest_batched", batched, "readings/s", ratio(batched), ">= 0.50 x (a)",
            batched >= 0.5 * a),
        Row("(b) ingest_single", single, "readings/s", ratio(single), ">= 8,000/s",
            single >= 8000),
    ]  # fmt: skip
    if two is not None:
        rows.append(
            Row("(d) ingest_batched_2workers", two, "readings/s", ratio(two),
                ">= 0.50 x (a) per worker", two / 2 >= 0.5 * a)
        )  # fmt: skip
    else:
        rows.append(Row("(d) ingest_batched_2workers", None, "readings/s", None, "-", None))
    rows += [
        Row("(c) alert_latency_p50", p50, "ms", None, "-", None),
        Row(
            "(c) alert_latency_p99",
            p99,
            "ms",
            None,
            "<= 300 ms",
            None if p99 is None else p99 <= 300,
        ),
    ]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the run sizes")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parents[1] / "bench-results.json"
    )
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument(
        "--without-alert-engine",
        action="store_true",
        help="diagnostic: the static rules table (empty by default) instead of the alert"
        " engine at store time; no latency run (nothing alerts)",
    )
    args = parser.parse_args(argv)
    static = bool(args.without_alert_engine)
    if static:
        use_static_rules_only()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("ingest").setLevel(logging.WARNING)
    run = uuid.uuid4().hex[:8]
    scale = args.scale
    latency_rate = 1000.0
    latency_devices = int(latency_rate * args.latency_seconds)
    started = time.monotonic()
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hemhub-bench-")))
        server_url, mqtt_url, notes = resolve_servers(stack, tmp)
        # Messages published and not yet committed, per worker: a broker that never drops
        # (the private one) holds any backlog, so keep the worker's receive maximum full;
        # one with the default queue limit (1000) drops past it.
        window = 8000 if PRIVATE_BROKER_NOTE in notes else 900
        database_url = stack.enter_context(fresh_database(server_url))
        mode = migrate(database_url).partitioning
        with psycopg.connect(database_url, autocommit=True) as conn:
            seed_registry(conn, run, _THROUGHPUT_DEVICES + latency_devices)
            server_version = conn.info.server_version
        log.info("bench %s: PostgreSQL %s, broker %s, readings partitioning %s",
                 run, server_version, MqttTarget(mqtt_url), mode)  # fmt: skip

        def step(name: str, fn: Callable[[], Any]) -> Any:
            t = time.monotonic()
            log.info("%s ...", name)
            out = fn()
            log.info("%s: %s (%.1f s)", name, out, time.monotonic() - t)
            return out

        a = step("(a) COPY limit", lambda: copy_limit(database_url, run, int(200_000 * scale)))
        stages = step("stage costs in-process", lambda: stage_costs(database_url, run, 20_000))
        batched: Throughput = step(
            "(b) batched ingest, 1 worker",
            lambda: ingest_throughput(database_url, mqtt_url, run, "batched",
                                      readings=int(200_000 * scale), per_message=100,
                                      static_rules_only=static, window_per_worker=window),
        )  # fmt: skip
        single: Throughput = step(
            "(b) single-reading ingest, 1 worker",
            lambda: ingest_throughput(database_url, mqtt_url, run, "single",
                                      readings=int(60_000 * scale), per_message=1,
                                      static_rules_only=static, window_per_worker=window),
        )  # fmt: skip
        floor: Throughput | None = None
        two: Throughput | None = None
        if batched.protocol == 5:  # the baseline and (d) need MQTT v5
            floor = step(
                "(b) baseline: bare MQTT consumer, single-reading messages",
                lambda: ingest_throughput(database_url, mqtt_url, run, "floor",
                                          readings=int(60_000 * scale), per_message=1,
                                          window_per_worker=window, consumer="mqtt_floor"),
            )  # fmt: skip
            two = step(
                "(d) batched ingest, 2 workers (shared subscription)",
                lambda: ingest_throughput(database_url, mqtt_url, run, "batched2",
                                          readings=int(240_000 * scale), per_message=100,
                                          workers=2, publishers=2, static_rules_only=static,
                                          window_per_worker=window),
            )  # fmt: skip
        else:
            notes.append("(d) and the MQTT baseline skipped: the broker speaks MQTT 3.1.1 only")
        lat: Latency | None = None
        if not static:  # without the engine nothing alerts
            lat = step(
                "(c) publish -> alert latency at 1,000 readings/s",
                lambda: alert_latency(database_url, mqtt_url, run, rate=latency_rate,
                                      seconds=args.latency_seconds,
                                      first_device=_THROUGHPUT_DEVICES),
            )  # fmt: skip
        hub: dict[str, float] = step(
            "hub gateway: outbox replay and footprint",
            lambda: gateway_bench.run(mqtt_url, database_url),
        )
        fleet: dict[str, Any] = step(
            "fleet: simulated hubs through the shipped Mosquitto configuration",
            lambda: fleet_bench.run(server_url, hubs=max(100, int(10_000 * scale))),
        )
        nurse_pages: dict[str, Any] = step(
            "nurse's pages: open queue and 90-day chart over a year of readings",
            lambda: ui_bench.run(server_url, residents=max(200, int(ui_bench.RESIDENTS * scale))),
        )

    results = {
        "copy_limit_readings_per_s": round(a),
        "ingest_batched_readings_per_s": round(batched.readings_per_s),
        "ingest_single_readings_per_s": round(single.readings_per_s),
        "ingest_batched_2workers_readings_per_s": round(two.readings_per_s) if two else None,
        "alert_latency_p50_ms": round(lat.p50_ms, 1) if lat else None,
        "alert_latency_p99_ms": round(lat.p99_ms, 1) if lat else None,
    }
    rows = build_rows(results)
    a_rate = results["copy_limit_readings_per_s"]
    results |= {
        "ingest_batched_ratio_to_copy_limit": round(batched.readings_per_s / a_rate, 3),
        "ingest_single_ratio_to_copy_limit": round(single.readings_per_s / a_rate, 3),
        "ingest_batched_2workers_ratio_to_copy_limit": (
            round(two.readings_per_s / a_rate, 3) if two else None
        ),
        # What paho alone (receive, queue, PUBACK) allows for one message each.
        "mqtt_single_floor_messages_per_s": round(floor.readings_per_s) if floor else None,
        "ingest_single_ratio_to_mqtt_floor": (
            round(single.readings_per_s / floor.readings_per_s, 3) if floor else None
        ),
        "alert_latency_p90_ms": round(lat.p90_ms, 1) if lat else None,
        "alert_latency_max_ms": round(lat.max_ms, 1) if lat else None,
        "gateway": {k: round(v, 3) for k, v in hub.items()},
        "fleet": fleet,
        "nurse_pages": nurse_pages,
        "targets_met": {r.name.split(" ", 1)[1]: r.met for r in rows if r.met is not None},
        "details": {
            "batched": _rounded(batched),
            "single": _rounded(single),
            "batched_2workers": _rounded(two) if two else None,
            "mqtt_single_floor": _rounded(floor) if floor else None,
            "latency": _rounded(lat) if lat else None,
            "readings_per_message_batched": 100,
            "stage_costs_in_process": stages,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "postgresql_server_version": server_version,
        },
        "partitioning": mode,
        "alert_evaluation": "none (diagnostic)" if static else "alert engine",
        "broker": str(MqttTarget(mqtt_url)),
        "notes": notes,
        "command": "python -m bench"
        + (f" --scale {scale}" if scale != 1.0 else "")
        + (" --without-alert-engine" if static else ""),
        "run": run,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(_table(rows))
    print()
    print(gateway_bench.table(hub))
    print()
    print(fleet_bench.table(fleet))
    print()
    print(ui_bench.table(nurse_pages))
    print()
    if floor:
        print(
            f"single-reading ingest: {single.readings_per_s:,.0f} readings/s ="
            f" {single.readings_per_s / floor.readings_per_s:.2f} of a bare paho consumer"
            f" (receive + PUBACK only) in this run: {floor.readings_per_s:,.0f} messages/s"
        )
    print(f"cores: {os.cpu_count()}  partitioning: {mode}  written: {args.output}")
    for note in notes:
        print(f"note: {note}")
    return 0
