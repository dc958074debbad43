"""Paging over thousands of readings and incremental pulls with writers committing out
of order: no reading missed, none repeated."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from api.auth import Role
from hemhub.settings import Settings
from ingest.migrations import migrate
from tests.api.fhir_helpers import add_many, add_reading, device_of, pull_all, reading_key_of
from tests.api.helpers import NOW, Seed, api_client, bearer, make_settings, seed_database

pytestmark = pytest.mark.asyncio

BASE = "/fhir/r4"


async def test_paging_over_thousands_of_readings(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        dev = device_of(conn, seed.alice)
        keys = add_many(
            conn,
            prefix="bulk",
            n=3000,
            device=dev,
            patient=seed.alice,
            tenant="a",
            start=NOW - timedelta(days=5),
        )
    headers = bearer(settings, Role.INTEGRATION, "a")
    found, pull = await pull_all(
        client, f"{BASE}/Observation?patient={seed.alice}&_count=250", headers
    )
    ids = Counter(o["id"] for o in found)
    assert max(ids.values()) == 1, "an Observation was repeated"
    assert {reading_key_of(o) for o in found} == set(keys) | set(seed.alice_readings)
    assert len(found) == 3003
    assert pull is not None
    # Nothing new: the next pull is empty, and says where to go on from.
    again, pull2 = await pull_all(client, pull, headers)
    assert again == [] and pull2 is not None


async def test_pages_split_a_reading_between_its_observations(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys = add_many(
            conn,
            prefix="pulse",
            n=301,
            device=device_of(conn, seed.alice),
            patient=seed.alice,
            tenant="a",
            start=NOW - timedelta(days=5),
            pulse=70,
        )
    headers = bearer(settings, Role.NURSE, "a")
    # _count 7: a page ends between a reading's panel and its heart rate.
    found, _ = await pull_all(
        client, f"{BASE}/Observation?_count=7&date=ge{(NOW - timedelta(days=6)).date()}", headers
    )
    ids = Counter(o["id"] for o in found)
    assert max(ids.values()) == 1
    assert len(found) == 2 * 301 + 3
    per_key = Counter(reading_key_of(o) for o in found)
    assert all(per_key[k] == 2 for k in keys)
    # With a code filter, pages hold only that code and still miss nothing.
    hr, _ = await pull_all(client, f"{BASE}/Observation?code=8867-4&_count=50", headers)
    assert {reading_key_of(o) for o in hr} == set(keys) and len(hr) == 301


async def test_a_reading_committed_late_is_in_the_next_pull(
    client: httpx.AsyncClient,
    settings: Settings,
    seed: Seed,
    database_url: str,
    postgres_server: str,
) -> None:
    """Two writers: the first starts (its readings stamped earlier) and commits last. A
    timestamp cursor would skip its reading; the commit horizon holds the second's back
    until the first has finished."""
    headers = bearer(settings, Role.INTEGRATION, "a")
    first_pull = f"{BASE}/Observation?_lastUpdated=ge2000-01-01"
    seen, pull = await pull_all(client, first_pull, headers)
    assert {reading_key_of(o) for o in seen} == set(seed.alice_readings)
    slow = psycopg.connect(database_url)  # a transaction held open
    other_db = psycopg.connect(postgres_server)  # a long transaction elsewhere on the server
    try:
        dev = device_of(slow, seed.alice)
        slow_key = add_reading(
            slow,
            label="slow",
            device=dev,
            patient=seed.alice,
            tenant="a",
            measured_at=NOW - timedelta(minutes=30),
        )
        other_db.execute("SELECT pg_current_xact_id()")  # holds an id, in another database
        with psycopg.connect(database_url, autocommit=True) as fast:
            fast_key = add_reading(
                fast,
                label="fast",
                device=dev,
                patient=seed.alice,
                tenant="a",
                measured_at=NOW - timedelta(minutes=20),
            )
        assert pull is not None
        during, pull = await pull_all(client, pull, headers)
        # Neither yet: the fast one waits behind the slow one still in progress.
        assert during == []
        slow.commit()
        after, pull = await pull_all(client, pull, headers)
        assert Counter(reading_key_of(o) for o in after) == {slow_key: 2, fast_key: 2}
        # A long transaction of another database does not hold the horizon back.
        with psycopg.connect(database_url, autocommit=True) as conn:
            third = add_reading(
                conn,
                label="third",
                device=dev,
                patient=seed.alice,
                tenant="a",
                measured_at=NOW - timedelta(minutes=10),
            )
        assert pull is not None
        last, _ = await pull_all(client, pull, headers)
        assert {reading_key_of(o) for o in last} == {third}
    finally:
        slow.close()
        other_db.close()


async def test_incremental_pulls_with_concurrent_writers(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    """Four writers insert readings in transactions of random length while a journal
    pulls again and again: every reading arrives exactly once."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        dev = device_of(conn, seed.alice)
    written: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        rng = random.Random(n)
        with psycopg.connect(database_url) as conn:
            i = 0
            while not stop.is_set():
                keys = [
                    add_reading(
                        conn,
                        label=f"w{n}-{i}-{j}",
                        device=dev,
                        patient=seed.alice,
                        tenant="a",
                        measured_at=NOW - timedelta(seconds=rng.randint(0, 86400)),
                    )
                    for j in range(rng.randint(1, 5))
                ]
                stop.wait(rng.random() * 0.05)  # hold the transaction open a while
                conn.commit()
                with lock:
                    written.extend(keys)
                i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    headers = bearer(settings, Role.INTEGRATION, "a")
    pulled: Counter[str] = Counter()
    url: str | None = f"{BASE}/Observation?patient={seed.alice}&code=85354-9&_count=20"
    try:
        for _ in range(25):
            assert url is not None
            found, url = await pull_all(client, url, headers)
            pulled.update(reading_key_of(o) for o in found)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    # The writers have stopped: the pulls that follow bring the rest.
    assert url is not None
    found, url = await pull_all(client, url, headers)
    pulled.update(reading_key_of(o) for o in found)
    assert len(written) > 50
    assert max(pulled.values()) == 1, "a reading was pulled twice"
    assert set(pulled) == set(written) | set(seed.alice_readings)


async def test_pulls_on_a_timescaledb_hypertable(timescaledb_url: str, tmp_path: Path) -> None:
    """The same pulls where readings are a hypertable (its time index serves the probe of
    the tenant-wide pull; the resident's search starts from readings_patient_time)."""
    assert migrate(timescaledb_url).partitioning == "timescaledb"
    seed = seed_database(timescaledb_url)
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        keys = add_many(
            conn,
            prefix="ts",
            n=400,
            device=device_of(conn, seed.alice),
            patient=seed.alice,
            tenant="a",
            start=NOW - timedelta(days=40),
        )
    settings = make_settings(tmp_path, timescaledb_url)
    headers = bearer(settings, Role.INTEGRATION, "a")
    async with api_client(settings) as client:
        found, pull = await pull_all(client, f"{BASE}/Observation?_count=64", headers)
        assert Counter(reading_key_of(o) for o in found) == Counter(
            set(keys) | set(seed.alice_readings)
        )
        mine, _ = await pull_all(client, f"{BASE}/Observation?patient={seed.alice}", headers)
        assert len(mine) == len(found)
        # Nothing new: the next pull is empty (the horizon works on PGlite's server too).
        assert pull is not None
        again, _ = await pull_all(client, pull, headers)
        assert again == []
