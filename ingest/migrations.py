"""Versioned schema migrations (`hemhub migrate`), and the time partitioning of readings.

Migrations are the numbered SQL files in `ingest/sql/`, applied once each in
order, in one transaction each, under an advisory lock so that several workers
starting together do not race. The readings table is created here rather than in SQL
because its shape depends on the server: a TimescaleDB hypertable (with compression
and a retention policy) when the extension is available, native declarative range
partitioning otherwise (`HEMHUB_READINGS_PARTITIONING` can insist on either). The
choice is made once, when readings is created, and recorded in `hemhub_meta`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

from hemhub.settings import PartitioningChoice, get_settings
from ingest.roles import RoleError, RuntimeRoles, grant_runtime_roles

log = logging.getLogger(__name__)

Partitioning = Literal["timescaledb", "native"]

_LOCK_ID = 0x68656D68  # "hemh"

#: Compressed readings are segmented by what their readers ask for: one resident's
#: readings (nurse views, the trend and schedule rules) or one device's (fleet views).
#: A filter on a segment column picks compressed rows by index; on any other column
#: every segment of the chunk is decompressed first.
COMPRESSION_SEGMENT_BY = ("patient_id", "device_id")

READINGS_COLUMNS = """
    measured_at      timestamptz NOT NULL,
    idempotency_key  text NOT NULL,
    hub_id           text NOT NULL,
    device_id        uuid NOT NULL,
    -- NULL when no assignment was active at measured_at (kept, counted, never shown)
    patient_id       uuid,
    tenant_id        text,
    measurement_type text NOT NULL,
    characteristic   text NOT NULL,
    "values"         jsonb NOT NULL,
    status           text[] NOT NULL DEFAULT '{}',
    device_time      timestamp,
    hub_received_at  timestamptz NOT NULL,
    ingested_at      timestamptz NOT NULL DEFAULT now(),
    clock_source     text NOT NULL,
    clock_offset_s   double precision NOT NULL,
    hub_clock_synced boolean NOT NULL,
    -- measured long before it reached us (backlog replay): evaluated, but marked late
    late             boolean NOT NULL DEFAULT false,
    raw              bytea NOT NULL
"""


class MigrationError(RuntimeError):
    """The database cannot be migrated as configured; the message says what to change."""


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    partitioning: Partitioning


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("ingest") / "sql"
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in files]


def timescaledb_available(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


def partitioning_in_use(conn: psycopg.Connection) -> Partitioning:
    """How the readings table of this database is partitioned."""
    row = conn.execute(
        "SELECT value FROM hemhub_meta WHERE key = 'readings_partitioning'"
    ).fetchone()
    if row is None:
        raise RuntimeError("database is not migrated: run `hemhub migrate`")
    return "timescaledb" if row[0] == "timescaledb" else "native"


def _choose_partitioning(conn: psycopg.Connection, choice: PartitioningChoice) -> Partitioning:
    """The partitioning of a new readings table; creates the extension for TimescaleDB.

    An extension that is installed but cannot be created (not in
    shared_preload_libraries, or no privilege) is an error rather than a quiet fallback:
    the choice is for the life of the database.
    """
    if choice == "native":
        return "native"
    if not timescaledb_available(conn):
        if choice == "timescaledb":
            raise MigrationError(
                "HEMHUB_READINGS_PARTITIONING=timescaledb, but the TimescaleDB extension is"
                " not installed on this PostgreSQL server"
            )
        return "native"
    try:
        with conn.transaction():  # a savepoint: the migration's transaction survives
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or str(exc).strip()
        raise MigrationError(
            "the TimescaleDB extension is installed on this PostgreSQL server but cannot be"
            f" created ({reason}). Add timescaledb to shared_preload_libraries and"
            " restart PostgreSQL, or have a superuser run CREATE EXTENSION timescaledb in"
            " this database; or set HEMHUB_READINGS_PARTITIONING=native to partition"
            " readings natively instead"
        ) from exc
    return "timescaledb"


def _create_readings(conn: psycopg.Connection, choice: PartitioningChoice) -> Partitioning:
    mode = _choose_partitioning(conn, choice)
    if mode == "timescaledb":
        conn.execute(f"CREATE TABLE readings ({READINGS_COLUMNS})")
        conn.execute(
            "SELECT create_hypertable('readings', 'measured_at',"
            " chunk_time_interval => interval '7 days')"
        )
        conn.execute(
            "ALTER TABLE readings SET (timescaledb.compress,"
            f" timescaledb.compress_segmentby = '{', '.join(COMPRESSION_SEGMENT_BY)}')"
        )
        conn.execute("SELECT add_compression_policy('readings', interval '30 days')")
        # The retention policy is added by migrate() (also to hypertables made before it).
    else:
        conn.execute(f"CREATE TABLE readings ({READINGS_COLUMNS}) PARTITION BY RANGE (measured_at)")
        # Readings from any time are accepted (device clocks reset to 2000, backlogs of
        # months): monthly partitions are added ahead by ensure_partitions(), and the
        # default partition catches whatever falls outside them.
        conn.execute("CREATE TABLE readings_default PARTITION OF readings DEFAULT")
    conn.execute("CREATE INDEX readings_patient_time ON readings (patient_id, measured_at DESC)")
    conn.execute("CREATE INDEX readings_device_time ON readings (device_id, measured_at DESC)")
    conn.execute(
        "INSERT INTO hemhub_meta (key, value) VALUES ('readings_partitioning', %s)", (mode,)
    )
    return mode


#: Creates the monthly native partitions from last month to `months_ahead` ahead. Owned by
#: the owner and run with its rights (SECURITY DEFINER): only the owner of readings may
#: add partitions to it, and ingest's role runs this job (ingest.roles grants EXECUTE).
_PARTITION_FUNCTION = """
CREATE OR REPLACE FUNCTION hemhub_ensure_partitions(months_ahead integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE m date;
BEGIN
  FOR i IN -1..months_ahead LOOP
    m := (date_trunc('month', now()) + make_interval(months => i))::date;
    IF to_regclass('readings_' || to_char(m, 'YYYY_MM')) IS NULL THEN
      -- Rows of that month already in the default partition must move first.
      CREATE TEMP TABLE _moved ON COMMIT DROP AS
        SELECT * FROM readings_default
        WHERE measured_at >= m AND measured_at < m + interval '1 month';
      DELETE FROM readings_default
        WHERE measured_at >= m AND measured_at < m + interval '1 month';
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
        'readings_' || to_char(m, 'YYYY_MM'), m, m + interval '1 month');
      INSERT INTO readings SELECT * FROM _moved;
      DROP TABLE _moved;
    END IF;
  END LOOP;
END $$
"""


def _install_partition_function(conn: psycopg.Connection) -> None:
    """(Re)create `hemhub_ensure_partitions`, callable only by the owner and the roles
    ingest.roles grants it to."""
    row = conn.execute("SELECT quote_ident(current_schema())").fetchone()
    assert row is not None
    conn.execute(_PARTITION_FUNCTION.replace("{schema}", row[0]))  # type: ignore[arg-type,unused-ignore]
    conn.execute("REVOKE ALL ON FUNCTION hemhub_ensure_partitions(integer) FROM PUBLIC")


def ensure_partitions(conn: psycopg.Connection, months_ahead: int = 3) -> None:
    """Create the monthly native partitions from last month to `months_ahead` ahead."""
    if partitioning_in_use(conn) != "native":
        return
    conn.execute("SELECT hemhub_ensure_partitions(%s)", (int(months_ahead),))


def compression_segments(conn: psycopg.Connection) -> tuple[str, ...]:
    """TimescaleDB: the columns compressed readings are segmented by, in order."""
    return tuple(
        r[0]
        for r in conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'readings' AND segmentby_column_index IS NOT NULL"
            " ORDER BY segmentby_column_index"
        )
    )


def ensure_compression_segments(conn: psycopg.Connection) -> None:
    """TimescaleDB: segment the compressed readings of a hypertable made before by
    COMPRESSION_SEGMENT_BY (its chunks compressed from now on follow; TimescaleDB before
    2.14 refuses while compressed chunks exist: that is logged, not fatal)."""
    current = compression_segments(conn)
    if current == COMPRESSION_SEGMENT_BY:
        return
    wanted = ", ".join(COMPRESSION_SEGMENT_BY)
    try:
        with conn.transaction():
            conn.execute(f"ALTER TABLE readings SET (timescaledb.compress_segmentby = '{wanted}')")
    except psycopg.Error as exc:
        log.warning(
            "readings compression stays segmented by %s, not %s: %s",
            ", ".join(current),
            wanted,
            exc.diag.message_primary or exc,
        )


def add_retention_policy(conn: psycopg.Connection, years: int) -> None:
    """TimescaleDB: drop chunks of readings older than `years` (no-op if a policy exists)."""
    conn.execute(
        "SELECT add_retention_policy('readings', %s::interval, if_not_exists => true)",
        (f"{int(years)} years",),
    )


def migrate(
    database_url: str,
    *,
    retention_years: int | None = None,
    partitioning: PartitioningChoice | None = None,
    roles: RuntimeRoles | None = None,
) -> MigrationReport:
    """Apply every migration not yet applied; return what was applied and the partitioning.

    `retention_years` (default: the `HEMHUB_READINGS_RETENTION_YEARS` setting) becomes a
    TimescaleDB retention policy on readings; native partitioning keeps every reading.
    `partitioning` (default: `HEMHUB_READINGS_PARTITIONING`) is used when readings is
    created; for an existing table, a choice other than "auto" must match it. `roles`
    (default: `HEMHUB_DB_API_ROLE`, `HEMHUB_DB_INGEST_ROLE`) get their least privileges
    afresh on every table at the end of each run (ingest.roles). Raises
    MigrationError when the database cannot be migrated as asked.
    """
    settings = get_settings()
    if retention_years is None:
        retention_years = settings.readings_retention_years
    if partitioning is None:
        partitioning = settings.readings_partitioning
    if roles is None:
        roles = RuntimeRoles(api=settings.db_api_role, ingest=settings.db_ingest_role)
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            if "0001_core" in done and partitioning != "auto":
                existing = partitioning_in_use(conn)
                if existing != partitioning:
                    raise MigrationError(
                        f"readings in this database are partitioned {existing}, but"
                        f" HEMHUB_READINGS_PARTITIONING={partitioning}: the partitioning is"
                        " chosen when readings is created and does not change; set it to"
                        f" {existing} or auto"
                    )
            for version, sql in _migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)  # type: ignore[arg-type,unused-ignore]
                    if version == "0001_core":
                        conn.execute(
                            "CREATE TABLE hemhub_meta (key text PRIMARY KEY, value text NOT NULL)"
                        )
                        _create_readings(conn, partitioning)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
                log.info("applied migration %s", version)
            with conn.transaction():
                _install_partition_function(conn)
                ensure_partitions(conn)
            mode = partitioning_in_use(conn)
            if mode == "timescaledb":
                with conn.transaction():
                    add_retention_policy(conn, retention_years)
                    ensure_compression_segments(conn)
            with conn.transaction():
                grant_runtime_roles(conn, roles)
        except RoleError as exc:
            raise MigrationError(str(exc)) from exc
        finally:
            # A connection the server ended (a FATAL error: an extension that must be
            # preloaded) took its lock with it; unlocking it would only raise "the
            # connection is closed" over the error that says what happened.
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    log.info("readings partitioning: %s", mode)
    return MigrationReport(applied=applied, partitioning=mode)
