"""The fleet benchmark: 10,000 simulated hubs through the shipped Mosquitto configuration.

What runs (bench/README.md, "Fleet"):
- a private Mosquitto started from deploy/mosquitto/ as the deploy tests do
  (tests/deploy/test_mosquitto_config.py: the shipped mosquitto.conf and ACL with only
  listeners and paths moved, a throwaway PKI, TLS, one password per hub), never the
  system broker;
- `hemhub ingest --workers 2 --metrics-port P` and `hemhub api` as real processes;
- hub processes (asyncio, a minimal MQTT 3.1.1 client each hub, TLS, persistent
  session, last will, subscribed to its receipts and config): no BLE, only the MQTT
  traffic of a hub: a retained status with three devices every 60 simulated seconds,
  and a reading now and then.

Time is compressed (`--compression`, 10 by default): a hub's "60 s" status comes every
6 s of wall time, so 10,000 hubs send 1,667 statuses a second, as 100,000 hubs would
in real time. Readings: one per hub every 30 simulated minutes (48 a day, far more
than residents measure). Ratios are to baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import httpx
import numpy as np
import psycopg

from api.auth import Role, issue_token
from hemhub.contract import (
    DeviceHealth,
    DeviceProfile,
    HubStatus,
    topic_config,
    topic_readings,
    topic_receipts,
    topic_status,
)
from hemhub.embedded import free_port, reachable
from hemhub.settings import Settings
from ingest.migrations import migrate
from tests.deploy.test_mosquitto_config import (
    BACKEND,
    INGEST,
    Broker,
    hashed_password_line,
    mosquitto_binary,
    start_broker,
)

log = logging.getLogger(__name__)

TENANT = "bench-fleet"
CARE_UNITS = 20
#: Registered hubs that never connect in the run, offline for 2-3 days (the
#: "offline more than 24 h" filter has something to find).
OFFLINE_EXTRA = 300
DEVICES_PER_HUB = 3
LOW_BATTERY_EVERY = 20  # one hub in 20 has a device at 12 %
HUB_PROCESSES = 2
#: How long the hubs may take to connect, and the silent baseline after that.
CONNECT_TIMEOUT_S = 300.0
IDLE_S = 10.0
#: Simulated seconds between a hub's statuses, and between its readings.
STATUS_EVERY_S = 60.0
READING_EVERY_S = 1800.0
#: The filtered fleet-list requests of the latency figure, in turn.
LIST_QUERIES = (
    "",
    "?state=offline",
    "?offline_for_hours=24",
    "?battery_low=true",
    "?care_unit={unit}",
    "?state=online&battery_low=true&care_unit={unit}",
    "?state=online&after={after}",
)


def hub_id(run: str, n: int) -> str:
    return f"fl-{run}-{n:05d}"


def address(n: int, k: int) -> str:
    v = n * DEVICES_PER_HUB + k
    return f"C0:FE:{(v >> 24) & 255:02X}:{(v >> 16) & 255:02X}:{(v >> 8) & 255:02X}:{v & 255:02X}"


# --------------------------------------------------------------------------- MQTT 3.1.1


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, user: str, password: str, will_topic: str, will: bytes) -> bytes:
    # user, password, will retain, will QoS 1, will flag; persistent session (clean 0)
    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
    body += _str(client_id) + _str(will_topic) + _str(will) + _str(user) + _str(password)
    return _packet(0x10, body)


def publish_packet(topic: str, payload: bytes, pid: int, *, retain: bool) -> bytes:
    return _packet(0x32 | (1 if retain else 0), _str(topic) + struct.pack("!H", pid) + payload)


def subscribe_packet(pid: int, topics: list[str]) -> bytes:
    return _packet(0x82, struct.pack("!H", pid) + b"".join(_str(t) + b"\x01" for t in topics))


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, mult = 0, 1
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, await reader.readexactly(length)


# --------------------------------------------------------------------------- hubs


@dataclass(frozen=True)
class HubSpec:
    run: str
    first: int
    count: int
    port: int
    ca_file: str
    password: str
    compression: float
    seconds: float


def status_payload(hub: str, n: int, outbox: int, at: datetime | None = None) -> bytes:
    now = at or datetime.now(UTC)
    devices = [
        DeviceHealth(
            address=address(n, k),
            profile=(
                DeviceProfile.BLOOD_PRESSURE,
                DeviceProfile.WEIGHT_SCALE,
                DeviceProfile.PULSE_OXIMETER,
            )[k],
            last_seen_at=now,
            rssi=-55 - k * 5,
            battery_level=12 if (n % LOW_BATTERY_EVERY == 0 and k == 0) else 70 + k,
            firmware="1.0",
            readings=n % 50,
        )
        for k in range(DEVICES_PER_HUB)
    ]
    return (
        HubStatus(
            hub_id=hub,
            online=True,
            at=now,
            software_version="1.4.0",
            uptime_s=1000.0,
            outbox_depth=outbox,
            outbox_oldest_age_s=0.5 if outbox else None,
            config_version=1,
            clock_synced=True,
            adapter="ok",
            disk_free_bytes=8 << 30,
            devices=devices,
        )
        .model_dump_json()
        .encode()
    )


_STAMP = "2001-02-03T04:05:06Z"


class StatusTemplate:
    """A hub's status as JSON with its instant and outbox depth substituted (a hub
    process makes 800 a second: no model building per status)."""

    def __init__(self, hub: str, n: int) -> None:
        doc = status_payload(hub, n, 7).decode()
        stamp = datetime.fromisoformat(_STAMP.replace("Z", "+00:00"))
        probe = status_payload(hub, n, 7, at=stamp).decode()
        assert probe.count(_STAMP) == 1 + DEVICES_PER_HUB and '"outbox_depth":7,' in doc
        self._parts = probe.replace('"outbox_depth":7,', '"outbox_depth":%d,').split(_STAMP)

    def render(self, outbox: int) -> bytes:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return (now.join(self._parts) % outbox).encode()


def reading_payload(run: str, hub: str, n: int, seq: int) -> bytes:
    now = datetime.now(UTC)
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{hub}/{seq}").hex * 2
    reading = {
        "idempotency_key": key,
        "device": {
            "address": address(n, 0),
            "manufacturer": "Bench",
            "model": "Cuff",
            "serial": f"{run}-{n:05d}-0",
            "firmware": "1.0",
        },
        "measurement_type": "blood_pressure",
        "characteristic": "2A35",
        "values": [
            {"name": "systolic", "loinc": "8480-6", "value": 121.0, "unit": "mm[Hg]"},
            {"name": "diastolic", "loinc": "8462-4", "value": 79.0, "unit": "mm[Hg]"},
            {"name": "pulse", "loinc": "8867-4", "value": 66.0, "unit": "/min"},
        ],
        "device_time": now.replace(tzinfo=None).isoformat(),
        "hub_received_at": now.isoformat(),
        "measured_at": now.isoformat(),
        "clock": {"source": "set_by_hub", "offset_s": 0.0, "hub_clock_synced": True},
        "raw_hex": "1e7900",
    }
    return json.dumps({"schema_version": 2, "hub_id": hub, "readings": [reading]}).encode()


async def _hub(
    spec: HubSpec,
    n: int,
    ctx: ssl.SSLContext,
    gate: asyncio.Semaphore,
    counts: Any,
    go: asyncio.Future[float],
) -> None:
    hub = hub_id(spec.run, n)
    will = HubStatus(hub_id=hub, online=False, software_version="1.4.0").model_dump_json()
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", spec.port, ssl=ctx)
        writer.write(connect_packet(hub, hub, spec.password, topic_status(hub), will.encode()))
        first, body = await read_packet(reader)
        if first >> 4 != 2 or body[1] != 0:
            raise RuntimeError(f"{hub}: CONNACK {body!r}")
    with counts.get_lock():
        counts[0] += 1
    writer.write(subscribe_packet(1, [topic_receipts(hub), topic_config(hub)]))

    async def receive() -> None:
        while True:
            kind, body = await read_packet(reader)
            if kind >> 4 == 4:  # PUBACK
                with counts.get_lock():
                    counts[2] += 1
            elif kind >> 4 == 3 and (kind >> 1) & 3 == 1:  # PUBLISH QoS 1: acknowledge
                (tlen,) = struct.unpack("!H", body[:2])
                writer.write(b"\x40\x02" + body[2 + tlen : 4 + tlen])

    receiving = asyncio.create_task(receive())
    template = StatusTemplate(hub, n)
    start_at = await asyncio.shield(go)
    status_every = STATUS_EVERY_S / spec.compression
    reading_every = READING_EVERY_S / spec.compression
    pid, seq = 1, 0
    rng = random.Random(n)
    next_status = start_at + rng.uniform(0, status_every)
    next_reading = start_at + rng.uniform(0, reading_every)
    end = start_at + spec.seconds
    loop = asyncio.get_running_loop()
    try:
        while True:
            now = loop.time()
            if now >= end:
                break
            if now >= next_status:
                pid = pid % 65535 + 1
                writer.write(
                    publish_packet(topic_status(hub), template.render(seq % 3), pid, retain=True)
                )
                next_status += status_every
                with counts.get_lock():
                    counts[1] += 1
            if now >= next_reading:
                pid = pid % 65535 + 1
                seq += 1
                payload = reading_payload(spec.run, hub, n, seq)
                writer.write(publish_packet(topic_readings(hub), payload, pid, retain=False))
                next_reading += reading_every
                with counts.get_lock():
                    counts[3] += 1
            await asyncio.sleep(max(0.0, min(next_status, next_reading, end) - loop.time()))
        # Stay connected (a fleet at rest) until the bench ends this process.
        await asyncio.sleep(3600)
    finally:
        receiving.cancel()
        writer.close()


def _hub_process(spec: HubSpec, counts: Any, start: Any) -> None:
    """One process of hubs: [first, first + count); counts: connected, statuses sent,
    PUBACKs, readings sent. Traffic begins at the wall-clock instant the coordinator
    puts in `start` (0 until every hub of every process is connected)."""
    ctx = ssl.create_default_context(cafile=spec.ca_file)

    async def main() -> None:
        gate = asyncio.Semaphore(100)  # TLS handshakes at once
        loop = asyncio.get_running_loop()
        go: asyncio.Future[float] = loop.create_future()

        async def wait_for_start() -> None:
            # Shared memory written by another process: nothing to await but time.
            while start.value == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            go.set_result(loop.time() + (start.value - time.time()))

        waiting = asyncio.create_task(wait_for_start())
        await asyncio.gather(
            *(
                _hub(spec, n, ctx, gate, counts, go)
                for n in range(spec.first, spec.first + spec.count)
            )
        )
        waiting.cancel()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(main())


# --------------------------------------------------------------------------- seeding


def seed(conn: psycopg.Connection[Any], run: str, hubs: int) -> list[str]:
    """The principal, care units, one resident per hub in a unit, three devices per hub
    each assigned to that resident and on the hub's allow-list; extra hubs long offline.
    Returns the care unit ids."""
    since = datetime.now(UTC) - timedelta(days=30)
    with conn.transaction():
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 'Bench fleet')", (TENANT,))
        units = [
            str(r[0])
            for r in conn.execute(
                "INSERT INTO care_units (tenant_id, name)"
                " SELECT %s, 'unit ' || g FROM generate_series(1, %s) g RETURNING id",
                (TENANT, CARE_UNITS),
            ).fetchall()
        ]
        conn.execute(
            "CREATE TEMP TABLE h ON COMMIT DROP AS SELECT g AS n,"
            " %s || lpad(g::text, 5, '0') AS hub_id, gen_random_uuid() AS patient_id,"
            " (%s::uuid[])[1 + g %% %s] AS unit FROM generate_series(0, %s - 1) g",
            (f"fl-{run}-", units, CARE_UNITS, hubs),
        )
        conn.execute("INSERT INTO hubs (id, tenant_id) SELECT hub_id, %s FROM h", (TENANT,))
        conn.execute(
            "INSERT INTO patients (id, tenant_id, display_name, care_unit_id)"
            " SELECT patient_id, %s, 'Resident ' || n, unit FROM h",
            (TENANT,),
        )
        rows = [
            (n, k, address(n, k), f"Bench|Cuff|{run}-{n:05d}-{k}" if k == 0 else address(n, k))
            for n in range(hubs)
            for k in range(DEVICES_PER_HUB)
        ]
        conn.execute(
            "CREATE TEMP TABLE d (n int, k int, address text, stable_id text, id uuid"
            " DEFAULT gen_random_uuid()) ON COMMIT DROP"
        )
        with conn.cursor().copy("COPY d (n, k, address, stable_id) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(
            "INSERT INTO devices (id, stable_id, address, manufacturer, model, serial,"
            " owner_tenant_id) SELECT d.id, d.stable_id, d.address, 'Bench', 'Cuff',"
            " CASE WHEN d.k = 0 THEN %s || '-' || lpad(d.n::text, 5, '0') || '-0' END, %s"
            " FROM d",
            (run, TENANT),
        )
        conn.execute(
            "INSERT INTO device_assignments (device_id, patient_id, tenant_id, started_at)"
            " SELECT d.id, h.patient_id, %s, %s FROM d JOIN h ON h.n = d.n",
            (TENANT, since),
        )
        conn.execute(
            "INSERT INTO hub_devices (hub_id, device_id, started_at)"
            " SELECT h.hub_id, d.id, %s FROM d JOIN h ON h.n = d.n",
            (since,),
        )
        conn.execute(
            "INSERT INTO hubs (id, tenant_id, online, last_status_at, state_since, last_seen_at)"
            " SELECT %s || g, %s, false, now() - g * interval '10 minutes',"
            " now() - interval '2 days' - g * interval '5 minutes',"
            " now() - interval '2 days' - g * interval '5 minutes'"
            " FROM generate_series(1, %s) g",
            (f"fl-{run}-off-", TENANT, OFFLINE_EXTRA),
        )
    conn.execute("ANALYZE")
    return units


# --------------------------------------------------------------------------- processes


def _tree(pid: int) -> list[int]:
    """pid and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def usage(pids: list[int]) -> tuple[float, int]:
    """CPU seconds so far and resident bytes now, summed over pids."""
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / _TICK
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError):
            continue
    return cpu, rss


def backends(database_url: str) -> list[int]:
    """The PostgreSQL server processes serving the bench database (same machine)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [r[0] for r in rows]


def ingest_totals(port: int) -> dict[str, float]:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hemhub_ingest_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            key = name.split("{", 1)[0]
            totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not reachable("127.0.0.1", port, timeout=0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit {proc.poll()})")
        time.sleep(0.1)


@contextlib.contextmanager
def _process(
    argv: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


# --------------------------------------------------------------------------- the run


def run(
    server_url: str, *, hubs: int = 10_000, compression: float = 10.0, seconds: float = 60.0
) -> dict[str, Any]:
    """The fleet figures (see the module docstring); `server_url`: a PostgreSQL server."""
    binary = mosquitto_binary()
    if binary is None:
        return {"skipped": "mosquitto is not installed"}
    run_id = uuid.uuid4().hex[:6]
    hub_password = uuid.uuid4().hex
    work = Path(tempfile.mkdtemp(prefix="hemhub-bench-fleet-"))
    name = f"hemhub_bench_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    database_url = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    passwords = {
        "bench-placeholder-hub": uuid.uuid4().hex,
        INGEST: uuid.uuid4().hex,
        BACKEND: uuid.uuid4().hex,
    }
    broker: Broker | None = None
    try:
        migrate(database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            units = seed(conn, run_id, hubs)
        broker = start_broker(binary, passwords)
        # Every hub's password, the way an operator's tooling writes them; then SIGHUP:
        # Mosquitto reloads its password files.
        hub_file = broker.root / "etc" / "hemhub-hubs.passwd"
        with hub_file.open("a") as f:
            line = hashed_password_line("x", hub_password).split(":", 1)[1]
            f.writelines(f"{hub_id(run_id, n)}:{line}\n" for n in range(hubs))
        broker.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        return _measure(
            broker,
            database_url,
            work,
            run_id,
            hub_password,
            units,
            hubs=hubs,
            compression=compression,
            seconds=seconds,
        )
    finally:
        if broker is not None:
            broker.stop()
            shutil.rmtree(broker.root, ignore_errors=True)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


def _measure(
    broker: Broker,
    database_url: str,
    work: Path,
    run_id: str,
    hub_password: str,
    units: list[str],
    *,
    hubs: int,
    compression: float,
    seconds: float,
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMHUB_")}
    env |= {
        "HEMHUB_DATABASE_URL": database_url,
        "HEMHUB_DATA_DIR": str(work),
        "HEMHUB_JWT_ALLOW_SELF_MADE_KEY": "1",
        "HEMHUB_API_RUNS_HUB_LINK": "0",
        "HEMHUB_LOG_FORMAT": "text",
    }
    metrics_port, api_port = free_port(), free_port()
    ingest_env = env | {
        "HEMHUB_MQTT_URL": f"mqtts://{INGEST}:{broker.passwords[INGEST]}@127.0.0.1:"
        f"{broker.service_port}",
        "HEMHUB_MQTT_CA_FILE": str(broker.ca_file),
    }
    api_env = env | {"HEMHUB_API_PORT": str(api_port)}
    settings = Settings(data_dir=work, jwt_allow_self_made_key=True)
    token = issue_token(settings, sub="bench-hmc", role=Role.HMC, tenant=TENANT)
    py = [sys.executable, "-m", "hemhub.cli"]
    with contextlib.ExitStack() as stack:
        ingest = stack.enter_context(
            _process(
                [*py, "ingest", "--workers", "2", "--metrics-port", str(metrics_port)],
                ingest_env,
                work / "ingest.log",
            )
        )
        api = stack.enter_context(_process([*py, "api"], api_env, work / "api.log"))
        _wait_port(metrics_port, ingest, "hemhub ingest")
        _wait_port(api_port, api, "hemhub api")
        time.sleep(3.0)  # the workers subscribe

        per = -(-hubs // HUB_PROCESSES)
        counts: Any = multiprocessing.get_context("spawn").Array("q", 4)
        connect_started = time.monotonic()
        spec_args = dict(
            run=run_id,
            port=broker.port,
            ca_file=str(broker.ca_file),
            password=hub_password,
            compression=compression,
            seconds=seconds,
        )
        # Every hub connects first (as after a broker restart); the traffic begins at a
        # wall-clock instant after that, the same in every hub process.
        ctx = multiprocessing.get_context("spawn")
        start: Any = ctx.Value("d", 0.0)
        procs = [
            ctx.Process(
                target=_hub_process,
                args=(
                    HubSpec(first=i * per, count=min(per, hubs - i * per), **spec_args),  # type: ignore[arg-type]
                    counts,
                    start,
                ),
                daemon=True,
            )
            for i in range(HUB_PROCESSES)
        ]
        for p in procs:
            p.start()
        try:
            connect_deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while counts[0] < hubs:
                if time.monotonic() > connect_deadline or not all(p.is_alive() for p in procs):
                    raise RuntimeError(f"only {counts[0]} of {hubs} hubs connected in time")
                time.sleep(0.2)
            connect_s = time.monotonic() - connect_started
            broker_pids = [broker.process.pid]
            ingest_pids = _tree(ingest.pid)
            # Baseline: the fleet connected and silent, IDLE_S before the traffic starts.
            traffic_at = time.time() + IDLE_S + 0.5
            start.value = traffic_at
            db_pids = backends(database_url)
            b0, i0, d0 = usage(broker_pids), usage(ingest_pids), usage(db_pids)
            time.sleep(IDLE_S)
            b1, i1, d1 = usage(broker_pids), usage(ingest_pids), usage(db_pids)
            idle = {
                "broker_cores": (b1[0] - b0[0]) / IDLE_S,
                "broker_rss_mib": b1[1] / 2**20,
                "ingest_cores": (i1[0] - i0[0]) / IDLE_S,
                "ingest_rss_mib": i1[1] / 2**20,
                "postgres_cores": (d1[0] - d0[0]) / IDLE_S,
            }
            while time.time() < traffic_at + 2 * STATUS_EVERY_S / compression:
                time.sleep(0.1)  # every hub has sent a status or two: steady state
            t0 = time.monotonic()
            m0 = ingest_totals(metrics_port)
            c0 = list(counts)
            db_pids = backends(database_url)
            b0, i0, d0 = usage(broker_pids), usage(ingest_pids), usage(db_pids)
            load_before = os.getloadavg()[0]
            latencies, baseline = _list_latencies(
                api_port, token, units, until=traffic_at + seconds - 1.0, run_id=run_id
            )
            t1 = time.monotonic()
            b1, i1, d1 = usage(broker_pids), usage(ingest_pids), usage(db_pids)
            m1 = ingest_totals(metrics_port)
            c1 = list(counts)
            steady_s = t1 - t0
            # Drain: publishing stops at traffic_at + seconds; how long until ingest has
            # stored every status and reading the hubs sent.
            while time.time() < traffic_at + seconds:
                time.sleep(0.05)
            stop_wall = time.monotonic()
            sent = list(counts)
            drain_s: float | None = None
            while time.monotonic() - stop_wall < 60:
                m = ingest_totals(metrics_port)
                if (
                    m.get("hemhub_ingest_statuses_total", 0) >= sent[1]
                    and m.get("hemhub_ingest_readings_received_total", 0) >= sent[3]
                ):
                    drain_s = time.monotonic() - stop_wall
                    break
                time.sleep(0.1)
            m_end = ingest_totals(metrics_port)
            with psycopg.connect(database_url) as conn:
                online_row = conn.execute(
                    "SELECT count(*) FILTER (WHERE online) FROM hubs WHERE tenant_id = %s",
                    (TENANT,),
                ).fetchone()
            online_during = online_row[0] if online_row else 0
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(timeout=10)
    # The hub processes are gone: each hub's last will marks it offline.
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(database_url) as conn:
            online = conn.execute(
                "SELECT count(*) FILTER (WHERE online), count(*) FROM hubs WHERE tenant_id = %s",
                (TENANT,),
            ).fetchone() or (0, 0)
        if online[0] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM fleet_health_history").fetchone()
    history_rows = row[0] if row else 0
    statuses_sent = c1[1] - c0[1]
    statuses_stored = m1.get("hemhub_ingest_statuses_total", 0) - m0.get(
        "hemhub_ingest_statuses_total", 0
    )
    readings_sent = c1[3] - c0[3]
    readings_stored = m1.get("hemhub_ingest_readings_received_total", 0) - m0.get(
        "hemhub_ingest_readings_received_total", 0
    )
    busy = {
        "broker_cores": (b1[0] - b0[0]) / steady_s,
        "broker_rss_mib": b1[1] / 2**20,
        "ingest_cores": (i1[0] - i0[0]) / steady_s,
        "ingest_rss_mib": i1[1] / 2**20,
        "postgres_cores": (d1[0] - d0[0]) / steady_s,
    }
    k = hubs / 1000
    filtered = [v for q, vs in latencies.items() if q for v in vs]
    everything = [v for vs in latencies.values() for v in vs]
    list_p99 = _percentile(everything, 99)
    base_p99 = _percentile(baseline, 99)
    return {
        "hubs": hubs,
        "compression": compression,
        "statuses_per_s_wall": round(hubs / (STATUS_EVERY_S / compression), 1),
        "steady_seconds": round(steady_s, 1),
        "connect_seconds": round(connect_s, 1),
        "statuses_sent_per_s": round(statuses_sent / steady_s, 1),
        "statuses_stored_per_s": round(statuses_stored / steady_s, 1),
        "readings_sent_per_s": round(readings_sent / steady_s, 1),
        "readings_stored_per_s": round(readings_stored / steady_s, 1),
        "ingest_keeps_up_ratio": round(statuses_stored / statuses_sent, 3)
        if statuses_sent
        else None,
        "drain_seconds_after_stop": None if drain_s is None else round(drain_s, 2),
        "ingest_batch_seconds_mean_ms": round(
            1000
            * m_end.get("hemhub_ingest_batch_seconds_sum", 0)
            / max(m_end.get("hemhub_ingest_batch_seconds_count", 1), 1),
            2,
        ),
        "fleet_list_p50_ms": round(_percentile(everything, 50), 1),
        "fleet_list_p99_ms": round(list_p99, 1),
        "fleet_list_filtered_p99_ms": round(_percentile(filtered, 99), 1),
        "fleet_list_per_query_p99_ms": {
            q or "(no filter)": round(_percentile(v, 99), 1) for q, v in latencies.items()
        },
        "fleet_list_requests": len(everything),
        "baseline_healthz_p99_ms": round(base_p99, 1),
        "fleet_list_p99_ratio_to_healthz": round(list_p99 / base_p99, 2),
        "per_1000_hubs": {
            "broker_cpu_cores_busy": round(busy["broker_cores"] / k, 4),
            "broker_cpu_cores_idle_baseline": round(idle["broker_cores"] / k, 4),
            "broker_rss_mib": round(busy["broker_rss_mib"] / k, 2),
            "ingest_cpu_cores_busy": round(busy["ingest_cores"] / k, 4),
            "ingest_cpu_cores_idle_baseline": round(idle["ingest_cores"] / k, 4),
            "ingest_rss_mib": round(busy["ingest_rss_mib"] / k, 2),
            "postgres_backends_cpu_cores_busy": round(busy["postgres_cores"] / k, 4),
        },
        "totals": {
            "busy": {k2: round(v, 3) for k2, v in busy.items()},
            "idle": {k2: round(v, 3) for k2, v in idle.items()},
        },
        "hubs_online_during_traffic": online_during,
        "hubs_online_after_their_last_wills": online[0],
        "hubs_registered": online[1],
        "health_history_rows": history_rows,
        "target_fleet_list_p99_ms": 100,
        "targets_met": {
            "fleet_list_p99_le_100ms": bool(list_p99 <= 100),
            "ingest_keeps_up": bool(
                statuses_sent and statuses_stored / statuses_sent >= 0.95 and drain_s is not None
            ),
        },
        "load_average_1m_at_steady_start": round(load_before, 2),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine_cores": os.cpu_count(),
    }


def _list_latencies(
    api_port: int, token: str, units: list[str], *, until: float, run_id: str
) -> tuple[dict[str, list[float]], list[float]]:
    """Sequential GETs of the fleet list, each filter in turn, and of /healthz (the
    baseline: the same server, client and connection, no query), until `until` (wall)."""
    latencies: dict[str, list[float]] = {q: [] for q in LIST_QUERIES}
    baseline: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    after = hub_id(run_id, 5000)
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=30) as c:
        # Warm up (the API's pool connections, the plans) before anything counts.
        for q in LIST_QUERIES * 3:
            c.get("/api/v1/fleet/hubs" + q.format(unit=units[0], after=after))
            c.get("/healthz")
        i = 0
        while time.time() < until:
            q = LIST_QUERIES[i % len(LIST_QUERIES)]
            path = "/api/v1/fleet/hubs" + q.format(unit=units[i % len(units)], after=after)
            t = time.perf_counter()
            r = c.get(path)
            latencies[q].append(1000 * (time.perf_counter() - t))
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
            t = time.perf_counter()
            c.get("/healthz")
            baseline.append(1000 * (time.perf_counter() - t))
            i += 1
            time.sleep(0.02)
    return latencies, baseline


def table(results: dict[str, Any]) -> str:
    if "skipped" in results:
        return f"fleet: skipped ({results['skipped']})"
    per = results["per_1000_hubs"]
    lines = [
        f"fleet: {results['hubs']:,} hubs, time x{results['compression']:g}"
        f" ({results['statuses_per_s_wall']:,} statuses/s expected)",
        f"  statuses sent/stored per s     {results['statuses_sent_per_s']:>10,.1f}"
        f" / {results['statuses_stored_per_s']:,.1f}  (ratio {results['ingest_keeps_up_ratio']})",
        f"  readings sent/stored per s     {results['readings_sent_per_s']:>10,.1f}"
        f" / {results['readings_stored_per_s']:,.1f}",
        f"  drained after stop (s)         {results['drain_seconds_after_stop']}",
        f"  fleet list p50 / p99 (ms)      {results['fleet_list_p50_ms']:>10} /"
        f" {results['fleet_list_p99_ms']}  (target <= 100; /healthz p99"
        f" {results['baseline_healthz_p99_ms']} ms, ratio"
        f" {results['fleet_list_p99_ratio_to_healthz']})",
        f"  broker per 1,000 hubs          {per['broker_cpu_cores_busy']:.4f} cores busy,"
        f" {per['broker_cpu_cores_idle_baseline']:.4f} idle, {per['broker_rss_mib']} MiB",
        f"  ingest per 1,000 hubs          {per['ingest_cpu_cores_busy']:.4f} cores busy,"
        f" {per['ingest_cpu_cores_idle_baseline']:.4f} idle, {per['ingest_rss_mib']} MiB"
        f" (+ PostgreSQL backends of ingest and API {per['postgres_backends_cpu_cores_busy']:.4f}"
        " cores)",
        f"  load average (1 min)           {results['load_average_1m_at_steady_start']} at the"
        f" start of the steady phase, on {results['machine_cores']} cores",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--hubs", type=int, default=10_000)
    parser.add_argument("--compression", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="wall seconds of traffic")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    server = os.environ.get(
        "HEMHUB_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    results = run(server, hubs=args.hubs, compression=args.compression, seconds=args.seconds)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
