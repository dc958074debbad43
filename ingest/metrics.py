"""Prometheus metrics of the ingest tier (docs/operations.md lists them).

Several worker processes (`hemhub ingest --workers N`) export through one endpoint, the
supervisor's, in prometheus-client's multiprocess mode: each worker writes its values
to memory-mapped files in a directory of the supervisor's (`PROMETHEUS_MULTIPROC_DIR`,
set before the workers start), and the supervisor sums them per scrape. Counters of a
worker that died and was restarted keep counting from the dead one's totals, so a
restart never looks like a counter reset. One worker in-process serves its own values.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)

from hemhub.contract import TopicError, parse_topic
from ingest.messages import rejection_code
from ingest.pipeline import DeadLetter, StoreResult
from ingest.receipts import readable_keys

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES = Counter("hemhub_ingest_messages", "MQTT messages stored and acknowledged")
READINGS_RECEIVED = Counter("hemhub_ingest_readings_received", "Readings in stored batches")
READINGS_STORED = Counter("hemhub_ingest_readings_stored", "Readings stored for the first time")
READINGS_DUPLICATE = Counter("hemhub_ingest_readings_duplicate", "Readings stored before")
READINGS_UNATTRIBUTED = Counter(
    "hemhub_ingest_readings_unattributed", "Stored readings no assignment covered"
)
READINGS_QUARANTINED = Counter(
    "hemhub_ingest_readings_quarantined",
    "Stored readings of a hub not entitled to the device",
    ["reason"],
)
READINGS_REJECTED = Counter(
    "hemhub_ingest_readings_rejected",
    "Readings of dead-lettered messages, receipted rejected to their hub",
    ["reason"],
)
DEAD_LETTERS = Counter("hemhub_ingest_dead_letters", "Messages stored as dead letters")
STATUSES = Counter("hemhub_ingest_statuses", "Hub statuses and last wills stored")
RECEIPTS = Counter("hemhub_ingest_receipts_sent", "Receipts published to hubs")
ALERTS_OPENED = Counter("hemhub_ingest_alerts_opened", "Alerts opened by stored readings")
DB_ERRORS = Counter("hemhub_ingest_db_errors", "Transient database errors (batch retried)")
BATCH_SECONDS = Histogram(
    "hemhub_ingest_batch_seconds",
    "Storing one batch: its transaction, from the first statement to the commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_DELAY_SECONDS = Histogram(
    "hemhub_ingest_batch_delay_seconds",
    "From the arrival of a batch's first message at the worker to its acknowledgement",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def account(result: StoreResult, letters: Iterable[DeadLetter]) -> None:
    """Count what one committed batch (or its isolated messages) amounted to."""
    READINGS_RECEIVED.inc(result.received)
    READINGS_STORED.inc(result.stored)
    READINGS_DUPLICATE.inc(result.duplicates)
    READINGS_UNATTRIBUTED.inc(result.unattributed)
    for reason in result.quarantine_reasons.values():
        READINGS_QUARANTINED.labels(reason).inc()
    DEAD_LETTERS.inc(result.dead_letters)
    STATUSES.inc(result.statuses)
    ALERTS_OPENED.inc(result.alerts_opened)
    for letter in letters:
        try:
            _, kind = parse_topic(letter.topic)
        except TopicError:
            continue
        if kind == "readings":
            keys = readable_keys(letter.payload)
            if keys:
                READINGS_REJECTED.labels(rejection_code(letter.reason)).inc(len(keys))


def serve_in_process(port: int, addr: str = "127.0.0.1") -> None:
    """One worker in this process: serve its metrics (a daemon thread)."""
    start_http_server(port, addr=addr)


def prepare_multiprocess() -> Path:
    """A fresh directory for the workers' values, named in the environment the spawned
    workers inherit. Call before starting them."""
    path = Path(tempfile.mkdtemp(prefix="hemhub-ingest-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def serve_multiprocess(path: Path, port: int, addr: str = "127.0.0.1") -> None:
    """Serve the sum of every worker's values (the supervisor; a daemon thread)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))
    start_http_server(port, addr=addr, registry=registry)


def worker_died(path: Path, pid: int) -> None:
    """Forget a dead worker's live-only values (none yet: counters and histograms stay)."""
    multiprocess.mark_process_dead(pid, str(path))


def cleanup(path: Path) -> None:
    os.environ.pop(MULTIPROC_ENV, None)
    shutil.rmtree(path, ignore_errors=True)
