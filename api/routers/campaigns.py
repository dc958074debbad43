"""Rollouts of the HMC: artifacts of the update repository and campaigns that roll one
out in waves, halted by the health gates (docs/firmware.md). Every call is
confined to the caller's principal and audited."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path

from api import schemas_ota as s
from api.access import fleet_actor, fleet_change
from api.auth import Fleet, Principal
from api.db import DbConn
from hemhub.contract import HUB_ID_PATTERN
from ingest import campaigns
from ingest.fleet_common import Actor

router = APIRouter(tags=["fleet: rollouts"])

CONFLICT: dict[int | str, dict[str, object]] = {
    409: {"description": "not possible in the campaign's state; `detail` says why"}
}


@router.post(
    "/api/v1/ota/artifacts", response_model=s.Artifact, status_code=201, responses=CONFLICT
)
async def register_artifact(principal: Fleet, conn: DbConn, body: s.ArtifactCreate) -> s.Artifact:
    """Register a bundle or firmware image of the update repository for rollouts."""
    async with fleet_change(conn, principal, "ota.artifact.register", "ota/artifacts") as change:
        row = await campaigns.register_artifact(
            conn, fleet_actor(principal), **body.model_dump(exclude_none=True)
        )
        await change.record(
            None, {**body.model_dump(mode="json", exclude_none=True), "id": str(row["id"])}
        )
    return s.Artifact.model_validate(row)


@router.get("/api/v1/ota/artifacts", response_model=list[s.Artifact])
async def list_artifacts(principal: Fleet, conn: DbConn) -> list[s.Artifact]:
    async with fleet_change(conn, principal, "ota.artifacts", "ota/artifacts") as change:
        rows = await campaigns.list_artifacts(conn, principal.tenant)
        await change.record(None, {"count": len(rows)})
    return [s.Artifact.model_validate(r) for r in rows]


@router.post(
    "/api/v1/ota/campaigns", response_model=s.Campaign, status_code=201, responses=CONFLICT
)
async def create_campaign(principal: Fleet, conn: DbConn, body: s.CampaignCreate) -> s.Campaign:
    """A draft campaign: its targets chosen now (the principal's placed hubs, or its
    devices of the firmware's model, narrowed by the selector) and put in waves."""
    fields = body.model_dump(exclude={"window"})
    window = (body.window.start, body.window.end) if body.window else None
    async with fleet_change(conn, principal, "ota.campaign.create", "ota/campaigns") as change:
        row = await campaigns.create_campaign(conn, fleet_actor(principal), window=window, **fields)
        await change.record(
            None, {**body.model_dump(mode="json", exclude_none=True), "id": str(row["id"])}
        )
    return s.Campaign.model_validate(row)


@router.get("/api/v1/ota/campaigns", response_model=list[s.Campaign])
async def list_campaigns(principal: Fleet, conn: DbConn) -> list[s.Campaign]:
    async with fleet_change(conn, principal, "ota.campaigns", "ota/campaigns") as change:
        rows = await campaigns.list_campaigns(conn, principal.tenant)
        await change.record(None, {"count": len(rows)})
    return [s.Campaign.model_validate(r) for r in rows]


@router.get("/api/v1/ota/campaigns/{campaign_id}", response_model=s.Campaign)
async def get_campaign(campaign_id: uuid.UUID, principal: Fleet, conn: DbConn) -> s.Campaign:
    async with fleet_change(
        conn, principal, "ota.campaign.read", f"ota/campaigns/{campaign_id}"
    ) as change:
        row = await campaigns.get_campaign(conn, principal.tenant, campaign_id)
        await change.record(None)
    return s.Campaign.model_validate(row)


@router.get("/api/v1/ota/campaigns/{campaign_id}/targets", response_model=list[s.CampaignTarget])
async def campaign_targets(
    campaign_id: uuid.UUID, principal: Fleet, conn: DbConn
) -> list[s.CampaignTarget]:
    """Each hub's and device's state in the campaign and the progress it reports."""
    resource = f"ota/campaigns/{campaign_id}/targets"
    async with fleet_change(conn, principal, "ota.campaign.targets", resource) as change:
        rows = await campaigns.campaign_targets(conn, principal.tenant, campaign_id)
        await change.record(None, {"count": len(rows)})
    return [s.CampaignTarget.model_validate(r) for r in rows]


@router.get("/api/v1/ota/campaigns/{campaign_id}/events", response_model=list[s.CampaignEvent])
async def campaign_events(
    campaign_id: uuid.UUID, principal: Fleet, conn: DbConn
) -> list[s.CampaignEvent]:
    """Every step of the campaign: who (a subject, or the engine), when and why."""
    resource = f"ota/campaigns/{campaign_id}/events"
    async with fleet_change(conn, principal, "ota.campaign.events", resource) as change:
        rows = await campaigns.campaign_events(conn, principal.tenant, campaign_id)
        await change.record(None, {"count": len(rows)})
    return [s.CampaignEvent.model_validate(r) for r in rows]


async def _campaign_action(
    conn: DbConn,
    principal: Principal,
    campaign_id: uuid.UUID,
    verb: str,
    act: Callable[[Actor], Awaitable[dict[str, Any]]],
    detail: dict[str, Any] | None = None,
) -> s.Campaign:
    """One audited action on a campaign (start, pause, resume, cancel, roll back)."""
    resource = f"ota/campaigns/{campaign_id}"
    async with fleet_change(conn, principal, f"ota.campaign.{verb}", resource) as change:
        row = await act(fleet_actor(principal))
        await change.record(None, detail)
    return s.Campaign.model_validate(row)


@router.post(
    "/api/v1/ota/campaigns/{campaign_id}/start", response_model=s.Campaign, responses=CONFLICT
)
async def start(campaign_id: uuid.UUID, principal: Fleet, conn: DbConn) -> s.Campaign:
    return await _campaign_action(
        conn, principal, campaign_id, "start", lambda a: campaigns.start(conn, a, campaign_id)
    )


@router.post(
    "/api/v1/ota/campaigns/{campaign_id}/pause", response_model=s.Campaign, responses=CONFLICT
)
async def pause(
    campaign_id: uuid.UUID, principal: Fleet, conn: DbConn, body: s.PauseBody
) -> s.Campaign:
    return await _campaign_action(
        conn,
        principal,
        campaign_id,
        "pause",
        lambda a: campaigns.pause(conn, a, campaign_id, body.reason),
        {"reason": body.reason},
    )


@router.post(
    "/api/v1/ota/campaigns/{campaign_id}/resume", response_model=s.Campaign, responses=CONFLICT
)
async def resume(campaign_id: uuid.UUID, principal: Fleet, conn: DbConn) -> s.Campaign:
    """Go on past a pause; the targets that failed stay failed (not asked again)."""
    return await _campaign_action(
        conn, principal, campaign_id, "resume", lambda a: campaigns.resume(conn, a, campaign_id)
    )


@router.post(
    "/api/v1/ota/campaigns/{campaign_id}/cancel", response_model=s.Campaign, responses=CONFLICT
)
async def cancel(
    campaign_id: uuid.UUID, principal: Fleet, conn: DbConn, body: s.ReasonBody
) -> s.Campaign:
    return await _campaign_action(
        conn,
        principal,
        campaign_id,
        "cancel",
        lambda a: campaigns.cancel(conn, a, campaign_id, body.reason),
        body.model_dump(exclude_none=True),
    )


@router.post(
    "/api/v1/ota/campaigns/{campaign_id}/rollback", response_model=s.Campaign, responses=CONFLICT
)
async def rollback(
    campaign_id: uuid.UUID, principal: Fleet, conn: DbConn, body: s.ReasonBody
) -> s.Campaign:
    """Every target asked so far goes back to the version it ran before."""
    return await _campaign_action(
        conn,
        principal,
        campaign_id,
        "rollback",
        lambda a: campaigns.rollback(conn, a, campaign_id, body.reason),
        body.model_dump(exclude_none=True),
    )


@router.put("/api/v1/hubs/{hub_id}/time-zone", response_model=s.HubTimeZoneOut)
async def set_hub_time_zone(
    hub_id: Annotated[str, Path(pattern=HUB_ID_PATTERN)],
    principal: Fleet,
    conn: DbConn,
    body: s.HubTimeZone,
) -> s.HubTimeZoneOut:
    """The time zone of the hub's home: a campaign's window is in its local time."""
    async with fleet_change(conn, principal, "hub.time_zone", f"hubs/{hub_id}") as change:
        row = await campaigns.set_hub_time_zone(
            conn, fleet_actor(principal), hub_id, body.time_zone
        )
        await change.record(None, body.model_dump())
    return s.HubTimeZoneOut.model_validate(row)
