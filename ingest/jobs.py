"""The periodic jobs of an ingest worker: monthly partitions ahead, and the alert rules
driven by time (a missed measurement, missing data). Each runs in a transaction of its
own, one worker at a time (an advisory lock), on the jobs' thread and connection."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest.health import prune_history
from ingest.logfmt import kv
from ingest.migrations import ensure_partitions
from ingest.schedule import run_scheduled_evaluation

log = logging.getLogger(__name__)

#: How often a worker makes sure the monthly partitions ahead exist.
PARTITION_CHECK_S = 6 * 3600
PARTITION_LOCK = 0x68656D70  # "hemp": one worker at a time creates partitions
EVALUATION_LOCK = 0x68656D65  # "heme": one worker at a time runs the scheduled rules
#: How often old fleet-health history is dropped (ingest.health retention).
PRUNE_HISTORY_S = 3600
PRUNE_LOCK = 0x68656D66  # "hemf": one worker at a time prunes the health history
#: How often the jobs' thread looks for a job that is due.
JOBS_TICK_S = 1.0


@dataclass
class Job:
    """A periodic job of the worker: partitions ahead, time-driven alert rules."""

    name: str
    every_s: float
    lock_id: int
    run: Callable[[psycopg.Connection[Any]], object]
    due: float = 0.0


def evaluate_schedule(conn: psycopg.Connection[Any]) -> None:
    counts = run_scheduled_evaluation(conn, datetime.now(UTC))
    log.info(
        kv("ingest.scheduled_evaluation", **{k: v for k, v in counts.items() if isinstance(v, int)})
    )


def default_jobs(evaluate_every_s: float | None) -> list[Job]:
    """Partitions ahead and health-history retention always; the scheduled rules every
    `evaluate_every_s` (None: never)."""
    jobs = [
        Job("partitions", PARTITION_CHECK_S, PARTITION_LOCK, ensure_partitions),
        Job("health_history", PRUNE_HISTORY_S, PRUNE_LOCK, prune_history),
    ]
    if evaluate_every_s is not None:
        jobs.append(Job("evaluation", evaluate_every_s, EVALUATION_LOCK, evaluate_schedule))
    return jobs


def run_due(jobs: list[Job], connection: Callable[[], psycopg.Connection[Any]]) -> None:
    """Run the jobs that are due; one worker at a time runs each (advisory lock)."""
    now = time.monotonic()
    for job in jobs:
        if job.due and now < job.due:
            continue
        job.due = now + job.every_s
        try:
            conn = connection()
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '5s'")
                locked = conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", (job.lock_id,)
                ).fetchone()
                if locked and locked[0]:
                    job.run(conn)
        except Exception as exc:
            # Not fatal (readings outside partitions land in the default one; the
            # next evaluation catches up): retry in a minute. A job that trips on
            # something stored (not a database error) must not stop ingest either.
            log.warning(
                kv(f"ingest.{job.name}_failed", error=type(exc).__name__),
                exc_info=not isinstance(exc, psycopg.Error),
            )
            job.due = now + min(job.every_s, 60.0)
