"""`hemhub ingest`: one worker in this process, or several worker processes on one
shared subscription, supervised (a worker that dies is started again)."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import signal
import socket
import threading
import time
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from types import FrameType
from typing import Any

from hemhub.logs import setup_logging
from hemhub.settings import Settings
from ingest import metrics
from ingest.logfmt import kv
from ingest.worker import IngestWorker

log = logging.getLogger(__name__)


def _worker_process(*args: Any) -> None:
    """A spawned worker process: logs as the command that started it (which exported
    HEMHUB_LOG_FORMAT), then runs one worker."""
    setup_logging()
    _run_one(*args)


def _run_one(
    database_url: str,
    mqtt_url: str,
    client_id: str,
    group: str | None,
    batch_size: int,
    batch_seconds: float,
    ca_file: str | None,
    connections: int,
) -> None:
    IngestWorker(
        database_url,
        mqtt_url,
        client_id=client_id,
        shared_group=group,
        batch_size=batch_size,
        batch_seconds=batch_seconds,
        ca_file=ca_file,
        connections=connections,
    ).run()


#: A worker process that exits while not asked to is started again after this delay,
#: doubling while it keeps dying within a minute of its start (up to 30 s): its
#: persistent session holds messages in flight to it that no other member gets.
_RESTART_DELAY_S = 1.0
_RESTART_MAX_S = 30.0
_HEALTHY_AFTER_S = 60.0


def run_ingest(
    settings: Settings,
    workers: int = 1,
    *,
    group: str = "hemhub-ingest",
    client_prefix: str | None = None,
) -> None:
    """Run `workers` ingest workers on one shared subscription (`hemhub ingest`).

    Client ids are fixed per host and slot (`hemhub-ingest-<host>-<n>`) so that a
    restarted worker resumes its persistent session. With more than one worker this
    process supervises them: a worker that dies (killed, crashed) is started again with
    its client id; SIGTERM/SIGINT stop them all. The schema must be migrated first
    (`hemhub migrate`).
    """
    if not settings.database_url or not settings.mqtt_url:
        raise ValueError("run_ingest needs HEMHUB_DATABASE_URL and HEMHUB_MQTT_URL")
    base = client_prefix or f"hemhub-ingest-{socket.gethostname()}"
    database_url, mqtt_url = settings.database_url, settings.mqtt_url
    tuning = (
        settings.ingest_batch_size,
        settings.ingest_batch_seconds,
        settings.mqtt_ca_file,
        settings.ingest_connections,
    )
    port, addr = settings.ingest_metrics_port, settings.ingest_metrics_host
    if workers <= 1:
        if port is not None:
            metrics.serve_in_process(port, addr)
        # No $share with one worker: nothing to share, and Mosquitto 2.0 does not
        # restore shared subscriptions after a restart (the worker resubscribes anyway).
        _run_one(database_url, mqtt_url, f"{base}-0", None, *tuning)
        return
    metrics_dir = metrics.prepare_multiprocess() if port is not None else None
    try:
        if metrics_dir is not None and port is not None:
            metrics.serve_multiprocess(metrics_dir, port, addr)
        _supervise(workers, database_url, mqtt_url, base, group, tuning, metrics_dir)
    finally:
        if metrics_dir is not None:
            metrics.cleanup(metrics_dir)


def _supervise(
    workers: int,
    database_url: str,
    mqtt_url: str,
    base: str,
    group: str,
    tuning: tuple[Any, ...],
    metrics_dir: Path | None,
) -> None:
    """Run and restart the worker processes until SIGTERM/SIGINT (see `run_ingest`)."""
    ctx = multiprocessing.get_context("spawn")

    def spawn(i: int) -> multiprocessing.process.BaseProcess:
        p = ctx.Process(
            target=_worker_process,
            args=(database_url, mqtt_url, f"{base}-{i}", group, *tuning),
            name=f"ingest-{i}",
        )
        p.start()
        return p

    procs = {i: spawn(i) for i in range(workers)}
    started = dict.fromkeys(procs, time.monotonic())
    delay = dict.fromkeys(procs, _RESTART_DELAY_S)
    due: dict[int, float] = {}  # slot -> when to start it again
    stopping = threading.Event()
    signalled: set[int] = set()

    def terminate_all() -> None:
        for p in list(procs.values()):
            if p.is_alive() and p.pid is not None and p.pid not in signalled:
                signalled.add(p.pid)
                p.terminate()  # SIGTERM: each worker flushes, acks and disconnects

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        terminate_all()

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            if stopping.is_set():
                terminate_all()  # also one started while the signal arrived
                alive = [p.sentinel for p in procs.values() if p.is_alive()]
                if not alive:
                    break
                mp_wait(alive, timeout=1.0)
                continue
            now = time.monotonic()
            for i, p in procs.items():
                if p.is_alive() or i in due:
                    continue
                if metrics_dir is not None and p.pid is not None:
                    metrics.worker_died(metrics_dir, p.pid)
                if now - started[i] >= _HEALTHY_AFTER_S:
                    delay[i] = _RESTART_DELAY_S
                log.error(
                    kv("ingest.worker_died", worker=p.name, exitcode=p.exitcode, restart_s=delay[i])
                )
                due[i] = now + delay[i]
                delay[i] = min(delay[i] * 2, _RESTART_MAX_S)
            for i, at in list(due.items()):
                if now >= at and not stopping.is_set():
                    del due[i]
                    procs[i] = spawn(i)
                    started[i] = time.monotonic()
            timeout = min([1.0, *(at - now for at in due.values())])
            alive = [p.sentinel for p in procs.values() if p.is_alive()]
            if alive:
                mp_wait(alive, timeout=max(timeout, 0.01))
            else:
                stopping.wait(max(timeout, 0.01))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
