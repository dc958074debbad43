"""The principal's device inventory and each device's life (HMC): register, assign to a
resident through a hub, return, quarantine, stock, repair, retire (ingest.device_life)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import schemas_fleet as s
from api.access import fleet_actor, fleet_change
from api.auth import Fleet
from api.db import DbConn
from api.schemas import MAX_OFFSET
from ingest import inventory
from ingest.device_life import State

router = APIRouter(tags=["fleet: devices"])

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "not possible in the device's state; `detail` says why"}
}


@router.get("/api/v1/devices", response_model=list[s.Device])
async def list_devices(
    principal: Fleet,
    conn: DbConn,
    state: State | None = None,
    product_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[s.Device]:
    """The principal's devices (registered or only seen), by stable id, with the resident
    each serves now (an id, no clinical value)."""
    async with fleet_change(conn, principal, "devices.list", "devices") as change:
        rows = await inventory.list_devices(
            conn, principal.tenant, state=state, product_id=product_id, limit=limit, offset=offset
        )
        await change.record_many(
            (r["patient_id"] for r in rows if r["patient_id"] is not None),
            {"count": len(rows), "state": state and state.value},
        )
    return [s.Device.model_validate(r) for r in rows]


@router.post("/api/v1/devices", response_model=s.Device, status_code=201, responses=CONFLICT)
async def register_device(principal: Fleet, conn: DbConn, body: s.DeviceRegister) -> s.Device:
    """Take a device into the inventory, in stock; one ingest has seen already (same
    stable id) is met; `409` when it is registered already or of another principal."""
    async with fleet_change(conn, principal, "device.register", "devices") as change:
        row = await inventory.register_device(
            conn,
            fleet_actor(principal),
            product_id=body.product_id,
            serial=body.serial,
            address=body.address,
            manufacturer=body.manufacturer,
            model=body.model,
            hardware_revision=body.hardware_revision,
            firmware=body.firmware,
        )
        await change.record(None, {"device_id": str(row["id"]), "stable_id": row["stable_id"]})
    return s.Device.model_validate(row)


@router.get("/api/v1/devices/{device_id}", response_model=s.Device)
async def get_device(device_id: uuid.UUID, principal: Fleet, conn: DbConn) -> s.Device:
    async with fleet_change(conn, principal, "device.read", f"devices/{device_id}") as change:
        row = await inventory.get_device(conn, principal.tenant, device_id)
        await change.record(row["patient_id"])
    return s.Device.model_validate(row)


@router.get("/api/v1/devices/{device_id}/history", response_model=list[s.Change])
async def device_history(device_id: uuid.UUID, principal: Fleet, conn: DbConn) -> list[s.Change]:
    """Every transition of the device: from, to, when, who, why."""
    resource = f"devices/{device_id}/history"
    async with fleet_change(conn, principal, "device.history", resource) as change:
        rows = await inventory.device_history(conn, principal.tenant, device_id)
        await change.record(None, {"transitions": len(rows)})
    return [s.Change.model_validate(r) for r in rows]


@router.post("/api/v1/devices/{device_id}/assign", response_model=s.Device, responses=CONFLICT)
async def assign_device(
    device_id: uuid.UUID, principal: Fleet, conn: DbConn, body: s.DeviceAssign
) -> s.Device:
    """in_stock → assigned: the resident's from `from` (default now), through the hub,
    whose allow-list takes it and which gets its next configuration at once."""
    at = body.from_ or datetime.now(UTC)
    resource = f"devices/{device_id}/assign"
    async with fleet_change(conn, principal, "device.assign", resource) as change:
        await change.require_patient(body.patient_id)
        row = await inventory.assign_device(
            conn,
            fleet_actor(principal),
            device_id,
            patient_id=body.patient_id,
            hub_id=body.hub_id,
            started_at=at,
            reason=body.reason,
        )
        await change.record(body.patient_id, {"hub_id": body.hub_id, "from": at.isoformat()})
    return s.Device.model_validate(row)


@router.post("/api/v1/devices/{device_id}/return", response_model=s.Device, responses=CONFLICT)
async def return_device(
    device_id: uuid.UUID, principal: Fleet, conn: DbConn, body: s.Return
) -> s.Device:
    """assigned → returned: the resident's readings end at `until` (default now); the
    device leaves its hub's allow-list and the hub is asked to wipe it."""
    at = body.until or datetime.now(UTC)
    resource = f"devices/{device_id}/return"
    async with fleet_change(conn, principal, "device.return", resource) as change:
        before = await inventory.get_device(conn, principal.tenant, device_id)
        row = await inventory.return_device(
            conn, fleet_actor(principal), device_id, ended_at=at, reason=body.reason
        )
        await change.record(before["patient_id"], {"until": at.isoformat(), "reason": body.reason})
    return s.Device.model_validate(row)


@router.post("/api/v1/devices/{device_id}/state", response_model=s.Device, responses=CONFLICT)
async def change_state(
    device_id: uuid.UUID, principal: Fleet, conn: DbConn, body: s.StateChange
) -> s.Device:
    """To quarantine, in_stock, repair or retired (`retired_as` lost, broken, scrapped).
    quarantine → in_stock needs a confirmed data reset, or `override` with a reason."""
    resource = f"devices/{device_id}/state"
    async with fleet_change(conn, principal, "device.state", resource) as change:
        before = await inventory.get_device(conn, principal.tenant, device_id)
        row = await inventory.change_state(
            conn,
            fleet_actor(principal),
            device_id,
            to_state=body.to,
            reason=body.reason,
            retired_as=body.retired_as,
            override=body.override,
        )
        await change.record(
            before["patient_id"],
            {"from": before["state"], **body.model_dump(mode="json", exclude_none=True)},
        )
    return s.Device.model_validate(row)
