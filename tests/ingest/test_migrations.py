"""`hemhub migrate` and the partitioning of readings: chosen once, as configured, with
clear errors where the server cannot do what is asked (real PostgreSQL, and the
TimescaleDB server of the `timescaledb_url` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hemhub.cli import EXIT_USAGE, main
from ingest import migrations
from ingest.migrations import MigrationError, migrate, partitioning_in_use
from tests.ingest.test_worker import count

ROOT = Path(__file__).resolve().parents[2]


def _extensions(url: str) -> int:
    with psycopg.connect(url) as conn:
        return count(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")


def _readings_table(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return count(conn, "SELECT count(*) FROM pg_class WHERE relname = 'readings'") == 1


def test_native_asked_for_on_a_timescaledb_server(timescaledb_url: str) -> None:
    """`native` keeps TimescaleDB out even where it is installed; the choice then stays."""
    assert migrate(timescaledb_url, partitioning="native").partitioning == "native"
    assert _extensions(timescaledb_url) == 0
    assert migrate(timescaledb_url, partitioning="auto").partitioning == "native"
    with pytest.raises(MigrationError, match=r"partitioned native, but .*=timescaledb"):
        migrate(timescaledb_url, partitioning="timescaledb")


def test_auto_and_timescaledb_make_a_hypertable_where_installed(timescaledb_url: str) -> None:
    assert migrate(timescaledb_url, partitioning="timescaledb").partitioning == "timescaledb"
    assert _extensions(timescaledb_url) == 1
    assert migrate(timescaledb_url).partitioning == "timescaledb"  # auto: what is there
    with pytest.raises(MigrationError, match=r"partitioned timescaledb, but .*=native"):
        migrate(timescaledb_url, partitioning="native")


def test_timescaledb_asked_for_where_not_installed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "timescaledb_available", lambda conn: False)
    with pytest.raises(MigrationError, match="not installed on this PostgreSQL server"):
        migrate(database_url, partitioning="timescaledb")
    assert not _readings_table(database_url)  # the first migration rolled back whole


@pytest.fixture
def unprivileged_url(database_url: str) -> Iterator[str]:
    """The test's database reached as a role that truly lacks the right to create an
    extension: not a superuser, not the database's owner, no CREATE on the database (even
    a `trusted` extension, as TimescaleDB's is, needs one of those); it may create tables
    in the schema."""
    role = f"hemhub_migrator_{uuid.uuid4().hex[:8]}"
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        conn.execute(f'REVOKE CREATE ON DATABASE "{info["dbname"]}" FROM PUBLIC')
        conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        rights = conn.execute(
            "SELECT r.rolsuper, pg_has_role(%s, d.datdba, 'USAGE'),"
            " has_database_privilege(%s, d.datname, 'CREATE')"
            " FROM pg_roles r, pg_database d WHERE r.rolname = %s AND d.datname = %s",
            (role, role, role, info["dbname"]),
        ).fetchone()
        assert rights == (False, False, False), "the role must truly lack the right"
    info["user"] = role
    try:
        yield psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_installed_extension_that_cannot_be_created_is_a_clear_error(
    unprivileged_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Auto never falls back quietly from an installed TimescaleDB it cannot create (not
    preloaded, no privilege): the partitioning is for the life of the database."""
    # Listed as installed whether or not this server has its files: either way, CREATE
    # EXTENSION by this role fails on the server (permission denied where it is installed).
    monkeypatch.setattr(migrations, "timescaledb_available", lambda conn: True)
    with pytest.raises(MigrationError) as raised:
        migrate(unprivileged_url, partitioning="auto")
    message = str(raised.value)
    assert "installed on this PostgreSQL server but cannot be created" in message
    assert "shared_preload_libraries" in message
    assert "HEMHUB_READINGS_PARTITIONING=native" in message
    assert not _readings_table(unprivileged_url)
    # What the message offers works: the same role, natively partitioned.
    assert migrate(unprivileged_url, partitioning="native").partitioning == "native"


@pytest.fixture
def create_extension_kills_the_connection(database_url: str) -> str:
    """The test's database, where CREATE EXTENSION ends the session with a FATAL error,
    as CREATE EXTENSION timescaledb does where TimescaleDB is installed but not
    preloaded (an event trigger terminates the backend running the command)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION hemhub_test_fatal() RETURNS event_trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);"
            " END $$"
        )
        conn.execute(
            "CREATE EVENT TRIGGER hemhub_test_fatal ON ddl_command_start"
            " WHEN TAG IN ('CREATE EXTENSION') EXECUTE FUNCTION hemhub_test_fatal()"
        )
    return database_url


def test_migrate_keeps_its_one_line_error_when_the_connection_dies(
    create_extension_kills_the_connection: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The FATAL error closes the connection: migrate's clean-up (the advisory lock goes
    with the session) must not raise over the MigrationError that says what to do."""
    monkeypatch.setattr(migrations, "timescaledb_available", lambda conn: True)
    monkeypatch.setenv("HEMHUB_DATABASE_URL", create_extension_kills_the_connection)
    monkeypatch.setenv("HEMHUB_READINGS_PARTITIONING", "auto")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hemhub migrate: the TimescaleDB extension is installed on this")
    assert "terminating connection" in err
    assert "Traceback" not in err and "connection is closed" not in err
    assert err.count("\n") == 1
    assert not _readings_table(create_extension_kills_the_connection)


def test_cli_migrate_reports_a_partitioning_it_cannot_honour(database_url: str) -> None:
    migrate(database_url, partitioning="native")
    env = {
        **os.environ,
        "HEMHUB_DATABASE_URL": database_url,
        "HEMHUB_READINGS_PARTITIONING": "timescaledb",
    }
    done = subprocess.run(
        [sys.executable, "-m", "hemhub.cli", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("hemhub migrate: readings in this database are partitioned")
    assert "Traceback" not in done.stderr
    with psycopg.connect(database_url) as conn:
        assert partitioning_in_use(conn) == "native"


def test_cli_rejects_a_partitioning_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEMHUB_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    monkeypatch.setenv("HEMHUB_READINGS_PARTITIONING", "hypertable")
    assert main(["migrate"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("hemhub: HEMHUB_READINGS_PARTITIONING='hypertable': Input should be")
    assert "Traceback" not in err
