"""The commit horizon of incremental pulls (docs/fhir.md, "Incremental pulls").

Every reading's key row carries the id of the transaction that stored it
(reading_keys.stored_xid, migration 0018). Below the *horizon* every writing
transaction has finished, so the readings there are final: nothing will ever commit
below it. A pull returns readings in (stored_xid, key) order up to the horizon, and the
next pull continues from it: a reading committed late (its transaction began first,
committed last) has an id above the horizon of any pull that ran before it committed.

The horizon is the oldest transaction of *this database* still in progress (else the
next id to be given out). The cluster's snapshot alone would do but lag behind any long
transaction of any other database on the server; pg_stat_activity says which of the
in-progress ids are this database's. The snapshot is taken first, in its own
statement: a transaction that starts between the two reads has an id above it anyway.
"""

from __future__ import annotations

from api.db import Conn

_SNAPSHOT_SQL = "SELECT pg_current_snapshot()::text AS snapshot"

# backend_xid is the 32-bit form of the full (xid8) id: compared modulo 2^32.
_LOCAL_IN_PROGRESS_SQL = """
SELECT coalesce(min(x.id::text::numeric), pg_snapshot_xmax(%(s)s::pg_snapshot)::text::numeric)
       AS horizon
FROM pg_snapshot_xip(%(s)s::pg_snapshot) AS x (id)
WHERE (x.id::text::numeric %% 4294967296) IN (
    SELECT a.backend_xid::text::numeric FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL
)
"""


async def horizon(conn: Conn) -> int:
    """The current horizon; call outside a transaction block (each statement its own
    snapshot, pg_stat_activity read fresh)."""
    snap = await (await conn.execute(_SNAPSHOT_SQL)).fetchone()
    assert snap is not None
    row = await (await conn.execute(_LOCAL_IN_PROGRESS_SQL, {"s": snap["snapshot"]})).fetchone()
    assert row is not None
    return int(row["horizon"])
