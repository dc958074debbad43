"""The ingest worker: MQTT (QoS 1, manual ack) -> batches -> one PostgreSQL commit -> ack.

Delivery guarantee: a message is acknowledged to the broker only after the commit of
the batch that contains it (readings, dead letter or status alike). Until then the
broker keeps it in this client's persistent session and redelivers it after a crash
or reconnect; redelivery is harmless because `reading_keys` deduplicates.

Threads: paho's network thread only enqueues what it receives (it must stay free to
answer pings); the thread that called `run()` parses, batches and stages; commit
threads (`connections`, each with its own database connection) store and ack the
batches, a large batch split by hub over them, so the database works on one part
while Python evaluates another and the next batch is parsed. A hub's messages go to
one thread, in order (see `_hand_over`). The periodic jobs (partitions ahead, the
scheduled alert rules) run on a thread and connection of their own, so that a long
evaluation never holds up the hubs of a commit thread. A batch closes at `batch_size`
readings or `batch_seconds` after its first message.

A payload can never crash the worker: anything invalid becomes a dead letter with the
reason and the raw bytes, stored in the same commit path and then acknowledged. If a
batch fails for a non-transient reason (the database rejects a row, or anything else
raises while storing it), its messages are stored one by one and the one that fails
becomes a dead letter with the exception text. If the database is
unreachable, the batch is retried with backoff and nothing is acknowledged.
"""

from __future__ import annotations

import gc
import logging
import queue
import signal
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hemhub.contract import (
    SUBSCRIBE_READINGS,
    SUBSCRIBE_RESULTS,
    SUBSCRIBE_STATUS,
    CommandResult,
    ReadingBatch,
)
from hemhub.settings import MqttTarget
from ingest import alerts, metrics
from ingest.jobs import JOBS_TICK_S, default_jobs, run_due
from ingest.logfmt import kv
from ingest.messages import MAX_PAYLOAD_BYTES, Inbound, Parsed, failure, parse_message
from ingest.pipeline import (
    DeadLetter,
    Staged,
    StatusUpdate,
    StoreResult,
    quarantine_summary,
    stage,
    store,
)
from ingest.receipts import receipts_for

log = logging.getLogger(__name__)

#: A collected batch is split over as many commit threads as it has this many readings.
FANOUT_READINGS = 500
#: ... once that many batches in a row asked for another split than the current one.
FANOUT_PATIENCE = 8
#: What a hub status weighs in the split, in readings (ingest.health: two statements
#: over the hub and its devices, some ten times a reading's share of a batch).
STATUS_WEIGHT = 10
_CONNACK_TIMEOUT_S = 5.0
#: The longest wait between two attempts to reach the broker (paho takes whole seconds).
RECONNECT_MAX_S = 1
_UNSUPPORTED_PROTOCOL = 132  # CONNACK reason 0x84 (a 3.1.1 broker answering a v5 CONNECT)


def tune_gc() -> None:
    """Collect cycles rarely, and never rescan the heap built at start-up.

    A batch holds thousands of parsed readings (some 15 objects each) until its commit.
    With the default thresholds the cyclic collector rescans them, and every long-lived
    object of the interpreter, many times per batch: that cost more than the parsing
    itself (37 vs 14 us per reading). Readings hold no reference cycles, so reference
    counting frees them; the collector only has to catch the rare cycle elsewhere.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


# --------------------------------------------------------------------------- batches


def _stage(items: list[tuple[Inbound, Parsed]]) -> Staged | None:
    """The staging rows of a batch's readings, or None to leave it to `store` (where a
    failure is isolated to its message like any other)."""
    try:
        return stage([p for _, p in items if isinstance(p, ReadingBatch)])
    except Exception:
        return None


@dataclass(frozen=True)
class _Batch:
    """What the collecting thread hands a commit thread."""

    items: list[tuple[Inbound, Parsed]]
    staged: Staged | None


@dataclass
class _Committer:
    """A commit thread and its queue (it holds its connection thread-locally)."""

    index: int
    pending: queue.Queue[_Batch | None] = field(default_factory=lambda: queue.Queue(maxsize=1))
    thread: threading.Thread | None = None

    def wait_idle(self) -> None:
        """Until every batch handed to this thread is committed (or the thread is gone)."""
        while self.pending.unfinished_tasks and self.thread is not None and self.thread.is_alive():
            time.sleep(0.001)


# --------------------------------------------------------------------------- worker


class _Stopped(Exception):
    """stop() was called while waiting for the database."""


class IngestWorker:
    """One MQTT subscriber feeding PostgreSQL; see the module docstring for guarantees."""

    def __init__(
        self,
        database_url: str,
        mqtt_url: str,
        *,
        client_id: str,
        shared_group: str | None = None,
        batch_size: int = 2000,
        batch_seconds: float = 0.05,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 10_000,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        rules: Sequence[alerts.Rule] = alerts.DEFAULT_RULES,
        topics: Sequence[str] = (SUBSCRIBE_READINGS, SUBSCRIBE_STATUS, SUBSCRIBE_RESULTS),
        ca_file: str | None = None,
        evaluate_every_s: float | None = 60.0,
        connections: int = 3,
        fanout_readings: int = FANOUT_READINGS,
        fanout_patience: int = FANOUT_PATIENCE,
    ) -> None:
        self.database_url = database_url
        self.target = MqttTarget(mqtt_url)
        self.client_id = client_id
        self.shared_group = shared_group
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        #: Database connections, each with a commit thread: while one waits for the
        #: database, another's batch is evaluated in Python. A hub's messages always go
        #: to the same one, so each resident's readings are stored in arrival order.
        self.connections = max(1, connections)
        self.fanout_readings = max(1, fanout_readings)
        self.fanout_patience = max(1, fanout_patience)
        self.session_expiry_s = session_expiry_s
        # v5: how many unacknowledged messages the broker may send us; acks wait for the
        # commit, so this must cover at least a batch or throughput collapses.
        self.receive_maximum = max(1, min(receive_maximum, 65_535))
        self.max_payload_bytes = max_payload_bytes
        #: CA bundle of the broker's certificate (mqtts://); None = the system's.
        self.ca_file = ca_file
        self.rules = tuple(rules)
        #: Topic filters (contract wildcards by default; narrower ones for sharding/tests).
        self.topics = tuple(topics)
        #: "5" or "3.1.1" once connected.
        self.protocol: str | None = None
        #: Set when the subscriptions are acknowledged by the broker.
        self.ready = threading.Event()
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "messages",
                "batches",
                "readings_received",
                "readings_stored",
                "duplicates",
                "unattributed",
                "quarantined",
                "late",
                "alerts_opened",
                "alerts_updated",
                "dead_letters",
                "statuses",
                "results",
                "duplicate_results",
                "ignored",
                "acked",
                "stale_acks_skipped",
                "db_errors",
                "isolated_batches",
                "split_batches",
                "mqtt_connects",
                "receipts",
            ),
            0,
        )
        self._stop = threading.Event()
        # SimpleQueue (C): one put and one get per message, without Queue's Python locks.
        self._inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self._commit_failure: BaseException | None = None
        self._fanout = 1  # commit threads the current batches are split over
        self._wanted = 0  # batches in a row that asked for another split
        # Each thread's own database connection, and the lock of the stats they share.
        self._local = threading.local()
        self._stats_lock = threading.Lock()
        self._generation = 0  # bumped on every (dis)connect: acks only for the live one
        self._gen_lock = threading.Lock()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._client: mqtt.Client | None = None
        self._jobs = default_jobs(evaluate_every_s)

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask run() to finish: it stores what it holds, acks, disconnects and returns."""
        self._stop.set()

    def run(self) -> None:
        """Run until stop() (from another thread) or SIGTERM/SIGINT (main thread)."""
        restore = self._install_signal_handlers()
        tune_gc()
        log.info(
            kv(
                "ingest.start",
                client_id=self.client_id,
                mqtt=self.target,
                group=self.shared_group,
                batch_size=self.batch_size,
                batch_seconds=self.batch_seconds,
            )
        )
        try:
            self._client = self._connect_mqtt()
            if self._client is None:
                return
            self._batch_loop()
        finally:
            if self._client is not None:
                self._client.disconnect()
                self._client.loop_stop()
            restore()
            log.info(
                kv(
                    "ingest.stop",
                    client_id=self.client_id,
                    **{k: v for k, v in self.stats.items() if v},
                )
            )

    def _install_signal_handlers(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info(kv("ingest.signal", signal=signal.Signals(signum).name))
            self.stop()

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore

    # ------------------------------------------------------------------ MQTT

    def _subscriptions(self) -> list[str]:
        if self.shared_group and self.protocol == "5":
            return [f"$share/{self.shared_group}/{t}" for t in self.topics]
        return list(self.topics)

    def _make_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        v5 = protocol == MQTTProtocolVersion.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            # persistent session: unacked and queued messages survive our restarts
            clean_session=None if v5 else False,
        )
        client.manual_ack_set(True)
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set(ca_certs=self.ca_file)  # verifies the broker's certificate
        # A restarted broker is back within a second: a hub that reconnects first has its
        # readings PUBACKed while no one is subscribed (its receipts make it resend them).
        client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_mqtt(self) -> mqtt.Client | None:
        """Connect with MQTT v5, falling back to 3.1.1 when the broker refuses v5."""
        delay = 0.5
        while not self._stop.is_set():
            for protocol in (MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311):
                v5 = protocol == MQTTProtocolVersion.MQTTv5
                self.protocol = "5" if v5 else "3.1.1"
                client = self._make_client(protocol)
                props: Properties | None = None
                if v5:
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = self.session_expiry_s
                    props.ReceiveMaximum = self.receive_maximum
                try:
                    if v5:
                        client.connect(
                            self.target.host,
                            self.target.port,
                            keepalive=30,
                            clean_start=False,
                            properties=props,
                        )
                    else:
                        client.connect(self.target.host, self.target.port, keepalive=30)
                except OSError as exc:
                    log.warning(kv("ingest.mqtt_unreachable", error=exc, retry_s=delay))
                    break
                client.loop_start()
                try:
                    rc = self._connack.get(timeout=_CONNACK_TIMEOUT_S)
                except queue.Empty:
                    rc = None
                if rc is not None and not rc.is_failure:
                    return client
                client.disconnect()
                client.loop_stop()
                self._drain_connacks()
                # A 3.1.1 broker either refuses v5 (0x84) or, like amqtt, never answers a
                # CONNECT carrying v5 properties.
                if v5 and (rc is None or rc.value == _UNSUPPORTED_PROTOCOL):
                    log.warning(
                        kv(
                            "ingest.mqtt_fallback",
                            protocol="3.1.1",
                            reason=rc or "no CONNACK to v5 CONNECT",
                        )
                    )
                    continue
                log.warning(kv("ingest.mqtt_refused", reason=rc, retry_s=delay))
                break
            self._stop.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)
        return None

    def _drain_connacks(self) -> None:
        while True:
            try:
                self._connack.get_nowait()
            except queue.Empty:
                return

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        rc: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._gen_lock:
            self._generation += 1
        self._connack.put(rc)
        if rc.is_failure:
            return
        self.stats["mqtt_connects"] += 1
        log.info(
            kv(
                "ingest.mqtt_connected",
                client_id=self.client_id,
                protocol=self.protocol,
                session_present=flags.session_present,
            )
        )
        # Always, whatever session_present says: re-subscribing is idempotent, covers a
        # session the broker expired, and Mosquitto 2.0 does not restore $share
        # subscriptions from its persistence file (a session without them gets nothing).
        client.subscribe([(t, 1) for t in self._subscriptions()])

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        rc: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._gen_lock:
            # Message ids of the old connection mean nothing on the next one: the broker
            # redelivers those messages, and acking a stale id could ack another message.
            self._generation += 1
        self.ready.clear()
        if not self._stop.is_set():
            log.warning(kv("ingest.mqtt_disconnected", reason=rc))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error(kv("ingest.subscribe_refused", reasons=[str(r) for r in reason_codes]))
            return
        log.info(kv("ingest.subscribed", topics=",".join(self._subscriptions())))
        self.ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Network thread: no work here beyond handing over.
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        self._inbox.put(
            Inbound(
                self._generation, msg.mid, msg.qos, topic, bytes(msg.payload), datetime.now(UTC)
            )
        )

    # ------------------------------------------------------------------ batching

    @property
    def _conn(self) -> psycopg.Connection[Any] | None:
        """The database connection of the calling thread (each commit thread, and the
        jobs' thread, has its own)."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        return conn

    @_conn.setter
    def _conn(self, conn: psycopg.Connection[Any] | None) -> None:
        self._local.conn = conn

    def _batch_loop(self) -> None:
        committers = [_Committer(n) for n in range(self.connections)]
        for c in committers:
            c.thread = threading.Thread(
                target=self._commit_loop, args=(c,), name=f"ingest-commit-{c.index}"
            )
            c.thread.start()
        jobs = threading.Thread(target=self._jobs_loop, name="ingest-jobs", daemon=True)
        jobs.start()
        try:
            while not self._stop.is_set():
                items = self._collect(block=True)
                if items:
                    self._hand_over(items, committers)
            # Stopping: store and ack what already arrived; later arrivals stay unacked
            # and are redelivered to this session (or the group) by the broker.
            items = self._collect(block=False)
            if items:
                self._hand_over(items, committers)
        finally:
            self._stop.set()
            for c in committers:
                self._queue(c, None)
            for c in committers:
                if c.thread is not None:
                    c.thread.join()
            jobs.join()  # a job in progress finishes its transaction
        if self._commit_failure is not None:
            raise RuntimeError("a commit thread failed") from self._commit_failure

    def _hand_over(self, items: list[tuple[Inbound, Parsed]], committers: list[_Committer]) -> None:
        """Split a collected batch by hub over commit threads, stage each part and queue
        it; waits while a thread has one queued already (back-pressure).

        A batch is split only as far as batches are large (`fanout_readings` per part):
        each part costs a transaction's fixed work, which small batches cannot amortise.
        When the number of parts changes, hubs move between threads: the parts already
        handed over are committed first, so a hub's messages are still stored in order.
        That wait costs throughput, so the split follows the load with some patience."""
        readings = sum(len(p.readings) for _, p in items if isinstance(p, ReadingBatch))
        # A hub status (its devices, their health and history) costs the database about
        # as much as STATUS_WEIGHT readings: a fleet's status stream is split too.
        readings += STATUS_WEIGHT * sum(1 for _, p in items if isinstance(p, StatusUpdate))
        wanted = max(1, min(len(committers), readings // self.fanout_readings))
        # Changing the split waits for the threads to finish what they hold: follow the
        # load only once it has asked for another split `fanout_patience` batches running.
        self._wanted = self._wanted + 1 if wanted != self._fanout else 0
        if self._wanted >= self.fanout_patience:
            for c in committers:
                c.wait_idle()
            self._fanout, self._wanted = wanted, 0
        fanout = self._fanout
        parts: list[list[tuple[Inbound, Parsed]]] = [[] for _ in range(fanout)]
        for item in items:
            # By hub (the topic without its last level: readings and status alike);
            # zlib.crc32, not hash(), so that a hub keeps its thread in every batch.
            topic = item[0].topic
            parts[zlib.crc32(topic[: topic.rfind("/")].encode()) % fanout].append(item)
        if fanout > 1:
            self._count("split_batches")
        for c, part in zip(committers, parts, strict=False):
            if part:
                self._queue(c, _Batch(part, _stage(part)))

    def _queue(self, c: _Committer, batch: _Batch | None) -> None:
        while c.thread is not None and c.thread.is_alive():
            try:
                c.pending.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue
        if batch is not None and self._commit_failure is not None:
            raise RuntimeError("a commit thread failed") from self._commit_failure

    def _commit_loop(self, c: _Committer) -> None:
        """A commit thread: store, then ack, each of its batches in arrival order.
        psycopg releases the GIL while it waits for the database, so the others parse
        and evaluate meanwhile."""
        try:
            while True:
                try:
                    batch = c.pending.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    if batch is None:
                        return
                    self._commit(batch.items, batch.staged)
                finally:
                    c.pending.task_done()
        except BaseException as exc:  # a bug, not a payload: stop the worker, loudly
            log.exception(kv("ingest.commit_thread_failed", error=type(exc).__name__))
            self._commit_failure = exc
            self._stop.set()
        finally:
            self._close_connection()

    def _collect(self, *, block: bool) -> list[tuple[Inbound, Parsed]]:
        items: list[tuple[Inbound, Parsed]] = []
        readings = 0
        deadline: float | None = None
        while readings < self.batch_size:
            try:
                if not block:
                    msg = self._inbox.get_nowait()
                elif deadline is None:
                    msg = self._inbox.get(timeout=0.2)  # wake up now and then for stop()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    msg = self._inbox.get(timeout=remaining)
            except queue.Empty:
                if deadline is None and block and not self._stop.is_set():
                    continue
                break
            if deadline is None:
                deadline = time.monotonic() + self.batch_seconds
            parsed = parse_message(
                msg.topic, msg.payload, msg.received_at, max_bytes=self.max_payload_bytes
            )
            if isinstance(parsed, ReadingBatch):
                readings += len(parsed.readings)
            items.append((msg, parsed))
        return items

    def _commit(self, items: list[tuple[Inbound, Parsed]], staged: Staged | None = None) -> None:
        started = time.perf_counter()
        try:
            result = self._store_with_retry(items, staged)
        except _Stopped:
            log.warning(
                kv(
                    "ingest.abandoned_unacked",
                    messages=len(items),
                    note="database unavailable at stop; broker will redeliver",
                )
            )
            return
        except Exception as exc:
            # Not transient: a row the database rejects, or a payload that trips
            # anything else while being stored (the alert rules, say). Never die on it:
            # store one by one and dead-letter the message that fails.
            self._isolate(items, exc)
            return
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self._send_receipts([p for _, p in items], result.stored_keys)
        self._ack(items)
        self._account(result, items)
        first = min(m.received_at for m, _ in items)
        metrics.BATCH_DELAY_SECONDS.observe((datetime.now(UTC) - first).total_seconds())

    def _isolate(self, items: list[tuple[Inbound, Parsed]], exc: Exception) -> None:
        """Store the messages of a failed batch one by one; dead-letter each that fails."""
        self._count("isolated_batches")
        log.warning(kv("ingest.batch_rejected", messages=len(items), error=failure(exc)))
        result = StoreResult()
        done: list[tuple[Inbound, Parsed]] = []
        for item in items:
            msg = item[0]
            try:
                alone = self._store_with_retry([item])
                result.add(alone)
                self._send_receipts([item[1]], alone.stored_keys)
            except _Stopped:
                break  # the rest stays unacked, for the broker to redeliver
            except Exception as one:
                if not isinstance(one, psycopg.Error):
                    log.error(kv("ingest.store_failed", topic=msg.topic), exc_info=one)
                letter = DeadLetter(msg.topic, failure(one), msg.payload[: self.max_payload_bytes])
                log.warning(kv("ingest.dead_letter", topic=msg.topic, reason=letter.reason))
                try:
                    result.add(self._store_with_retry([(msg, letter)]))
                    self._send_receipts([letter], set())
                except _Stopped:
                    break
                except Exception as lost:
                    # Left unacknowledged: the broker sends it again after a reconnect.
                    log.error(kv("ingest.dead_letter_failed", topic=msg.topic, error=failure(lost)))
                    continue
            self._ack([item])
            done.append(item)
        if done:
            self._account(result, done)

    def _account(self, result: StoreResult, items: list[tuple[Inbound, Parsed]]) -> None:
        with self._stats_lock:
            s = self.stats
            s["messages"] += len(items)
            s["batches"] += 1
            s["readings_received"] += result.received
            s["readings_stored"] += result.stored
            s["duplicates"] += result.duplicates
            s["unattributed"] += result.unattributed
            s["quarantined"] += result.quarantined
            s["late"] += result.late
            s["alerts_opened"] += result.alerts_opened
            s["alerts_updated"] += result.alerts_updated
            s["dead_letters"] += result.dead_letters
            s["statuses"] += result.statuses
            s["results"] += result.results
            s["duplicate_results"] += result.duplicate_results
            s["ignored"] += sum(1 for _, p in items if p is None)
        metrics.MESSAGES.inc(len(items))
        metrics.account(result, [p for _, p in items if isinstance(p, DeadLetter)])
        for _, p in items:
            if isinstance(p, DeadLetter):
                log.warning(kv("ingest.dead_letter", topic=p.topic, reason=p.reason))
        if result.quarantined:
            log.warning(quarantine_summary(result))
        log.info(
            kv(
                "ingest.batch",
                messages=len(items),
                received=result.received,
                stored=result.stored,
                duplicates=result.duplicates,
                unattributed=result.unattributed,
                quarantined=result.quarantined,
                late=result.late,
                alerts_opened=result.alerts_opened,
                alerts_updated=result.alerts_updated,
                dead_letters=result.dead_letters,
                statuses=result.statuses,
                results=result.results,
            )
        )

    def _store_with_retry(
        self, items: list[tuple[Inbound, Parsed]], staged: Staged | None = None
    ) -> StoreResult:
        batches = [p for _, p in items if isinstance(p, ReadingBatch)]
        letters = [p for _, p in items if isinstance(p, DeadLetter)]
        statuses = [p for _, p in items if isinstance(p, StatusUpdate)]
        results = [p for _, p in items if isinstance(p, CommandResult)]
        # When the batch reached us: a hub's backlog arriving hours late is late too.
        arrived_at = min((m.received_at for m, p in items if isinstance(p, ReadingBatch)),
                         default=None)  # fmt: skip
        delay = 0.1
        while True:
            try:
                conn = self._connection()
                return store(
                    conn,
                    batches if staged is None else staged,
                    dead_letters=letters,
                    statuses=statuses,
                    results=results,
                    rules=self.rules,
                    arrived_at=arrived_at,
                )
            except psycopg.OperationalError as exc:
                # Connection lost, server restarting, deadlock, serialization: transient.
                self._count("db_errors")
                metrics.DB_ERRORS.inc()
                if self._conn is not None and (self._conn.closed or self._conn.broken):
                    self._conn = None
                log.warning(
                    kv(
                        "ingest.db_retry",
                        error=str(exc).strip().splitlines()[0]
                        if str(exc).strip()
                        else type(exc).__name__,
                        retry_s=delay,
                    )
                )
                if self._stop.wait(delay):
                    raise _Stopped() from exc
                delay = min(delay * 2, 10.0)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.database_url,
                autocommit=True,
                connect_timeout=5,
                application_name=f"hemhub-ingest {self.client_id}"[:63],
                # A link that dies silently (no FIN/RST) would otherwise block a commit
                # for the kernel's ~15 minutes of retransmissions, and stop() with it.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                tcp_user_timeout=30_000,
            )
        return self._conn

    def _jobs_loop(self) -> None:
        """The periodic jobs' thread, with a database connection of its own."""
        try:
            while not self._stop.is_set():
                run_due(self._jobs, self._connection)
                if self._conn is not None and self._conn.broken:
                    self._conn = None
                self._stop.wait(JOBS_TICK_S)
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        """Close the calling thread's database connection, if it has one."""
        if self._conn is not None:
            self._conn.close()

    def _send_receipts(self, parsed: list[Parsed], stored_keys: set[str]) -> None:
        """Tell each hub what became of its readings, once their commit is done (QoS 1;
        paho queues them while disconnected). A receipt that is lost anyway costs only a
        resend: the hub publishes again, and the reading becomes a duplicate."""
        client = self._client
        if client is None:
            return
        receipts = receipts_for(parsed, stored_keys, datetime.now(UTC))
        for topic, payload in receipts:
            client.publish(topic, payload, qos=1)
        self._count("receipts", len(receipts))
        metrics.RECEIPTS.inc(len(receipts))

    def _ack(self, items: list[tuple[Inbound, Parsed]]) -> None:
        client = self._client
        if client is None:
            return
        with self._gen_lock:
            live = self._generation
        acked = stale = 0
        for msg, _ in items:
            if msg.qos == 0:
                continue
            if msg.generation != live:
                stale += 1
                continue
            client.ack(msg.mid, msg.qos)
            acked += 1
        self._count("acked", acked)
        self._count("stale_acks_skipped", stale)

    def _count(self, name: str, n: int = 1) -> None:
        if n:
            with self._stats_lock:  # commit threads count concurrently
                self.stats[name] += n
