"""The fleet: readings of the principal's devices that were not attributed, and the
security events of its devices."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import queries, schemas
from api.access import patient_data
from api.auth import Fleet
from api.db import DbConn

router = APIRouter()


@router.get("/api/v1/fleet/unattributed", response_model=schemas.Unattributed, tags=["fleet"])
async def list_unattributed(
    principal: Fleet,
    conn: DbConn,
    since: Annotated[schemas.Instant | None, Query(description="measured at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> schemas.Unattributed:
    """Counts per device and hub of readings no assignment covered, for the devices the
    caller's principal owns; no values, never under a resident."""
    filters, params = "", {"tenant": principal.tenant, "limit": limit}
    if since is not None:
        filters, params["since"] = "AND r.measured_at >= %(since)s", since
    async with patient_data(conn, principal, "fleet.unattributed", "fleet/unattributed") as access:
        cur = await conn.execute(queries.UNATTRIBUTED_SQL.format(filters=filters), params)
        rows = await cur.fetchall()
        devices = [schemas.UnattributedDevice.model_validate(r) for r in rows]
        total = int(rows[0]["total"]) if rows else 0
        detail: dict[str, Any] = {
            "devices": len(devices),
            "readings": total,
            "since": since and since.isoformat(),
        }
        await access.record(None, detail)
    return schemas.Unattributed(since=since, total=total, devices=devices)


@router.get("/api/v1/fleet/security-events", response_model=schemas.SecurityEvents, tags=["fleet"])
async def list_security_events(
    principal: Fleet,
    conn: DbConn,
    since: Annotated[schemas.Instant | None, Query(description="recorded at or after")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="events older than this id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> schemas.SecurityEvents:
    """Writes no principal allowed that named the devices of the caller's principal (a
    hub not entitled to them): newest first, a page at a time."""
    clauses, params = [], {"tenant": principal.tenant, "limit": limit + 1}
    if since is not None:
        clauses.append("AND at >= %(since)s")
        params["since"] = since
    if before is not None:
        clauses.append("AND id < %(before)s")
        params["before"] = before
    filters = " ".join(clauses)
    async with patient_data(
        conn, principal, "fleet.security_events", "fleet/security-events"
    ) as access:
        cur = await conn.execute(queries.SECURITY_EVENTS_SQL.format(filters=filters), params)
        rows = await cur.fetchall()
        events = [schemas.SecurityEvent.model_validate(r) for r in rows[:limit]]
        next_before = events[-1].id if len(rows) > limit else None
        await access.record(
            None,
            {
                "events": len(events),
                "since": since and since.isoformat(),
                "before": before,
                "limit": limit,
            },
        )
    return schemas.SecurityEvents(events=events, next_before=next_before)
