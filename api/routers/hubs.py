"""The principal's hubs (HMC): register, broker credentials (shown once), placement at a
resident's home, return, their life, and the retained configuration versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api import schemas_fleet as s
from api.access import fleet_actor, fleet_change
from api.auth import Fleet
from api.db import DbConn
from api.schemas import MAX_OFFSET
from hemhub.contract import HUB_ID_PATTERN
from ingest import hub_fleet
from ingest.device_life import State

router = APIRouter(tags=["fleet: hubs"])

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "not possible in the hub's state; `detail` says why"}
}
HubPath = Annotated[str, Path(pattern=HUB_ID_PATTERN)]


@router.get("/api/v1/hubs", response_model=list[s.Hub])
async def list_hubs(
    principal: Fleet,
    conn: DbConn,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[s.Hub]:
    """The principal's hubs with the configuration version wanted and confirmed."""
    async with fleet_change(conn, principal, "hubs.list", "hubs") as change:
        rows = await hub_fleet.list_hubs(
            conn, principal.tenant, state=state, limit=limit, offset=offset
        )
        await change.record_many(
            (r["patient_id"] for r in rows if r["patient_id"] is not None), {"count": len(rows)}
        )
    return [s.Hub.model_validate(r) for r in rows]


@router.post("/api/v1/hubs", response_model=s.Hub, status_code=201, responses=CONFLICT)
async def register_hub(principal: Fleet, conn: DbConn, body: s.HubRegister) -> s.Hub:
    """Register a hub (its id is its broker user name), in stock."""
    async with fleet_change(conn, principal, "hub.register", f"hubs/{body.id}") as change:
        row = await hub_fleet.register_hub(
            conn, fleet_actor(principal), body.id, product_id=body.product_id, serial=body.serial
        )
        await change.record(None, body.model_dump(mode="json", exclude_none=True))
    return s.Hub.model_validate(row)


@router.get("/api/v1/hubs/{hub_id}", response_model=s.Hub)
async def get_hub(hub_id: HubPath, principal: Fleet, conn: DbConn) -> s.Hub:
    """The hub: state, placement, credentials, and "config version wanted / confirmed"."""
    async with fleet_change(conn, principal, "hub.read", f"hubs/{hub_id}") as change:
        row = await hub_fleet.get_hub(conn, principal.tenant, hub_id)
        await change.record(row["patient_id"])
    return s.Hub.model_validate(row)


@router.get("/api/v1/hubs/{hub_id}/history", response_model=list[s.Change])
async def hub_history(hub_id: HubPath, principal: Fleet, conn: DbConn) -> list[s.Change]:
    async with fleet_change(conn, principal, "hub.history", f"hubs/{hub_id}/history") as change:
        rows = await hub_fleet.hub_history(conn, principal.tenant, hub_id)
        await change.record(None, {"transitions": len(rows)})
    return [s.Change.model_validate(r) for r in rows]


@router.get("/api/v1/hubs/{hub_id}/configs", response_model=list[s.HubConfigIssued])
async def hub_configs(
    hub_id: HubPath,
    principal: Fleet,
    conn: DbConn,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[s.HubConfigIssued]:
    """The configurations issued to the hub, newest first."""
    async with fleet_change(conn, principal, "hub.configs", f"hubs/{hub_id}/configs") as change:
        rows = await hub_fleet.configs(conn, principal.tenant, hub_id, limit)
        await change.record(None, {"configs": len(rows)})
    return [s.HubConfigIssued.model_validate(r) for r in rows]


@router.post(
    "/api/v1/hubs/{hub_id}/credentials",
    response_model=s.Credentials,
    status_code=201,
    responses=CONFLICT,
)
async def issue_credentials(hub_id: HubPath, principal: Fleet, conn: DbConn) -> s.Credentials:
    """A broker password for the hub, shown once (only its hash is kept); `409` while the
    hub has live credentials."""
    resource = f"hubs/{hub_id}/credentials"
    async with fleet_change(conn, principal, "hub.credentials.issue", resource) as change:
        password, row = await hub_fleet.issue_credentials(conn, fleet_actor(principal), hub_id)
        await change.record(None, {"credential_id": str(row["id"])})
    return s.Credentials(
        hub_id=hub_id, username=hub_id, password=password, issued_at=row["issued_at"]
    )


@router.delete("/api/v1/hubs/{hub_id}/credentials", response_model=s.Revoked, responses=CONFLICT)
async def revoke_credentials(
    hub_id: HubPath,
    principal: Fleet,
    conn: DbConn,
    reason: Annotated[str | None, Query(min_length=1, max_length=2000)] = None,
) -> s.Revoked:
    """Revoke the hub's live credentials (the broker refuses it from its next reload)."""
    resource = f"hubs/{hub_id}/credentials"
    async with fleet_change(conn, principal, "hub.credentials.revoke", resource) as change:
        row = await hub_fleet.revoke_credentials(
            conn, fleet_actor(principal), hub_id, reason=reason
        )
        await change.record(None, {"credential_id": str(row["id"]), "reason": reason})
    return s.Revoked(hub_id=hub_id, issued_at=row["issued_at"], revoked_at=row["revoked_at"])


@router.post("/api/v1/hubs/{hub_id}/place", response_model=s.Hub, responses=CONFLICT)
async def place_hub(hub_id: HubPath, principal: Fleet, conn: DbConn, body: s.HubPlace) -> s.Hub:
    """in_stock → assigned: the hub stands at the resident's home from `from` (default now)."""
    at = body.from_ or datetime.now(UTC)
    async with fleet_change(conn, principal, "hub.place", f"hubs/{hub_id}/place") as change:
        await change.require_patient(body.patient_id)
        row = await hub_fleet.place_hub(
            conn,
            fleet_actor(principal),
            hub_id,
            patient_id=body.patient_id,
            started_at=at,
            reason=body.reason,
        )
        await change.record(body.patient_id, {"from": at.isoformat()})
    return s.Hub.model_validate(row)


@router.post("/api/v1/hubs/{hub_id}/return", response_model=s.Hub, responses=CONFLICT)
async def return_hub(hub_id: HubPath, principal: Fleet, conn: DbConn, body: s.Return) -> s.Hub:
    """assigned → returned: the placement ends, the broker credentials are revoked and the
    hub is asked to wipe its outbox, bonds and credentials. Return its devices first."""
    at = body.until or datetime.now(UTC)
    async with fleet_change(conn, principal, "hub.return", f"hubs/{hub_id}/return") as change:
        before = await hub_fleet.get_hub(conn, principal.tenant, hub_id)
        row = await hub_fleet.return_hub(
            conn, fleet_actor(principal), hub_id, ended_at=at, reason=body.reason
        )
        await change.record(before["patient_id"], {"until": at.isoformat(), "reason": body.reason})
    return s.Hub.model_validate(row)


@router.post("/api/v1/hubs/{hub_id}/state", response_model=s.Hub, responses=CONFLICT)
async def change_hub_state(
    hub_id: HubPath, principal: Fleet, conn: DbConn, body: s.StateChange
) -> s.Hub:
    """To quarantine, in_stock (after quarantine: `override` with a reason), repair or retired."""
    async with fleet_change(conn, principal, "hub.state", f"hubs/{hub_id}/state") as change:
        row = await hub_fleet.change_hub_state(
            conn,
            fleet_actor(principal),
            hub_id,
            to_state=body.to,
            reason=body.reason,
            retired_as=body.retired_as,
            override=body.override,
        )
        await change.record(None, body.model_dump(mode="json", exclude_none=True))
    return s.Hub.model_validate(row)
