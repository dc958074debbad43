"""Faults the ingest tier must survive without loss or duplication (issue 5), against the
real PostgreSQL and Mosquitto where reachable:

- the worker killed -9 mid-run: after a restart every reading is stored exactly once;
- the database unreachable (a silent network cut, CuttableProxy in front of PostgreSQL)
  while messages keep flowing: nothing is acknowledged before its commit, the broker
  redelivers what a worker held, and nothing is lost once the database is back;
- the storage tests on both partitionings of `readings` (TimescaleDB hypertable and
  native range partitions); the TimescaleDB variant runs on the test server when it has
  the extension, else on a PGlite TimescaleDB (`tests/timescaledb_server.py`).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hemhub.contract import Reading, topic_readings
from ingest.migrations import (
    compression_segments,
    ensure_partitions,
    migrate,
    partitioning_in_use,
)
from ingest.pipeline import store
from ingest.worker import IngestWorker
from tests.factories import batch, bp_reading, device, unique_hub_id
from tests.ingest.conftest import on_both_partitionings
from tests.ingest.factories import seeded_device
from tests.ingest.test_worker import Publisher, Running, count, wait_for
from tests.netproxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)

#: The worker as a separate process, so that it can be killed -9 like a crashed host.
_WORKER_MAIN = """
import logging, sys
from ingest.worker import IngestWorker
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
db, broker, client_id, group, topic, batch_size = sys.argv[1:7]
IngestWorker(db, broker, client_id=client_id, shared_group=group, topics=[topic],
             batch_size=int(batch_size), session_expiry_s=60).run()
"""


class WorkerProcess:
    """`python -c` running one IngestWorker; its log lines collected from stderr."""

    def __init__(
        self, database_url: str, mqtt_url: str, client_id: str, group: str, topic: str, size: int
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN, database_url, mqtt_url, client_id, group, topic,
             str(size)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def wait_subscribed(self) -> None:
        wait_for(
            lambda: any("ingest.subscribed" in line for line in self.lines),
            timeout=20,
            what=f"worker subscribed; log: {self.lines[-5:]}",
        )

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: flush, ack, disconnect
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


Spawn = Callable[[str, str, int], WorkerProcess]


@pytest.fixture
def spawn_worker(mqtt_url: str) -> Iterator[Spawn]:
    """spawn(database_url, topic, batch_size): a worker process, subscribed. Every one a
    test spawns has the same client id and group, so a restart resumes the session."""
    client_id, group = f"test-ingest-{uuid.uuid4().hex[:8]}", f"test-{uuid.uuid4().hex[:8]}"
    procs: list[WorkerProcess] = []

    def spawn(database_url: str, topic: str, batch_size: int) -> WorkerProcess:
        w = WorkerProcess(database_url, mqtt_url, client_id, group, topic, batch_size)
        procs.append(w)
        w.wait_subscribed()
        return w

    yield spawn
    for p in procs:
        p.stop()


def proxied(database_url: str, proxy: CuttableProxy) -> str:
    """The same database, reached through the proxy."""
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info.update(host="127.0.0.1", port=str(proxy.port))
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


class SeveringProxy(CuttableProxy):
    """A CuttableProxy whose restore() really severs the connections that lived through
    the cut. close() alone does not wake a pump thread blocked in recv() (Linux keeps the
    socket open until that call returns), so no FIN ever reaches a client that only
    waits for a reply, as a PostgreSQL client does (an MQTT client pings and finds out)."""

    def restore(self) -> None:
        with self._lock:
            stale = list(self._sockets)
        for s in stale:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        super().restore()


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[CuttableProxy]:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    host = str(info.get("host") or "")
    if not host or host.startswith("/"):
        pytest.skip("PostgreSQL is reached over a Unix socket here: no TCP link to cut")
    with SeveringProxy(host, int(info.get("port") or 5432)) as proxy:
        yield proxy


def stored_keys(conn: psycopg.Connection[Any], hub: str) -> tuple[int, int, int]:
    """(readings, distinct keys among them, keys in reading_keys) of this hub's readings."""
    row = conn.execute(
        "SELECT count(*), count(DISTINCT r.idempotency_key),"
        " count(k.idempotency_key) FROM readings r"
        " LEFT JOIN reading_keys k USING (idempotency_key) WHERE r.hub_id = %s",
        (hub,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def hub_readings(hub: str, n: int, per_message: int, salt: str) -> list[list[Reading]]:
    """`n` distinct readings of one hub, in messages of `per_message`."""
    dev = device(serial=f"{hub}-bp")
    readings = [
        bp_reading(measured_at=NOW - timedelta(seconds=i), dev=dev, salt=f"{salt}-{i}")
        for i in range(n)
    ]
    return [readings[i : i + per_message] for i in range(0, n, per_message)]


# ------------------------------------------------------------------ kill -9


def test_worker_killed_mid_run_stores_every_reading_exactly_once_after_restart(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    spawn_worker: Spawn,
) -> None:
    hub = unique_hub_id("kill9")
    topic = topic_readings(hub)
    messages = hub_readings(hub, 5000, 100, "kill")
    # batches of 100 readings: 50 commits, so the kill lands among them
    first = spawn_worker(database_url, topic, 100)
    for readings in messages:
        publisher.publish(topic, batch(hub, *readings).model_dump_json())
    wait_for(lambda: stored_keys(db, hub)[0] >= 1000, what="first batches committed")
    first.kill9()
    at_kill = stored_keys(db, hub)[0]
    assert 0 < at_kill < 5000, f"the kill must land mid-run (stored {at_kill} of 5000)"

    # Same client id: the broker resumes the session and redelivers everything unacked,
    # including batches committed just before the kill (dedupe drops those).
    second = spawn_worker(database_url, topic, 100)
    wait_for(lambda: stored_keys(db, hub)[0] >= 5000, timeout=60, what="all 5000 stored")
    second.stop()
    time.sleep(0.5)  # anything still redelivered late would show up as a duplicate now
    assert stored_keys(db, hub) == (5000, 5000, 5000)
    got = {
        r[0] for r in db.execute("SELECT idempotency_key FROM readings WHERE hub_id = %s", (hub,))
    }
    assert got == {r.idempotency_key for m in messages for r in m}


# ------------------------------------------------------------------ database cut


class Flow:
    """Messages of 10 readings published every `every` seconds from a thread."""

    def __init__(self, publisher: Publisher, hub: str, every: float = 0.2) -> None:
        self.publisher, self.hub, self.every = publisher, hub, every
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        dev = device(serial=f"{self.hub}-flow")
        while not self._stop.is_set():
            readings = [
                bp_reading(measured_at=NOW - timedelta(seconds=self.sent * 10 + i), dev=dev,
                           salt=f"flow-{self.sent}-{i}")
                for i in range(10)
            ]  # fmt: skip
            self.publisher.publish(
                topic_readings(self.hub), batch(self.hub, *readings).model_dump_json()
            )
            self.sent += 1
            self._stop.wait(self.every)

    def __enter__(self) -> Flow:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# "Down for a minute" (issue 5), scaled down to keep the suite fast: the worker cannot
# tell a 15-second silence from a 60-second one, both outlast every batch window.
CUT_SECONDS = 15.0


def test_database_cut_acks_nothing_until_commit_and_loses_nothing(
    db: psycopg.Connection[Any],
    database_url: str,
    mqtt_url: str,
    publisher: Publisher,
    pg_proxy: CuttableProxy,
) -> None:
    hub = unique_hub_id("dbcut")
    worker = IngestWorker(
        proxied(database_url, pg_proxy),
        mqtt_url,
        client_id=f"test-ingest-{uuid.uuid4().hex[:8]}",
        shared_group=f"test-{uuid.uuid4().hex[:8]}",
        topics=[topic_readings(hub)],
        session_expiry_s=60,
    )
    running = Running(worker)
    try:
        assert worker.ready.wait(15), "worker did not subscribe"
        with Flow(publisher, hub) as flow:
            wait_for(lambda: stored_keys(db, hub)[0] >= 50, what="flowing before the cut")
            pg_proxy.cut()
            time.sleep(1.0)  # a commit that finished just before the cut may still ack
            acked, stored, sent = worker.stats["acked"], stored_keys(db, hub)[0], flow.sent
            deadline = time.monotonic() + CUT_SECONDS
            while time.monotonic() < deadline:
                # received (sent keeps growing), never acknowledged, never committed
                assert worker.stats["acked"] == acked, "a message was acked while the DB was cut"
                assert stored_keys(db, hub)[0] == stored
                time.sleep(0.5)
            assert flow.sent > sent + 20, "messages did not keep flowing during the cut"
            pg_proxy.restore()
            wait_for(lambda: worker.stats["acked"] > acked, timeout=30, what="commits resume")
        total = flow.sent
        wait_for(lambda: worker.stats["acked"] >= total, timeout=30, what="every message acked")
        assert stored_keys(db, hub) == (total * 10, total * 10, total * 10)
        assert worker.stats["acked"] == total
    finally:
        running.stop()


def test_broker_redelivers_what_a_worker_held_when_it_dies_during_a_cut(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    pg_proxy: CuttableProxy,
    spawn_worker: Spawn,
) -> None:
    hub = unique_hub_id("dbcut-kill")
    topic = topic_readings(hub)
    url = proxied(database_url, pg_proxy)
    first = spawn_worker(url, topic, 2000)
    messages = hub_readings(hub, 300, 10, "redeliver")
    for readings in messages[:10]:
        publisher.publish(topic, batch(hub, *readings).model_dump_json())
    wait_for(lambda: stored_keys(db, hub)[0] == 100, what="stored before the cut")
    pg_proxy.cut()
    for readings in messages[10:]:  # delivered to the worker, which cannot commit them
        publisher.publish(topic, batch(hub, *readings).model_dump_json())
    time.sleep(3)
    assert stored_keys(db, hub)[0] == 100
    first.kill9()  # dies holding 20 unacknowledged messages
    pg_proxy.restore()
    spawn_worker(url, topic, 2000)
    wait_for(lambda: stored_keys(db, hub)[0] >= 300, timeout=30, what="redelivered readings")
    time.sleep(0.5)
    assert stored_keys(db, hub) == (300, 300, 300)


# ------------------------------------------------------------------ storage, both partitionings

#: Readings from any time are accepted: a device clock reset to 2000, a backlog, the
#: future of a badly set clock; all inside or outside the partitions made ahead.
TIMES = (
    datetime(2000, 1, 1, tzinfo=UTC),
    NOW - timedelta(days=40),
    NOW,
    NOW + timedelta(days=62),
    datetime(2100, 1, 1, tzinfo=UTC),
)


@on_both_partitionings
def test_storage_stores_each_reading_once_at_any_time(conn: psycopg.Connection[Any]) -> None:
    mode = partitioning_in_use(conn)
    hub = unique_hub_id("store")
    readings = [bp_reading(measured_at=t, salt=mode) for t in TIMES]
    first = store(conn, [batch(hub, *readings)])
    again = store(conn, [batch(hub, *readings), batch(hub, readings[2])])
    assert (first.stored, first.duplicates) == (len(TIMES), 0)
    assert (again.stored, again.duplicates) == (0, len(TIMES) + 1)
    assert stored_keys(conn, hub) == (len(TIMES),) * 3
    got = conn.execute(
        "SELECT measured_at FROM readings WHERE hub_id = %s ORDER BY measured_at", (hub,)
    ).fetchall()
    assert [r[0] for r in got] == list(TIMES)


@on_both_partitionings
def test_storage_places_readings_by_time(conn: psycopg.Connection[Any]) -> None:
    mode = partitioning_in_use(conn)
    hub = unique_hub_id("place")
    store(conn, [batch(hub, *(bp_reading(measured_at=t, salt=mode) for t in TIMES))])
    placed = dict(
        conn.execute(
            "SELECT measured_at, tableoid::regclass::text FROM readings WHERE hub_id = %s", (hub,)
        ).fetchall()
    )
    if mode == "native":
        assert placed[NOW] == f"readings_{NOW:%Y_%m}"
        month_ahead = NOW + timedelta(days=62)
        assert placed[month_ahead] == f"readings_{month_ahead:%Y_%m}"
        assert placed[TIMES[0]] == placed[TIMES[-1]] == "readings_default"
    else:
        chunks = count(
            conn,
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'readings'",
        )
        assert chunks == len(TIMES)  # 7-day chunks: one per reading here


@on_both_partitionings
def test_storage_partitions_ahead_take_over_rows_from_the_default(
    conn: psycopg.Connection[Any],
) -> None:
    mode = partitioning_in_use(conn)
    hub = unique_hub_id("ahead")
    far = datetime(NOW.year + 1, NOW.month, 15, tzinfo=UTC)  # beyond the months made ahead
    store(conn, [batch(hub, bp_reading(measured_at=far, salt=mode))])
    with conn.transaction():
        ensure_partitions(conn, months_ahead=13)  # the day that month's partition is made
        ensure_partitions(conn, months_ahead=13)  # and again: idempotent
    where = conn.execute(
        "SELECT tableoid::regclass::text FROM readings WHERE hub_id = %s", (hub,)
    ).fetchall()
    if mode == "native":
        assert where == [(f"readings_{far:%Y_%m}",)]
        assert count(conn, "SELECT count(*) FROM readings_default WHERE hub_id = %s", hub) == 0
    else:
        assert len(where) == 1  # a hypertable makes its chunks itself: nothing to move
    assert stored_keys(conn, hub) == (1, 1, 1)


# ------------------------------------------------------------------ TimescaleDB policies


def _policy_job(conn: psycopg.Connection[Any], proc: str) -> int:
    """The id of the background job that runs the policy `proc` on readings."""
    return count(
        conn,
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_name = 'readings'",
        proc,
    )


def _readings_of(conn: psycopg.Connection[Any], hub: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        'SELECT idempotency_key, measured_at, "values", raw, status, late FROM readings'
        " WHERE hub_id = %s ORDER BY measured_at",
        (hub,),
    ).fetchall()


def test_hypertable_compression_keeps_readings_and_their_dedupe(timescaledb_url: str) -> None:
    """The compression policy compresses the chunks older than 30 days: their readings read
    back whole, a replay into them is a duplicate, and a backlog reading still lands."""
    assert migrate(timescaledb_url).partitioning == "timescaledb"
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        hub = unique_hub_id("compress")
        old = [bp_reading(measured_at=NOW - timedelta(days=days), salt="c") for days in (60, 75)]
        store(conn, [batch(hub, *old, bp_reading(measured_at=NOW, salt="c"))])
        before = _readings_of(conn, hub)

        conn.execute("CALL run_job(%s)", (_policy_job(conn, "policy_compression"),))

        chunks = conn.execute(
            "SELECT range_end < now() - interval '30 days', is_compressed"
            " FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        ).fetchall()
        assert sorted(chunks) == [(False, False), (True, True), (True, True)]
        assert _readings_of(conn, hub) == before

        replay = store(conn, [batch(hub, *old)])
        # Another reading at the same time as a compressed one: into that same chunk.
        backlog = bp_reading(measured_at=old[0].measured_at, salt="backlog")
        late = store(conn, [batch(hub, backlog)])
        assert (replay.stored, replay.duplicates) == (0, 2)
        assert (late.stored, late.duplicates) == (1, 0)
        assert stored_keys(conn, hub) == (4, 4, 4)
        assert count(conn, "SELECT count(*) FROM show_chunks('readings')") == 3


def test_hypertable_retention_drops_old_chunks_and_keeps_their_keys(timescaledb_url: str) -> None:
    """The retention policy drops chunks older than HEMHUB_READINGS_RETENTION_YEARS; the
    keys of what it dropped stay in reading_keys, so a hub replaying such a reading does
    not bring it back. A later migrate keeps the policy's interval."""
    assert migrate(timescaledb_url, retention_years=1).partitioning == "timescaledb"
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        hub = unique_hub_id("retain")
        expired = bp_reading(measured_at=NOW - timedelta(days=800), salt="r")
        kept = bp_reading(measured_at=NOW - timedelta(days=100), salt="r")
        store(conn, [batch(hub, expired, kept)])

        conn.execute("CALL run_job(%s)", (_policy_job(conn, "policy_retention"),))

        assert [r[0] for r in _readings_of(conn, hub)] == [kept.idempotency_key]
        replay = store(conn, [batch(hub, expired)])
        assert (replay.stored, replay.duplicates) == (0, 1)
        assert count(conn, "SELECT count(*) FROM reading_keys") == 2

    migrate(timescaledb_url, retention_years=5)
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        drop_after = conn.execute(
            "SELECT config ->> 'drop_after' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention'"
        ).fetchall()
        assert drop_after == [("1 year",)]


def test_hypertable_reads_a_residents_compressed_readings_by_segment(
    timescaledb_url: str,
) -> None:
    """Compressed chunks are segmented by resident (and device), so what every reader of
    readings asks for, one resident's readings (nurse views, trend and schedule rules),
    decompresses that resident's segments only, not every device's of the chunk."""
    assert migrate(timescaledb_url).partitioning == "timescaledb"
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        hub = unique_hub_id("segment")
        residents = []
        for serial in ("SEG-1", "SEG-2"):
            identity, _, patient = seeded_device(
                conn, serial=serial, assigned_from=NOW - timedelta(days=200), hub_id=hub
            )
            residents.append(patient)
            old = (NOW - timedelta(days=d) for d in range(40, 100, 3))
            store(conn, [batch(hub, *(bp_reading(measured_at=t, dev=identity) for t in old))])
        conn.execute("CALL run_job(%s)", (_policy_job(conn, "policy_compression"),))

        query = "SELECT measured_at FROM readings WHERE patient_id = %s"
        plan = [r[0] for r in conn.execute("EXPLAIN " + query, (residents[0],))]
        compressed_scans = [i for i, line in enumerate(plan) if " on compress_hyper_" in line]
        assert compressed_scans, plan
        for i in compressed_scans:  # the resident is looked up in the compressed rows
            assert "patient_id = " in plan[i + 1], "\n".join(plan)
        assert (
            count(conn, "SELECT count(*) FROM readings WHERE patient_id = %s", residents[0]) == 20
        )


def test_migrate_segments_an_older_hypertable_by_resident(timescaledb_url: str) -> None:
    """A hypertable made when compressed readings were segmented by device alone (and
    with chunks compressed so) is segmented by resident and device after a migrate."""
    migrate(timescaledb_url)
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE readings SET (timescaledb.compress_segmentby = 'device_id')")
        hub = unique_hub_id("older")
        store(conn, [batch(hub, bp_reading(measured_at=NOW - timedelta(days=60), salt="o"))])
        conn.execute("CALL run_job(%s)", (_policy_job(conn, "policy_compression"),))

    migrate(timescaledb_url)
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        assert compression_segments(conn) == ("patient_id", "device_id")
        assert stored_keys(conn, hub) == (1, 1, 1)
