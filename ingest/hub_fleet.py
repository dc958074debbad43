"""Hubs in the HMC's fleet (async): registration, broker credentials, placement at a
resident's home, their life (`ingest.device_life`, assigned = placed) and the retained,
versioned configuration that tells a hub which devices it may talk to.

`issue_config` builds the hub's `HubConfig` from its allow-list (`hub_devices`), stores
it with the next version in `hub_configs` and queues it for the broker, in the caller's
transaction: the configuration leaves only if the change that caused it commits. The
version is above any the hub reported having applied, so a hub configured by hand before
still takes it. The hub's status (`hubs.last_status->'config_version'`) confirms it.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from psycopg import errors
from psycopg.types.json import Jsonb

from hemhub.contract import HUB_ID_PATTERN, AllowedDevice, DeviceProfile, HubConfig
from ingest import commands, desired_state, device_life, hub_credentials, hub_link, registry
from ingest.device_life import RetiredAs, State, Transition, TransitionRefused, WipeStatus
from ingest.fleet_common import AConn, Actor, Conflict, FleetError, NotFound
from ingest.fleet_common import all_rows as _all
from ingest.fleet_common import one as _one

HUB_SQL = """
SELECT h.id, h.state, h.serial, h.product_id, h.created_at, h.online, h.last_status_at,
       h.last_status->>'software_version' AS software_version,
       h.config_version AS config_version_wanted,
       CASE WHEN jsonb_typeof(h.last_status->'config_version') = 'number'
            THEN (h.last_status->>'config_version')::int END AS config_version_confirmed,
       pl.patient_id, pl.started_at AS placed_from,
       c.issued_at AS credentials_issued_at, c.issued_by AS credentials_issued_by,
       (SELECT count(*)::int FROM hub_devices hd
        WHERE hd.hub_id = h.id AND hd.ended_at IS NULL) AS devices
FROM hubs h
LEFT JOIN hub_placements pl ON pl.hub_id = h.id AND pl.ended_at IS NULL
LEFT JOIN hub_credentials c ON c.hub_id = h.id AND c.revoked_at IS NULL
WHERE h.tenant_id = %(tenant)s
"""


def _with_sync(row: dict[str, Any]) -> dict[str, Any]:
    wanted, confirmed = row["config_version_wanted"], row["config_version_confirmed"]
    row["config_in_force"] = wanted == 0 or (confirmed is not None and confirmed >= wanted)
    return row


async def get_hub(conn: AConn, tenant: str, hub_id: str) -> dict[str, Any]:
    row = await _one(conn, HUB_SQL + " AND h.id = %(id)s", {"tenant": tenant, "id": hub_id})
    if row is None:
        raise NotFound("hub not found")
    return _with_sync(row)


async def list_hubs(
    conn: AConn, tenant: str, *, state: State | None = None, limit: int = 500, offset: int = 0
) -> list[dict[str, Any]]:
    filters = " AND h.state = %(state)s" if state is not None else ""
    rows = await _all(
        conn,
        HUB_SQL + filters + " ORDER BY h.id LIMIT %(limit)s OFFSET %(offset)s",
        {"tenant": tenant, "state": state and state.value, "limit": limit, "offset": offset},
    )
    return [_with_sync(r) for r in rows]


async def hub_history(conn: AConn, tenant: str, hub_id: str) -> list[dict[str, Any]]:
    await get_hub(conn, tenant, hub_id)
    return await _all(
        conn,
        "SELECT id, from_state, to_state, at, by_subject, by_tenant, reason, detail"
        " FROM hub_state_changes WHERE hub_id = %s ORDER BY at, id",
        (hub_id,),
    )


async def lock_hub(conn: AConn, actor: Actor, hub_id: str) -> dict[str, Any]:
    row = await _one(
        conn,
        "SELECT id, state, config_version, last_status->'config_version' AS confirmed"
        " FROM hubs WHERE id = %s AND tenant_id = %s FOR UPDATE",
        (hub_id, actor.tenant),
    )
    if row is None:
        raise NotFound("hub not found")
    return row


async def placement(conn: AConn, hub_id: str) -> dict[str, Any] | None:
    """The hub's open placement (patient_id, started_at), if it stands in a home."""
    return await _one(
        conn,
        "SELECT id, patient_id, started_at FROM hub_placements"
        " WHERE hub_id = %s AND ended_at IS NULL",
        (hub_id,),
    )


async def _record(
    conn: AConn, actor: Actor, hub_id: str, t: Transition | None, to: State, detail: dict[str, Any]
) -> None:
    """Check a transition (None: registration) and write it with who, when and why."""
    if t is not None:
        _check(t)
        if t.retired_as is not None:
            detail = {**detail, "retired_as": t.retired_as.value}
        if t.override:
            detail = {**detail, "override": True}
    await conn.execute("UPDATE hubs SET state = %s WHERE id = %s", (to.value, hub_id))
    await conn.execute(
        "INSERT INTO hub_state_changes (hub_id, from_state, to_state, by_subject, by_tenant,"
        " reason, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            hub_id,
            t and t.from_state.value,
            to.value,
            actor.subject,
            actor.tenant,
            t.reason if t is not None else "registered",
            Jsonb(detail) if detail else None,
        ),
    )


# --- registration and credentials ----------------------------------------------------------


async def register_hub(
    conn: AConn,
    actor: Actor,
    hub_id: str,
    *,
    product_id: uuid.UUID | None = None,
    serial: str | None = None,
) -> dict[str, Any]:
    """Register a hub under the principal, in stock. A hub ingest has seen unregistered
    joins it; one of another principal, or registered before, is a Conflict."""
    if not re.match(HUB_ID_PATTERN, hub_id) or hub_id in ("hemhub-ingest", "hemhub-backend"):
        raise FleetError(f"hub id {hub_id!r} must match {HUB_ID_PATTERN} (it is the broker user)")
    if product_id is not None:
        product = await _one(
            conn,
            "SELECT kind FROM products WHERE id = %s AND tenant_id = %s",
            (product_id, actor.tenant),
        )
        if product is None:
            raise NotFound("product not found")
        if product["kind"] != "hub":
            raise FleetError("the product is not a hub")
    async with conn.transaction():
        try:
            row = await _one(
                conn,
                "INSERT INTO hubs AS h (id, tenant_id, product_id, serial) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,"
                "   product_id = EXCLUDED.product_id, serial = EXCLUDED.serial"
                " WHERE h.tenant_id IS NULL RETURNING id",
                (hub_id, actor.tenant, product_id, serial),
            )
        except errors.ForeignKeyViolation as exc:
            raise Conflict("the principal is not registered") from exc
        if row is None:
            raise Conflict(f"hub {hub_id} is registered already")
        await _record(conn, actor, hub_id, None, State.IN_STOCK, {})
    return await get_hub(conn, actor.tenant, hub_id)


async def issue_credentials(conn: AConn, actor: Actor, hub_id: str) -> tuple[str, dict[str, Any]]:
    """A broker password for the hub: returned once, kept only as its Mosquitto hash.
    Conflict while the hub has live credentials (revoke them first)."""
    password = hub_credentials.new_password()
    async with conn.transaction():
        hub = await lock_hub(conn, actor, hub_id)
        if hub["state"] in (State.RETIRED, State.RETURNED):
            raise Conflict(f"hub {hub_id} is {hub['state']}: no credentials for it")
        try:
            async with conn.transaction():
                row = await _one(
                    conn,
                    "INSERT INTO hub_credentials (hub_id, password_hash, issued_by)"
                    " VALUES (%s, %s, %s) RETURNING id, issued_at",
                    (hub_id, hub_credentials.mosquitto_hash(password), actor.subject),
                )
        except errors.UniqueViolation as exc:
            raise Conflict(
                f"hub {hub_id} has live credentials; they are shown only once: revoke them"
                " to issue new ones"
            ) from exc
    assert row is not None
    return password, row


async def revoke_credentials(
    conn: AConn, actor: Actor, hub_id: str, *, reason: str | None
) -> dict[str, Any]:
    async with conn.transaction():
        await lock_hub(conn, actor, hub_id)
        row = await _revoke(conn, actor, hub_id, reason)
        if row is None:
            raise Conflict(f"hub {hub_id} has no live credentials")
    return row


async def _revoke(
    conn: AConn, actor: Actor, hub_id: str, reason: str | None
) -> dict[str, Any] | None:
    return await _one(
        conn,
        "UPDATE hub_credentials SET revoked_at = now(), revoked_by = %s, revoke_reason = %s"
        " WHERE hub_id = %s AND revoked_at IS NULL RETURNING id, issued_at, revoked_at",
        (actor.subject, reason, hub_id),
    )


#: Every live hub password hash (the broker's password file; all principals: operators).
LIVE_PASSWORDS_SQL = (
    "SELECT hub_id, password_hash FROM hub_credentials WHERE revoked_at IS NULL ORDER BY hub_id"
)


# --- placement and the hub's life ------------------------------------------------------------


async def place_hub(
    conn: AConn,
    actor: Actor,
    hub_id: str,
    *,
    patient_id: uuid.UUID,
    started_at: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """in_stock -> assigned: the hub stands at the resident's home from `started_at`."""
    registry.aware(started_at, "from")
    async with conn.transaction():
        hub = await lock_hub(conn, actor, hub_id)
        resident = await _one(conn, registry.PATIENT_OF_TENANT_SQL, (patient_id, actor.tenant))
        if resident is None:
            raise NotFound("resident not found")
        if resident["deactivated_at"] is not None:
            raise Conflict(f"resident {patient_id} is deactivated: no hub is placed there")
        t = Transition(State(hub["state"]), State.ASSIGNED, reason=reason)
        _check(t)
        await conn.execute(
            "INSERT INTO hub_placements (hub_id, patient_id, tenant_id, started_at)"
            " VALUES (%s, %s, %s, %s)",
            (hub_id, patient_id, actor.tenant, started_at),
        )
        await _record(
            conn,
            actor,
            hub_id,
            t,
            State.ASSIGNED,
            {"patient_id": str(patient_id), "from": started_at.isoformat()},
        )
    return await get_hub(conn, actor.tenant, hub_id)


def _check(t: Transition) -> None:
    try:
        device_life.check(t)
    except TransitionRefused as exc:
        raise Conflict(str(exc).replace("a device", "a hub")) from exc


async def return_hub(
    conn: AConn,
    actor: Actor,
    hub_id: str,
    *,
    ended_at: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """assigned -> returned: the placement ends and the hub is asked to wipe its outbox,
    bonds and credentials. Its devices must be returned first (Conflict otherwise).

    Its broker credentials stay valid until it leaves `returned` (quarantine or
    retirement): a hub that is offline at its return must still be able to connect and
    receive its wipe. Its allow-list is empty by then, so nothing it sends is attributed.
    """
    registry.aware(ended_at, "until")
    async with conn.transaction():
        hub = await lock_hub(conn, actor, hub_id)
        t = Transition(State(hub["state"]), State.RETURNED, reason=reason)
        _check(t)
        devices = await _one(
            conn,
            "SELECT count(*)::int AS n FROM hub_devices WHERE hub_id = %s AND ended_at IS NULL",
            (hub_id,),
        )
        if devices is not None and devices["n"]:
            raise Conflict(
                f"hub {hub_id} still has {devices['n']} device(s) on its allow-list:"
                " return them first"
            )
        placed = await placement(conn, hub_id)
        if placed is not None:
            if ended_at <= placed["started_at"]:
                raise Conflict(
                    f"until {ended_at.isoformat()} is not after the placement's start"
                    f" {placed['started_at'].isoformat()}"
                )
            await conn.execute(
                "UPDATE hub_placements SET ended_at = %s WHERE id = %s", (ended_at, placed["id"])
            )
        # Its outbox, bonds, cached configuration and credentials erased on the hub too.
        wipe = await commands.request_hub_wipe(conn, hub_id=hub_id, requested_by=actor.subject)
        await _record(
            conn,
            actor,
            hub_id,
            t,
            State.RETURNED,
            {
                "until": ended_at.isoformat(),
                "wipe_command_id": str(wipe),
            },
        )
    return await get_hub(conn, actor.tenant, hub_id)


async def change_hub_state(
    conn: AConn,
    actor: Actor,
    hub_id: str,
    *,
    to_state: State,
    reason: str | None = None,
    retired_as: RetiredAs | None = None,
    override: bool = False,
) -> dict[str, Any]:
    """Quarantine, stock, repair or retirement of a hub (placing and returning have their
    own functions). A hub's credentials are revoked when it is retired or leaves
    `returned`."""
    if to_state in (State.ASSIGNED, State.RETURNED):
        raise Conflict(f"use {'place' if to_state == State.ASSIGNED else 'return'} for that")
    async with conn.transaction():
        hub = await lock_hub(conn, actor, hub_id)
        from_state = State(hub["state"])
        if from_state == State.ASSIGNED:
            raise Conflict("a placed hub is returned first (its devices with it)")
        wipe = WipeStatus.NONE
        if from_state == State.QUARANTINE and to_state == State.IN_STOCK:
            wipe = await hub_wipe_status(conn, hub_id)
        t = Transition(
            from_state,
            to_state,
            reason=reason,
            retired_as=retired_as,
            override=override,
            wipe=wipe,
        )
        detail = {"wipe": wipe.value} if wipe != WipeStatus.NONE or override else {}
        await _record(conn, actor, hub_id, t, to_state, detail)
        if to_state == State.RETIRED:
            await _revoke(conn, actor, hub_id, "hub retired")
        elif from_state == State.RETURNED:
            # Held until now so that the hub could receive its wipe (return_hub).
            await _revoke(conn, actor, hub_id, "hub returned")
    return await get_hub(conn, actor.tenant, hub_id)


async def hub_wipe_status(conn: AConn, hub_id: str) -> WipeStatus:
    """Where the wipe asked at the hub's latest return stands, as the hub reported it."""
    returned = await _one(
        conn,
        "SELECT detail->>'wipe_command_id' AS command_id FROM hub_state_changes"
        " WHERE hub_id = %s AND to_state = 'returned' ORDER BY at DESC, id DESC LIMIT 1",
        (hub_id,),
    )
    if returned is None or returned["command_id"] is None:
        return WipeStatus.NONE
    outcome = await commands.get_command(conn, uuid.UUID(returned["command_id"]))
    return WipeStatus.NONE if outcome is None else WipeStatus(outcome.status)


# --- the retained configuration ------------------------------------------------------------

ALLOWED_DEVICES_SQL = """
SELECT d.address, coalesce(p.kind, lh.profile) AS profile,
       coalesce((p.quirks->>'bond')::boolean, false) AS bond,
       a.tenant_id AS principal
FROM hub_devices hd
JOIN devices d ON d.id = hd.device_id
LEFT JOIN products p ON p.id = d.product_id
LEFT JOIN device_last_hub lh ON lh.address = upper(d.address)
LEFT JOIN device_assignments a ON a.device_id = d.id AND a.ended_at IS NULL
WHERE hd.hub_id = %s AND hd.ended_at IS NULL
ORDER BY d.address
"""


async def build_config(conn: AConn, hub_id: str, version: int, issued_at: datetime) -> HubConfig:
    """The hub's configuration from its allow-list now, with the software and firmware
    the rollout campaigns want it to run (`ingest.desired_state`). A device whose profile
    is unknown (no product, never reported) cannot be driven and is left out."""
    rows = await _all(conn, ALLOWED_DEVICES_SQL, (hub_id,))
    devices = [
        AllowedDevice(
            address=r["address"].upper(),
            profile=DeviceProfile(r["profile"]),
            bond=bool(r["bond"]),
            principal=r["principal"],
        )
        for r in rows
        if r["profile"] in DeviceProfile.__members__.values()
    ]
    software, firmware = await desired_state.desired(conn, hub_id)
    listed = {d.address for d in devices}
    return HubConfig(
        hub_id=hub_id,
        version=version,
        issued_at=issued_at,
        devices=devices,
        software=software,
        firmware=[f for f in firmware if f.address in listed] or None,
    )


async def issue_config(conn: AConn, actor: Actor, hub_id: str) -> HubConfig:
    """The hub's next configuration version, stored and queued (retained) for the hub."""
    hub = await lock_hub(conn, actor, hub_id)
    confirmed = hub["confirmed"] if isinstance(hub["confirmed"], int) else 0
    version = max(int(hub["config_version"]), confirmed) + 1
    now = await _one(conn, "SELECT now() AS now")
    assert now is not None
    config = await build_config(conn, hub_id, version, now["now"])
    await conn.execute("UPDATE hubs SET config_version = %s WHERE id = %s", (version, hub_id))
    await conn.execute(
        "INSERT INTO hub_configs (hub_id, version, issued_at, issued_by, payload)"
        " VALUES (%s, %s, %s, %s, %s)",
        (hub_id, version, config.issued_at, actor.subject, Jsonb(config.model_dump(mode="json"))),
    )
    await hub_link.enqueue(conn, hub_id, "config", config, retain=True)
    return config


async def configs(conn: AConn, tenant: str, hub_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The hub's configurations issued, newest first."""
    await get_hub(conn, tenant, hub_id)
    return await _all(
        conn,
        "SELECT version, issued_at, issued_by, payload FROM hub_configs WHERE hub_id = %s"
        " ORDER BY version DESC LIMIT %s",
        (hub_id, limit),
    )
