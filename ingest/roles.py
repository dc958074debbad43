"""Least-privilege database roles for the runtime services, granted by `hemhub migrate`.

The owner (the role `hemhub migrate` connects as) owns every table. The API and ingest
run as roles of their own (`HEMHUB_DB_API_ROLE`, `HEMHUB_DB_INGEST_ROLE`), which migrate
creates NOLOGIN when missing, for an operator to grant to login users
(docs/operations.md). At the end of every migrate run each role's privileges are set
afresh on every table of the schema, so tables that later migrations add are covered
without each migration granting:

- the API: SELECT, INSERT, UPDATE on every table; SELECT and INSERT only on `audit_log`
  (it appends and, for the auditors' review, reads back; it never changes a row);
- ingest: SELECT, INSERT, UPDATE on every table but `audit_log` (nothing there);
- neither: anything on `audit_chain_head` (only the chaining trigger, as the owner,
  writes it: ingest/sql/0017_audit_chain.sql);
- both: SELECT only on migrate's bookkeeping (`schema_migrations`, `hemhub_meta`), the
  sequences their inserts draw from, and EXECUTE on what each calls as the owner
  (ingest: `hemhub_ensure_partitions`, which creates monthly partitions ahead, and
  `hemhub_prune_health_history`, the fleet-health history's retention; the API:
  `hemhub_erase_resident`, a resident's erasure, ingest/sql/0024_resident_erasure.sql).

Neither role may DELETE or TRUNCATE anything, or create objects in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

#: Tables only `hemhub migrate` writes.
BOOKKEEPING = frozenset({"schema_migrations", "hemhub_meta"})
AUDIT_LOG = "audit_log"
#: Tables no runtime role touches (written by owner functions only).
OWNER_ONLY = frozenset({"audit_chain_head"})
#: Functions owned by the owner that a runtime role calls (SECURITY DEFINER).
INGEST_FUNCTIONS = (
    ("hemhub_ensure_partitions", "integer"),
    # the fleet-health history's retention (ingest.health, migration 0014)
    ("hemhub_prune_health_history", "interval, interval"),
)
#: ... and those the API calls.
API_FUNCTIONS = (
    # a resident's erasure: deletes and pseudonymises as the owner (migration 0024)
    ("hemhub_erase_resident", "uuid, text, uuid"),
)


class RoleError(RuntimeError):
    """The runtime roles cannot be set up as configured; the message says what to change."""


@dataclass(frozen=True)
class RuntimeRoles:
    api: str | None
    ingest: str | None


def _table_privileges(role: str, table: str) -> tuple[str, ...]:
    if table in BOOKKEEPING:
        return ("SELECT",)
    if table in OWNER_ONLY:
        return ()
    if role == "api":
        return ("SELECT", "INSERT") if table == AUDIT_LOG else ("SELECT", "INSERT", "UPDATE")
    return () if table == AUDIT_LOG else ("SELECT", "INSERT", "UPDATE")


def _ensure_role(conn: psycopg.Connection[Any], name: str, setting: str) -> None:
    """The role exists afterwards: created NOLOGIN if it did not (needs CREATEROLE)."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or str(exc).strip()
        raise RoleError(
            f"{setting}={name}: the role does not exist and cannot be created ({reason});"
            " create it (e.g. CREATE ROLE ... NOLOGIN) or give the migrating role CREATEROLE"
        ) from exc


def _schema_objects(conn: psycopg.Connection[Any]) -> tuple[list[str], list[str]]:
    """The tables (partitions excluded: reached through their parent) and sequences that
    migrations made: in the schema of `schema_migrations`, and not the server's own
    (oid below FirstNormalObjectId, in case that schema is pg_catalog)."""
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c"
        " WHERE c.relnamespace = ("
        "  SELECT relnamespace FROM pg_class WHERE oid = 'schema_migrations'::regclass)"
        " AND c.oid >= 16384"
        " AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT c.relispartition"
        " ORDER BY c.relname"
    ).fetchall()
    tables = [name for name, kind in rows if kind != "S"]
    sequences = [name for name, kind in rows if kind == "S"]
    return tables, sequences


def grant_runtime_roles(conn: psycopg.Connection[Any], roles: RuntimeRoles) -> None:
    """Create the configured runtime roles if missing and set their privileges afresh on
    every table, sequence and owner function of the schema (inside the caller's
    transaction: a failure leaves the privileges as they were)."""
    wanted = {"api": roles.api, "ingest": roles.ingest}
    owner = conn.execute("SELECT current_user").fetchone()
    assert owner is not None
    if roles.api is not None and roles.api == roles.ingest:
        raise RoleError(
            f"HEMHUB_DB_API_ROLE and HEMHUB_DB_INGEST_ROLE are both {roles.api}: the API and"
            " ingest need roles of their own (least privilege)"
        )
    for kind, name in wanted.items():
        if name is None:
            continue
        setting = f"HEMHUB_DB_{kind.upper()}_ROLE"
        if name == owner[0]:
            raise RoleError(
                f"{setting}={name} is the role `hemhub migrate` runs as (the owner): the"
                " runtime roles must be others, or they could alter the audit log's table"
            )
        _ensure_role(conn, name, setting)
        powers = conn.execute(
            "SELECT rolsuper, pg_has_role(%s, current_user, 'USAGE') FROM pg_roles"
            " WHERE rolname = %s",
            (name, name),
        ).fetchone()
        if powers is not None and any(powers):
            raise RoleError(
                f"{setting}={name} is a superuser or a member of the owner"
                f" ({owner[0]}): it would hold every right the grants leave out"
            )
    tables, sequences = _schema_objects(conn)
    where = conn.execute(
        "SELECT n.nspname, current_database() FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = 'schema_migrations'::regclass"
    ).fetchone()
    assert where is not None
    schema, database = where
    for kind, name in wanted.items():
        if name is None:
            continue
        role = sql.Identifier(name)
        # PUBLIC has both by default; granted only where an operator took them away.
        held = conn.execute(
            "SELECT has_database_privilege(%s, current_database(), 'CONNECT')"
            " AND has_database_privilege(%s, current_database(), 'TEMPORARY')",
            (name, name),
        ).fetchone()
        if not (held and held[0]):
            conn.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(database), role
                )
            )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role))
        for table in tables:
            qualified = sql.Identifier(schema, table)
            conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(qualified, role))
            privileges = _table_privileges(kind, table)
            if privileges:
                conn.execute(
                    sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                        sql.SQL(", ").join(sql.SQL(p) for p in privileges), qualified, role
                    )
                )
        for sequence in sequences:
            conn.execute(
                sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(
                    sql.Identifier(schema, sequence), role
                )
            )
        for function, arguments in INGEST_FUNCTIONS if kind == "ingest" else API_FUNCTIONS:
            conn.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION {}({}) TO {}").format(
                    sql.Identifier(schema, function), sql.SQL(arguments), role
                )
            )
