"""The fleet: readings of the principal's devices that no assignment covered."""

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
