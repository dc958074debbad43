"""Fleet health: the principal's hubs and their devices as their statuses report them,
filtered, and their history (HMC and admin; no clinical values; every answer audited)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import health_queries as q
from api import health_schemas as s
from api.access import Access, not_found, patient_data
from api.auth import Fleet, Principal
from api.db import Conn, DbConn
from api.schemas import Instant
from hemhub.contract import HubId
from ingest.health import BATTERY_LOW

router = APIRouter()

#: How far back a history answer reaches when no `since` is given.
DEFAULT_HISTORY = timedelta(days=30)


def _scope(principal: Principal, params: dict[str, Any]) -> list[str]:
    """The care-unit confinement of a token that names units (fail closed: none, nothing).
    Sets every parameter the statements' CTEs name (None: that filter is not used)."""
    params.setdefault("units", None)
    params.setdefault("battery", None)
    if principal.care_units is None:
        return []
    params["units"] = principal.care_unit_list
    return [q.HUB_IN_UNITS]


@router.get("/api/v1/fleet/hubs", response_model=s.HubList, tags=["fleet health"])
async def list_hubs(
    principal: Fleet,
    conn: DbConn,
    state: Annotated[s.HubState | None, Query(description="online, offline or unknown")] = None,
    offline_for_hours: Annotated[
        float | None, Query(gt=0, le=24 * 3650, description="offline for more than this")
    ] = None,
    battery_low: Annotated[
        bool, Query(description=f"a device at or below `battery_at_most` ({BATTERY_LOW} %)")
    ] = False,
    battery_at_most: Annotated[int, Query(ge=0, le=100)] = BATTERY_LOW,
    care_unit: Annotated[
        uuid.UUID | None, Query(description="hubs serving residents of this care unit")
    ] = None,
    after: Annotated[HubId | None, Query(description="the page after this hub id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> s.HubList:
    """The principal's hubs, by hub id, with their health and their devices' summary."""
    params: dict[str, Any] = {"tenant": principal.tenant, "limit": limit}
    scope = _scope(principal, params)
    if state is not None:
        scope.append(q.FILTERS[state.value])
    if offline_for_hours is not None:
        scope.append(q.FILTERS["offline_for"])
        params["offline_for"] = timedelta(hours=offline_for_hours)
    if battery_low:
        scope.append(q.FILTERS["battery"])
        params["battery"] = battery_at_most
    if care_unit is not None:
        if principal.care_units is not None and care_unit not in principal.care_units:
            params["units"] = []  # a unit outside the token's: nothing
        else:
            params["units"] = [care_unit]
        scope.append(q.HUB_IN_UNITS)
    filters = list(scope)
    if after is not None:
        filters.append(q.FILTERS["after"])
        params["after"] = after
    sql = q.HUB_LIST_SQL.format(filters=" ".join(filters), scope=" ".join(scope))
    detail = {
        k: v
        for k, v in {
            "state": state and state.value,
            "offline_for_hours": offline_for_hours,
            "battery_at_most": battery_at_most if battery_low else None,
            "care_unit": care_unit and str(care_unit),
            "after": after,
        }.items()
        if v is not None
    }
    async with patient_data(conn, principal, "fleet.hubs", "fleet/hubs") as access:
        await conn.execute(q.NO_JIT)
        rows = await (await conn.execute(sql, params)).fetchall()
        hubs = [s.HubHealth.model_validate(r) for r in rows]
        total = int(rows[0]["total"]) if rows else await _total(conn, principal, scope, params)
        await access.record(None, {**detail, "hubs": len(hubs)})
    next_after = hubs[-1].hub_id if len(hubs) == limit else None
    return s.HubList(total=total, hubs=hubs, next_after=next_after)


async def _total(conn: Conn, principal: Principal, scope: list[str], params: dict[str, Any]) -> int:
    """The total of an empty page (a page past the end still says how many matched)."""
    sql = q.HUB_COUNT_SQL.format(scope=" ".join(scope))
    row = await (await conn.execute(sql, params)).fetchone()
    return int(row["n"]) if row else 0


async def _require_hub(access: Access, conn: Conn, hub_id: str) -> s.HubHealth:
    params: dict[str, Any] = {"tenant": access.principal.tenant, "hub": hub_id}
    scope = _scope(access.principal, params)
    row = await (await conn.execute(q.HUB_SQL.format(scope=" ".join(scope)), params)).fetchone()
    if row is None:
        raise access.refuse(not_found("hub"), None, {"outcome": "not_found", "hub_id": hub_id})
    return s.HubHealth.model_validate(row)


@router.get("/api/v1/fleet/hubs/{hub_id}", response_model=s.HubDetail, tags=["fleet health"])
async def get_hub(hub_id: HubId, principal: Fleet, conn: DbConn) -> s.HubDetail:
    """One hub's health and each device its status lists: last session, battery, RSSI,
    firmware, failures, and the error readings of 30 days (counted, no values)."""
    async with patient_data(conn, principal, "fleet.hub", f"fleet/hubs/{hub_id}") as access:
        await conn.execute(q.NO_JIT)
        hub = await _require_hub(access, conn, hub_id)
        cur = await conn.execute(q.HUB_DEVICES_SQL, {"hub": hub_id})
        devices = [s.DeviceHealth.model_validate(r) for r in await cur.fetchall()]
        await access.record(None, {"hub_id": hub_id, "devices": len(devices)})
    return s.HubDetail(hub=hub, device_health=devices)


def _since(since: datetime | None) -> datetime:
    return since if since is not None else datetime.now(UTC) - DEFAULT_HISTORY


@router.get("/api/v1/fleet/hubs/{hub_id}/history", response_model=s.History, tags=["fleet health"])
async def hub_history(
    hub_id: HubId,
    principal: Fleet,
    conn: DbConn,
    since: Annotated[Instant | None, Query(description="default: 30 days ago")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> s.History:
    """The hub's transitions (online, offline, software, config) and samples, newest first."""
    resource = f"fleet/hubs/{hub_id}/history"
    async with patient_data(conn, principal, "fleet.hub_history", resource) as access:
        await _require_hub(access, conn, hub_id)
        cur = await conn.execute(
            q.HUB_HISTORY_SQL, {"hub": hub_id, "since": _since(since), "limit": limit}
        )
        entries = [s.HistoryEntry.model_validate(r) for r in await cur.fetchall()]
        await access.record(None, {"hub_id": hub_id, "entries": len(entries)})
    return s.History(entries=entries)


@router.get(
    "/api/v1/fleet/devices/{device_id}/health-history",
    response_model=s.History,
    tags=["fleet health"],
)
async def device_history(
    device_id: uuid.UUID,
    principal: Fleet,
    conn: DbConn,
    since: Annotated[Instant | None, Query(description="default: 30 days ago")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> s.History:
    """What the principal's hubs reported of the device while it was on their allow-list:
    changes (new, removed, firmware, battery, failures, errors) and samples, newest first."""
    resource = f"fleet/devices/{device_id}/health-history"
    async with patient_data(conn, principal, "fleet.device_history", resource) as access:
        params: dict[str, Any] = {"device": device_id, "tenant": principal.tenant}
        row = await (await conn.execute(q.DEVICE_OF_TENANT_SQL, params)).fetchone()
        if row is None:
            raise access.refuse(not_found("device"), None, {"outcome": "not_found"})
        params.update(address=row["address"], since=_since(since), limit=limit)
        cur = await conn.execute(q.DEVICE_HISTORY_SQL, params)
        entries = [s.HistoryEntry.model_validate(r) for r in await cur.fetchall()]
        await access.record(None, {"device_id": str(device_id), "entries": len(entries)})
    return s.History(entries=entries)
