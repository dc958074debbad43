"""Rollout campaigns of the HMC (async): artifacts, campaigns, their targets and steps.

A campaign rolls one artifact (a hub software bundle, or one device model's firmware
image) out to the targets its selector chose at creation (principal: the caller's; care
unit, model, hardware revision, current version), in waves. `tick` runs the campaign's
decision (`ingest.campaign_engine.decide`) on what the hubs report and carries it out;
the desired state travels in each hub's retained configuration
(`ingest.hub_fleet.issue_config`, `ingest.desired_state`). Every step is recorded in
`ota_campaign_events` with who (a subject, or `engine`) and why.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg import errors
from psycopg.types.json import Jsonb

from ingest import hub_fleet
from ingest.campaign_engine import (
    Action,
    Campaign,
    CampaignState,
    Plan,
    Target,
    TargetState,
    assign_waves,
    decide,
    in_window,
)
from ingest.fleet_common import AConn, Actor, Conflict, FleetError, NotFound
from ingest.fleet_common import all_rows as _all
from ingest.fleet_common import one as _one
from ingest.health import ERROR_READING_SQL

log = logging.getLogger(__name__)

ENGINE = "engine"
#: A confirmed target silent for longer than this fails the gate, unless the campaign
#: says otherwise: a hub reports its status every minute; a sleepy device is seen only
#: when its resident uses it, at least daily in a self-monitoring programme.
DEFAULT_SILENCE_WINDOW_S = {"hub_software": 900, "device_firmware": 86400}
#: One API replica at a time runs the campaigns (advisory lock).
TICK_LOCK = 0x68656D6F  # "hemo"

# --- artifacts -------------------------------------------------------------------------------


async def register_artifact(
    conn: AConn,
    actor: Actor,
    *,
    kind: str,
    version: str,
    target: str,
    product_id: uuid.UUID | None = None,
    sha256: str | None = None,
    length: int | None = None,
    notes: str | None = None,
) -> dict[str, Any]:
    """An artifact of the update repository the principal may roll out. Firmware names
    the product (device model) it is for; hub software names none."""
    if (kind == "device_firmware") != (product_id is not None):
        raise FleetError("device firmware names its product (model); hub software names none")
    if "/" in target:
        # The repository publishes, and the hub's verified fetch asks for, plain names.
        raise FleetError(f"target {target!r}: a plain file name, as the repository publishes it")
    if product_id is not None:
        product = await _one(
            conn,
            "SELECT kind FROM products WHERE id = %s AND tenant_id = %s",
            (product_id, actor.tenant),
        )
        if product is None:
            raise NotFound("product not found")
        if product["kind"] == "hub":
            raise FleetError("the product is a hub: its software is kind hub_software")
    try:
        async with conn.transaction():
            row = await _one(
                conn,
                "INSERT INTO ota_artifacts (tenant_id, kind, version, target, product_id,"
                " sha256, length, notes, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING *",
                (
                    actor.tenant,
                    kind,
                    version,
                    target,
                    product_id,
                    sha256,
                    length,
                    notes,
                    actor.subject,
                ),
            )
    except errors.UniqueViolation as exc:
        raise Conflict(f"{kind} version {version} is registered already") from exc
    except errors.ForeignKeyViolation as exc:
        raise Conflict("the principal is not registered") from exc
    assert row is not None
    return row


async def list_artifacts(conn: AConn, tenant: str) -> list[dict[str, Any]]:
    return await _all(
        conn, "SELECT * FROM ota_artifacts WHERE tenant_id = %s ORDER BY created_at, id", (tenant,)
    )


async def set_hub_time_zone(
    conn: AConn, actor: Actor, hub_id: str, time_zone: str | None
) -> dict[str, Any]:
    """The home's time zone of a hub (a campaign's window is in it); None: the campaign's."""
    if time_zone is not None:
        _zone(time_zone)
    row = await _one(
        conn,
        "UPDATE hubs SET time_zone = %s WHERE id = %s AND tenant_id = %s"
        " RETURNING id AS hub_id, time_zone",
        (time_zone, hub_id, actor.tenant),
    )
    if row is None:
        raise NotFound("hub not found")
    return row


# --- campaigns -------------------------------------------------------------------------------

CAMPAIGN_SQL = """
SELECT c.*, a.kind, a.version, a.target, a.product_id,
       (SELECT count(*)::int FROM ota_campaign_targets t WHERE t.campaign_id = c.id) AS targets,
       (SELECT jsonb_object_agg(s.state, s.n) FROM (
            SELECT t.state, count(*)::int AS n FROM ota_campaign_targets t
            WHERE t.campaign_id = c.id GROUP BY t.state) s) AS target_states
FROM ota_campaigns c JOIN ota_artifacts a ON a.id = c.artifact_id
WHERE c.tenant_id = %(tenant)s
"""

#: A target already waiting or under way in another open campaign is not chosen again.
BUSY_SQL = """
  AND NOT EXISTS (
    SELECT 1 FROM ota_campaign_targets bt JOIN ota_campaigns bc ON bc.id = bt.campaign_id
    WHERE bt.hub_id = {hub} AND bt.address = {address}
      AND bc.state IN ('draft', 'running', 'paused', 'rolling_back')
      AND bt.state IN ('pending', 'issued', 'rolled_back'))
"""

#: Hubs of the principal a hub software campaign may choose: placed (in a home).
HUB_TARGETS_SQL = (
    """
SELECT h.id AS hub_id, '' AS address, h.software_version AS running
FROM hubs h
WHERE h.tenant_id = %(tenant)s AND h.state = 'assigned'
  AND (%(product)s::uuid IS NULL OR h.product_id = %(product)s::uuid)
  AND (%(current)s::text IS NULL OR h.software_version = %(current)s::text)
  AND (%(unit)s::uuid IS NULL OR h.id IN (
        SELECT hp.hub_id FROM hub_placements hp JOIN patients p ON p.id = hp.patient_id
        WHERE hp.ended_at IS NULL AND p.care_unit_id = %(unit)s::uuid))
  AND h.software_version IS DISTINCT FROM %(version)s
"""
    + BUSY_SQL.format(hub="h.id", address="''")
    + "ORDER BY h.id"
)

#: Devices of the artifact's model on the open allow-list of a hub of the principal.
DEVICE_TARGETS_SQL = (
    """
SELECT hd.hub_id, upper(d.address) AS address, coalesce(dh.firmware, d.firmware) AS running
FROM devices d
JOIN hub_devices hd ON hd.device_id = d.id AND hd.ended_at IS NULL
JOIN hubs h ON h.id = hd.hub_id AND h.tenant_id = %(tenant)s
LEFT JOIN hub_device_health dh ON dh.hub_id = hd.hub_id AND dh.address = upper(d.address)
WHERE d.product_id = %(model)s AND d.state = 'assigned'
  AND (%(revision)s::text IS NULL OR d.hardware_revision = %(revision)s::text)
  AND (%(current)s::text IS NULL OR coalesce(dh.firmware, d.firmware) = %(current)s::text)
  AND (%(unit)s::uuid IS NULL OR d.id IN (
        SELECT da.device_id FROM device_assignments da JOIN patients p ON p.id = da.patient_id
        WHERE da.ended_at IS NULL AND p.care_unit_id = %(unit)s::uuid))
  AND coalesce(dh.firmware, d.firmware) IS DISTINCT FROM %(version)s
"""
    + BUSY_SQL.format(hub="hd.hub_id", address="upper(d.address)")
    + "ORDER BY hd.hub_id, d.address"
)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FleetError(f"unknown time zone {name!r}") from exc


def _order(campaign_id: uuid.UUID, key: str) -> str:
    return hashlib.sha256(f"{campaign_id}|{key}".encode()).hexdigest()


async def _event(
    conn: AConn, campaign_id: uuid.UUID, by: str, kind: str, detail: dict[str, Any] | None
) -> None:
    await conn.execute(
        "INSERT INTO ota_campaign_events (campaign_id, by_subject, kind, detail)"
        " VALUES (%s, %s, %s, %s)",
        (campaign_id, by, kind, Jsonb(detail) if detail else None),
    )


async def create_campaign(
    conn: AConn,
    actor: Actor,
    *,
    name: str,
    artifact_id: uuid.UUID,
    waves: list[int],
    max_parallel: int,
    confirm_timeout_s: int,
    margin_failed_sessions: int,
    margin_error_readings: int,
    silence_window_s: int | None = None,
    window: tuple[time, time] | None = None,
    time_zone: str = "UTC",
    care_unit_id: uuid.UUID | None = None,
    model: uuid.UUID | None = None,
    hardware_revision: str | None = None,
    current_version: str | None = None,
) -> dict[str, Any]:
    """A draft campaign with its targets chosen now and put in waves (Conflict: none)."""
    _zone(time_zone)
    if not waves or any(not 0 < w <= 100 for w in waves) or waves != sorted(set(waves)):
        raise FleetError("waves are increasing cumulative percentages in 1..100, e.g. 1,10,50,100")
    if waves[-1] != 100:
        raise FleetError("the last wave is 100 (all targets)")
    artifact = await _one(
        conn,
        "SELECT * FROM ota_artifacts WHERE id = %s AND tenant_id = %s",
        (artifact_id, actor.tenant),
    )
    if artifact is None:
        raise NotFound("artifact not found")
    params: dict[str, Any] = {
        "tenant": actor.tenant,
        "unit": care_unit_id,
        "current": current_version,
        "version": artifact["version"],
        "revision": hardware_revision,
    }
    if care_unit_id is not None and (
        await _one(
            conn,
            "SELECT 1 AS x FROM care_units WHERE id = %s AND tenant_id = %s",
            (care_unit_id, actor.tenant),
        )
        is None
    ):
        raise NotFound("care unit not found")
    if artifact["kind"] == "hub_software":
        if hardware_revision is not None:
            raise FleetError("hubs have no hardware revision on record: filter by model")
        rows = await _all(conn, HUB_TARGETS_SQL, {**params, "product": model})
    else:
        if model is not None and model != artifact["product_id"]:
            raise FleetError("the firmware is for another model than the one asked")
        rows = await _all(conn, DEVICE_TARGETS_SQL, {**params, "model": artifact["product_id"]})
    if not rows:
        raise Conflict(
            "no hub or device of the principal matches the campaign's selector (those in"
            " another open campaign are left out)"
        )
    selector = {
        k: str(v) if isinstance(v, uuid.UUID) else v
        for k, v in {
            "care_unit_id": care_unit_id,
            "model": model,
            "hardware_revision": hardware_revision,
            "current_version": current_version,
        }.items()
        if v is not None
    }
    async with conn.transaction():
        campaign = await _one(
            conn,
            "INSERT INTO ota_campaigns (tenant_id, name, artifact_id, selector, waves,"
            " window_start, window_end, time_zone, max_parallel, confirm_timeout_s,"
            " margin_failed_sessions, margin_error_readings, silence_window_s, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                actor.tenant,
                name,
                artifact_id,
                Jsonb(selector),
                waves,
                window[0] if window else None,
                window[1] if window else None,
                time_zone,
                max_parallel,
                confirm_timeout_s,
                margin_failed_sessions,
                margin_error_readings,
                silence_window_s or DEFAULT_SILENCE_WINDOW_S[artifact["kind"]],
                actor.subject,
            ),
        )
        assert campaign is not None
        cid = campaign["id"]
        keys = {f"{r['hub_id']}|{r['address']}": r for r in rows}
        ordered = sorted(keys, key=lambda k: _order(cid, k))
        wave_of = assign_waves(ordered, waves)
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO ota_campaign_targets (campaign_id, hub_id, address, wave,"
                " from_version) VALUES (%s, %s, %s, %s, %s)",
                [
                    (cid, keys[k]["hub_id"], keys[k]["address"], wave_of[k], keys[k]["running"])
                    for k in ordered
                ],
            )
        await _event(conn, cid, actor.subject, "created", {"targets": len(rows), **selector})
    return await get_campaign(conn, actor.tenant, cid)


async def get_campaign(conn: AConn, tenant: str, campaign_id: uuid.UUID) -> dict[str, Any]:
    row = await _one(
        conn, CAMPAIGN_SQL + " AND c.id = %(id)s", {"tenant": tenant, "id": campaign_id}
    )
    if row is None:
        raise NotFound("campaign not found")
    return row


async def list_campaigns(conn: AConn, tenant: str) -> list[dict[str, Any]]:
    return await _all(conn, CAMPAIGN_SQL + " ORDER BY c.created_at DESC", {"tenant": tenant})


TARGETS_SQL = """
SELECT t.hub_id, t.address, t.wave, t.state, t.from_version, t.issued_at, t.finished_at,
       t.reason, t.baseline, h.online, h.time_zone,
       CASE WHEN t.address = '' THEN h.software_version ELSE dh.firmware END AS running,
       CASE WHEN t.address = '' THEN h.last_status->'software_update'
            ELSE (SELECT d->'firmware_update' FROM jsonb_array_elements(
                      CASE WHEN jsonb_typeof(h.last_status->'devices') = 'array'
                           THEN h.last_status->'devices' ELSE '[]'::jsonb END) d
                  WHERE upper(d->>'address') = t.address LIMIT 1) END AS progress,
       CASE WHEN t.address = '' THEN h.last_seen_at
            ELSE (SELECT greatest((d->>'last_seen_at')::timestamptz,
                                  (d->>'last_reading_at')::timestamptz)
                  FROM jsonb_array_elements(
                      CASE WHEN jsonb_typeof(h.last_status->'devices') = 'array'
                           THEN h.last_status->'devices' ELSE '[]'::jsonb END) d
                  WHERE upper(d->>'address') = t.address LIMIT 1) END AS last_report_at,
       (SELECT jsonb_object_agg(x.address, x.sessions_failed) FROM hub_device_health x
        WHERE x.hub_id = t.hub_id AND x.listed
          AND (t.address = '' OR x.address = t.address)) AS sessions_failed
FROM ota_campaign_targets t
JOIN hubs h ON h.id = t.hub_id
LEFT JOIN hub_device_health dh ON dh.hub_id = t.hub_id AND dh.address = t.address
WHERE t.campaign_id = %s
ORDER BY t.wave, t.hub_id, t.address
"""

ERROR_READINGS_SQL = f"""
SELECT t.hub_id, t.address, count(r.*)::int AS n
FROM ota_campaign_targets t
JOIN readings r ON r.hub_id = t.hub_id AND r.measured_at >= t.gate_from - interval '1 day'
    AND r.ingested_at >= t.gate_from AND {ERROR_READING_SQL}
LEFT JOIN devices d ON d.id = r.device_id
WHERE t.campaign_id = %s AND t.state IN ('issued', 'confirmed') AND t.gate_from IS NOT NULL
  AND (t.address = '' OR upper(d.address) = t.address)
GROUP BY t.hub_id, t.address
"""


async def campaign_targets(
    conn: AConn, tenant: str, campaign_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Each hub's and device's state in the campaign, with the progress it reports."""
    await get_campaign(conn, tenant, campaign_id)
    return await _all(conn, TARGETS_SQL, (campaign_id,))


async def campaign_events(conn: AConn, tenant: str, campaign_id: uuid.UUID) -> list[dict[str, Any]]:
    await get_campaign(conn, tenant, campaign_id)
    return await _all(
        conn,
        "SELECT at, by_subject, kind, detail FROM ota_campaign_events WHERE campaign_id = %s"
        " ORDER BY at, id",
        (campaign_id,),
    )


async def _lock(conn: AConn, tenant: str, campaign_id: uuid.UUID) -> dict[str, Any]:
    row = await _one(
        conn,
        "SELECT id, state FROM ota_campaigns WHERE id = %s AND tenant_id = %s FOR UPDATE",
        (campaign_id, tenant),
    )
    if row is None:
        raise NotFound("campaign not found")
    return row


async def _set_state(
    conn: AConn,
    campaign_id: uuid.UUID,
    state: CampaignState,
    *,
    reason: str | None = None,
    wave: int | None = None,
) -> None:
    await conn.execute(
        "UPDATE ota_campaigns SET state = %s, paused_reason = %s, updated_at = now(),"
        " wave = coalesce(%s, wave) WHERE id = %s",
        (state.value, reason, wave, campaign_id),
    )


async def _transition(
    conn: AConn,
    actor: Actor,
    campaign_id: uuid.UUID,
    allowed: tuple[CampaignState, ...],
    to: CampaignState,
    kind: str,
    reason: str | None,
) -> dict[str, Any]:
    row = await _lock(conn, actor.tenant, campaign_id)
    if CampaignState(row["state"]) not in allowed:
        raise Conflict(f"a {row['state']} campaign cannot be {kind}")
    await _set_state(conn, campaign_id, to, reason=reason if to == CampaignState.PAUSED else None)
    await _event(conn, campaign_id, actor.subject, kind, {"reason": reason} if reason else None)
    return row


async def start(conn: AConn, actor: Actor, campaign_id: uuid.UUID) -> dict[str, Any]:
    async with conn.transaction():
        await _transition(
            conn, actor, campaign_id, (CampaignState.DRAFT,), CampaignState.RUNNING, "started", None
        )
    return await get_campaign(conn, actor.tenant, campaign_id)


async def pause(conn: AConn, actor: Actor, campaign_id: uuid.UUID, reason: str) -> dict[str, Any]:
    async with conn.transaction():
        await _transition(
            conn,
            actor,
            campaign_id,
            (CampaignState.RUNNING,),
            CampaignState.PAUSED,
            "paused",
            reason,
        )
    return await get_campaign(conn, actor.tenant, campaign_id)


async def resume(conn: AConn, actor: Actor, campaign_id: uuid.UUID) -> dict[str, Any]:
    """Paused -> running. The confirmed targets' health baselines are taken afresh (HMC
    accepted what paused the campaign); failed targets stay failed (not asked again)."""
    async with conn.transaction():
        await _transition(
            conn,
            actor,
            campaign_id,
            (CampaignState.PAUSED,),
            CampaignState.RUNNING,
            "resumed",
            None,
        )
        await conn.execute(
            "UPDATE ota_campaign_targets SET gate_from = now(), baseline = ("
            " SELECT jsonb_object_agg(x.address, x.sessions_failed) FROM hub_device_health x"
            " WHERE x.hub_id = ota_campaign_targets.hub_id AND x.listed)"
            " WHERE campaign_id = %s AND state = 'confirmed'",
            (campaign_id,),
        )
    return await get_campaign(conn, actor.tenant, campaign_id)


async def cancel(
    conn: AConn, actor: Actor, campaign_id: uuid.UUID, reason: str | None
) -> dict[str, Any]:
    """No further target is asked; those asked already finish what they do (roll back to
    undo them)."""
    async with conn.transaction():
        await _transition(
            conn,
            actor,
            campaign_id,
            (CampaignState.DRAFT, CampaignState.RUNNING, CampaignState.PAUSED),
            CampaignState.CANCELLED,
            "cancelled",
            reason,
        )
        await conn.execute(
            "UPDATE ota_campaign_targets SET state = 'skipped', finished_at = now()"
            " WHERE campaign_id = %s AND state = 'pending'",
            (campaign_id,),
        )
    return await get_campaign(conn, actor.tenant, campaign_id)


async def rollback(
    conn: AConn, actor: Actor, campaign_id: uuid.UUID, reason: str | None
) -> dict[str, Any]:
    """Every target asked so far is asked back to the version it ran before (hubs: the
    previous slot; devices: the previous image); targets not asked are skipped."""
    async with conn.transaction():
        await _transition(
            conn,
            actor,
            campaign_id,
            (
                CampaignState.RUNNING,
                CampaignState.PAUSED,
                CampaignState.COMPLETED,
                CampaignState.CANCELLED,
            ),
            CampaignState.ROLLING_BACK,
            "rollback",
            reason,
        )
        await conn.execute(
            "UPDATE ota_campaign_targets SET state = 'skipped', finished_at = now()"
            " WHERE campaign_id = %s AND state = 'pending'",
            (campaign_id,),
        )
        rows = await _all(
            conn,
            "UPDATE ota_campaign_targets SET state = 'rolled_back', issued_at = now(),"
            " finished_at = NULL WHERE campaign_id = %s"
            " AND state IN ('issued', 'confirmed', 'failed') RETURNING hub_id",
            (campaign_id,),
        )
        for hub_id in sorted({r["hub_id"] for r in rows}):
            await hub_fleet.issue_config(conn, actor, hub_id)
    return await get_campaign(conn, actor.tenant, campaign_id)


# --- the engine's pass -----------------------------------------------------------------------


def _progress(value: Any, campaign_id: uuid.UUID) -> tuple[str, str | None] | None:
    if not isinstance(value, dict) or value.get("campaign_id") != str(campaign_id):
        return None
    return str(value.get("state")), value.get("reason")


def _failed_since(now: dict[str, int] | None, baseline: dict[str, int] | None) -> int:
    """Failed sessions since the baseline; a counter below its baseline was reset (the
    hub restarted), so all of it is new."""
    total = 0
    for address, count in (now or {}).items():
        before = (baseline or {}).get(address, 0)
        total += count - before if count >= before else count
    return total


def _targets(
    rows: list[dict[str, Any]],
    errors_by: dict[tuple[str, str], int],
    campaign: dict[str, Any],
    now: datetime,
) -> list[Target]:
    targets = []
    for r in rows:
        zone = _zone(r["time_zone"] or campaign["time_zone"])
        local = now.astimezone(zone).time()
        targets.append(
            Target(
                hub_id=r["hub_id"],
                address=r["address"],
                wave=r["wave"],
                state=TargetState(r["state"]),
                issued_at=r["issued_at"],
                from_version=r["from_version"],
                in_window=in_window(local, campaign["window_start"], campaign["window_end"]),
                online=bool(r["online"]),
                running=r["running"],
                progress=_progress(r["progress"], campaign["id"]),
                failed_sessions=_failed_since(r["sessions_failed"], r["baseline"]),
                error_readings=errors_by.get((r["hub_id"], r["address"]), 0),
                last_report_at=r["last_report_at"],
            )
        )
    return targets


async def tick(conn: AConn, campaign_id: uuid.UUID, now: datetime | None = None) -> Plan:
    """One pass of the engine over one campaign, in one transaction."""
    async with conn.transaction():
        campaign = await _one(
            conn,
            "SELECT c.*, a.version FROM ota_campaigns c JOIN ota_artifacts a"
            " ON a.id = c.artifact_id WHERE c.id = %s FOR UPDATE OF c",
            (campaign_id,),
        )
        if campaign is None:
            raise NotFound("campaign not found")
        clock = await _one(conn, "SELECT now() AS now")
        assert clock is not None
        at = now or clock["now"]
        rows = await _all(conn, TARGETS_SQL, (campaign_id,))
        errors_by = {
            (r["hub_id"], r["address"]): r["n"]
            for r in await _all(conn, ERROR_READINGS_SQL, (campaign_id,))
        }
        view = Campaign(
            state=CampaignState(campaign["state"]),
            version=campaign["version"],
            waves=tuple(campaign["waves"]),
            wave=campaign["wave"],
            max_parallel=campaign["max_parallel"],
            confirm_timeout=timedelta(seconds=campaign["confirm_timeout_s"]),
            margin_failed_sessions=campaign["margin_failed_sessions"],
            margin_error_readings=campaign["margin_error_readings"],
            silence_window=(
                timedelta(seconds=campaign["silence_window_s"])
                if campaign["silence_window_s"] is not None
                else None
            ),
        )
        plan = decide(view, _targets(rows, errors_by, campaign, at), at)
        await _carry_out(conn, campaign, plan, rows)
    return plan


async def _mark(
    conn: AConn, campaign_id: uuid.UUID, keys: tuple[tuple[str, str], ...], state: str
) -> None:
    for hub_id, address in keys:
        await conn.execute(
            "UPDATE ota_campaign_targets SET state = %s, finished_at = now()"
            " WHERE campaign_id = %s AND hub_id = %s AND address = %s",
            (state, campaign_id, hub_id, address),
        )


async def _carry_out(
    conn: AConn, campaign: dict[str, Any], plan: Plan, rows: list[dict[str, Any]]
) -> None:
    cid = campaign["id"]
    engine = Actor(subject=ENGINE, tenant=campaign["tenant_id"])
    await _mark(conn, cid, plan.confirm, "confirmed")
    await _mark(conn, cid, plan.restore, "restored")
    for (hub_id, address), reason in plan.fail:
        await conn.execute(
            "UPDATE ota_campaign_targets SET state = 'failed', finished_at = now(), reason = %s"
            " WHERE campaign_id = %s AND hub_id = %s AND address = %s",
            (reason, cid, hub_id, address),
        )
    by_key = {(r["hub_id"], r["address"]): r for r in rows}
    for hub_id, address in plan.issue:
        row = by_key[(hub_id, address)]
        baseline = row["sessions_failed"]
        await conn.execute(
            "UPDATE ota_campaign_targets SET state = 'issued', issued_at = now(),"
            " gate_from = now(), baseline = %s"
            " WHERE campaign_id = %s AND hub_id = %s AND address = %s",
            (Jsonb(baseline) if baseline is not None else None, cid, hub_id, address),
        )
    for hub_id in sorted({h for h, _ in plan.issue}):
        await hub_fleet.issue_config(conn, engine, hub_id)
    if plan.issue:
        await _event(
            conn,
            cid,
            ENGINE,
            "issued",
            {"targets": [f"{h}{'/' + a if a else ''}" for h, a in plan.issue]},
        )
    if plan.action == Action.PAUSE:
        await _set_state(conn, cid, CampaignState.PAUSED, reason=plan.reason)
        await _event(conn, cid, ENGINE, "paused", {"reason": plan.reason, **plan.detail})
    elif plan.action == Action.ADVANCE:
        await _set_state(conn, cid, CampaignState.RUNNING, wave=campaign["wave"] + 1)
        await _event(conn, cid, ENGINE, "wave_advanced", {"wave": campaign["wave"] + 1})
    elif plan.action == Action.COMPLETE:
        await _set_state(conn, cid, CampaignState.COMPLETED)
        await _event(conn, cid, ENGINE, "completed", None)
    elif plan.action == Action.ROLLED_BACK:
        await _set_state(conn, cid, CampaignState.ROLLED_BACK)
        await _event(conn, cid, ENGINE, "rolled_back", None)


async def tick_all(conn: AConn, now: datetime | None = None) -> int:
    """A pass over every running or rolling-back campaign; one runner at a time (advisory
    lock, held for the pass). Returns how many campaigns it ran."""
    async with conn.transaction():
        locked = await _one(conn, "SELECT pg_try_advisory_xact_lock(%s) AS ok", (TICK_LOCK,))
        if not locked or not locked["ok"]:
            return 0
        active = await _all(
            conn,
            "SELECT id FROM ota_campaigns WHERE state IN ('running', 'rolling_back')"
            " ORDER BY created_at",
        )
        for row in active:
            try:
                await tick(conn, row["id"], now or datetime.now(UTC))
            except (FleetError, errors.DataError, errors.IntegrityError) as exc:
                # Rolled back to before this campaign's pass: the others go on.
                log.warning("campaign %s: pass failed: %s", row["id"], exc)
    return len(active)
