"""Data resets through the hubs (HMC): ask a hub to wipe a device or itself, and see
what it reported. The commands themselves: ingest/commands.py; the hub: docs/gateway.md."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from api import schemas_commands as s
from api.access import fleet_change, not_found, patient_data
from api.auth import Fleet, Principal
from api.db import Conn, DbConn
from hemhub.contract import HUB_ID_PATTERN
from ingest import commands

router = APIRouter(tags=["fleet: data reset"])

HubPath = Annotated[str, Path(pattern=HUB_ID_PATTERN)]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "the wipe cannot be asked; `detail` says why"}
}

_HUB_OF_TENANT = "SELECT 1 FROM hubs WHERE id = %(hub)s AND tenant_id = %(tenant)s"
_DEVICE_OF_TENANT = "SELECT 1 FROM devices WHERE id = %(device)s AND owner_tenant_id = %(tenant)s"
# The principal's hub that last had the device on its allow-list.
_LAST_HUB = """
SELECT hd.hub_id FROM hub_devices hd JOIN hubs h ON h.id = hd.hub_id
WHERE hd.device_id = %(device)s AND h.tenant_id = %(tenant)s
ORDER BY hd.started_at DESC LIMIT 1
"""


def _answer(outcome: commands.WipeOutcome) -> s.HubCommand:
    return s.HubCommand.model_validate(asdict(outcome))


async def _exists(conn: Conn, sql: str, params: dict[str, Any]) -> bool:
    return await (await conn.execute(sql, params)).fetchone() is not None


def _params(principal: Principal, **more: Any) -> dict[str, Any]:
    return {"tenant": principal.tenant, **more}


@router.post(
    "/api/v1/devices/{device_id}/wipe",
    response_model=s.HubCommand,
    status_code=202,
    responses=CONFLICT,
)
async def wipe_device(
    device_id: uuid.UUID, principal: Fleet, conn: DbConn, body: s.DeviceWipeRequest
) -> s.HubCommand:
    """Ask a hub to erase what the device stores and remove its bond (again, after a
    failed or unsupported one); 202: the hub reports later (`GET .../wipe`)."""
    resource = f"devices/{device_id}/wipe"
    async with fleet_change(conn, principal, "device.wipe_requested", resource) as access:
        if not await _exists(conn, _DEVICE_OF_TENANT, _params(principal, device=device_id)):
            raise access.refuse(not_found("device"), None, {"outcome": "not_found"})
        hub_id = body.hub_id
        if hub_id is None:
            row = await (
                await conn.execute(_LAST_HUB, _params(principal, device=device_id))
            ).fetchone()
            if row is None:
                why = "the device was never on a hub of this principal: name the hub (hub_id)"
                raise access.refuse(HTTPException(409, why), None, {"outcome": "conflict"})
            hub_id = str(row["hub_id"])
        elif not await _exists(conn, _HUB_OF_TENANT, _params(principal, hub=hub_id)):
            raise access.refuse(not_found("hub"), None, {"outcome": "not_found", "hub": hub_id})
        try:
            command_id = await commands.request_device_wipe(
                conn,
                hub_id=hub_id,
                device_id=device_id,
                requested_by=principal.sub,
                profile=body.profile,
            )
        except commands.CommandError as exc:
            detail = {"outcome": "conflict", "reason": str(exc)}
            raise access.refuse(HTTPException(409, str(exc)), None, detail) from exc
        outcome = await commands.get_command(conn, command_id)
        assert outcome is not None
        await access.record(
            None, {"command_id": str(command_id), "hub": hub_id, "profile": outcome.profile}
        )
    return _answer(outcome)


@router.get("/api/v1/devices/{device_id}/wipe", response_model=s.HubCommand)
async def latest_device_wipe(device_id: uuid.UUID, principal: Fleet, conn: DbConn) -> s.HubCommand:
    """The device's latest wipe and what the hub reported (404: never asked)."""
    resource = f"devices/{device_id}/wipe"
    async with patient_data(conn, principal, "device.wipe_viewed", resource) as access:
        if not await _exists(conn, _DEVICE_OF_TENANT, _params(principal, device=device_id)):
            raise access.refuse(not_found("device"), None, {"outcome": "not_found"})
        outcome = await commands.latest_wipe(conn, device_id)
        if outcome is None:
            error = HTTPException(404, "the device was never wiped")
            raise access.refuse(error, None, {"outcome": "never_wiped"})
        await access.record(None, {"command_id": str(outcome.command_id)})
    return _answer(outcome)


@router.post(
    "/api/v1/hubs/{hub_id}/wipe", response_model=s.HubCommand, status_code=202, responses=CONFLICT
)
async def wipe_hub(hub_id: HubPath, principal: Fleet, conn: DbConn) -> s.HubCommand:
    """Ask the hub to erase its outbox, bonds, configuration and credentials and stop
    (a hub taken back); revoke its broker credentials too (`DELETE .../credentials`)."""
    async with fleet_change(conn, principal, "hub.wipe_requested", f"hubs/{hub_id}/wipe") as access:
        if not await _exists(conn, _HUB_OF_TENANT, _params(principal, hub=hub_id)):
            raise access.refuse(not_found("hub"), None, {"outcome": "not_found"})
        command_id = await commands.request_hub_wipe(
            conn, hub_id=hub_id, requested_by=principal.sub
        )
        outcome = await commands.get_command(conn, command_id)
        assert outcome is not None
        await access.record(None, {"command_id": str(command_id)})
    return _answer(outcome)


@router.get("/api/v1/hubs/{hub_id}/commands", response_model=list[s.HubCommand])
async def list_hub_commands(
    hub_id: HubPath,
    principal: Fleet,
    conn: DbConn,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[s.HubCommand]:
    """The hub's commands, newest first, with what it reported."""
    resource = f"hubs/{hub_id}/commands"
    async with patient_data(conn, principal, "hub.commands_viewed", resource) as access:
        if not await _exists(conn, _HUB_OF_TENANT, _params(principal, hub=hub_id)):
            raise access.refuse(not_found("hub"), None, {"outcome": "not_found"})
        listed = await commands.hub_commands(conn, hub_id, limit=limit)
        await access.record(None, {"count": len(listed)})
    return [_answer(c) for c in listed]
