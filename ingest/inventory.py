"""The HMC's inventory on the database: products, devices and their life (async).

Every change of a device's state goes through `_record_transition`, which checks it
against `ingest.device_life` and writes one `device_state_changes` row (who, when,
why). Assigning and returning a device change the tables readings are attributed by
(`device_assignments`) and that entitle a hub (`hub_devices`), with the same
invariants as `ingest.registry` (its SQL), and issue the hub's next configuration
(`ingest.hub_fleet.issue_config`), all in the caller's transaction.

Everything is confined to one principal (`Actor.tenant`): another principal's product,
device, hub or resident is `NotFound`, like an unknown one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import errors
from psycopg.types.json import Jsonb

from hemhub.contract import DeviceIdentity, DeviceProfile
from ingest import commands, device_life, hub_fleet, registry
from ingest.device_life import RetiredAs, State, Transition, TransitionRefused, WipeStatus
from ingest.fleet_common import AConn, Actor, Conflict, FleetError, NotFound
from ingest.fleet_common import all_rows as _all
from ingest.fleet_common import one as _one

# --- products -------------------------------------------------------------------------------

PRODUCT_COLUMNS = "id, kind, manufacturer, model, profiles, quirks, firmware_line, created_at"
DEVICE_KINDS = frozenset(p.value for p in DeviceProfile)


async def create_product(
    conn: AConn,
    actor: Actor,
    *,
    kind: str,
    manufacturer: str,
    model: str,
    profiles: list[str] | None = None,
    quirks: dict[str, Any] | None = None,
    firmware_line: str | None = None,
) -> dict[str, Any]:
    """A product of the principal's catalogue; (manufacturer, model) is unique in it."""
    if kind != "hub" and kind not in DEVICE_KINDS:
        raise FleetError(f"kind must be 'hub' or one of {sorted(DEVICE_KINDS)}")
    profiles = list(profiles) if profiles is not None else ([] if kind == "hub" else [kind])
    unknown = [p for p in profiles if p not in DEVICE_KINDS]
    if unknown:
        raise FleetError(f"unknown profile(s) {unknown}; known: {sorted(DEVICE_KINDS)}")
    try:
        async with conn.transaction():
            row = await _one(
                conn,
                "INSERT INTO products (tenant_id, kind, manufacturer, model, profiles, quirks,"
                " firmware_line) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                f" RETURNING {PRODUCT_COLUMNS}",
                (
                    actor.tenant,
                    kind,
                    manufacturer.strip(),
                    model.strip(),
                    profiles,
                    Jsonb(quirks or {}),
                    firmware_line,
                ),
            )
    except errors.UniqueViolation as exc:
        raise Conflict(f"the catalogue has {manufacturer} {model} already") from exc
    except errors.ForeignKeyViolation as exc:
        raise Conflict("the principal is not registered") from exc
    except errors.CheckViolation as exc:
        raise FleetError("manufacturer and model need 1 to 128 characters") from exc
    assert row is not None
    return row


async def list_products(conn: AConn, tenant: str) -> list[dict[str, Any]]:
    return await _all(
        conn,
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE tenant_id = %s ORDER BY manufacturer, model",
        (tenant,),
    )


async def get_product(conn: AConn, tenant: str, product_id: uuid.UUID) -> dict[str, Any]:
    row = await _one(
        conn,
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = %s AND tenant_id = %s",
        (product_id, tenant),
    )
    if row is None:
        raise NotFound("product not found")
    return row


# --- inventory ------------------------------------------------------------------------------

DEVICE_SQL = """
SELECT d.id, d.stable_id, d.serial, d.address, d.manufacturer, d.model, d.firmware,
       d.hardware_revision, d.product_id, p.kind, d.owner_tenant_id AS owner, d.state,
       d.registered_at, d.first_seen_at, d.last_seen_at,
       a.patient_id, a.started_at AS assigned_from,
       (SELECT hd.hub_id FROM hub_devices hd WHERE hd.device_id = d.id AND hd.ended_at IS NULL
        ORDER BY hd.started_at DESC LIMIT 1) AS hub_id
FROM devices d
LEFT JOIN products p ON p.id = d.product_id
LEFT JOIN device_assignments a ON a.device_id = d.id AND a.ended_at IS NULL
WHERE d.owner_tenant_id = %(tenant)s
"""


async def register_device(
    conn: AConn,
    actor: Actor,
    *,
    product_id: uuid.UUID,
    serial: str,
    address: str,
    manufacturer: str | None = None,
    model: str | None = None,
    hardware_revision: str | None = None,
    firmware: str | None = None,
) -> dict[str, Any]:
    """Take a device into the principal's inventory, in stock.

    Its stable id is the one ingest gives it (`DeviceIdentity.stable_id`, from what the
    device says in Device Information: manufacturer, model and serial, by default the
    product's), so a device ingest has already seen is met, not duplicated.
    """
    product = await get_product(conn, actor.tenant, product_id)
    if product["kind"] == "hub":
        raise FleetError("a hub is registered as a hub (POST /api/v1/hubs), not as a device")
    try:
        identity = DeviceIdentity.model_validate(
            {
                "address": address.upper(),
                "manufacturer": manufacturer or product["manufacturer"],
                "model": model or product["model"],
                "serial": serial,
                "firmware": firmware,
            }
        )
    except ValueError as exc:
        raise FleetError(f"not a device identity: {exc}") from exc
    async with conn.transaction():
        seen = await _one(
            conn,
            "SELECT id, owner_tenant_id, product_id, state FROM devices WHERE stable_id = %s"
            " FOR UPDATE",
            (identity.stable_id,),
        )
        if seen is not None and seen["owner_tenant_id"] not in (None, actor.tenant):
            raise Conflict(f"device {identity.stable_id} is in another principal's fleet")
        if seen is not None and seen["product_id"] is not None:
            raise Conflict(f"device {identity.stable_id} is registered already ({seen['id']})")
        if seen is None:
            row = await _one(
                conn,
                "INSERT INTO devices (stable_id, address, manufacturer, model, serial, firmware,"
                " hardware_revision, product_id, owner_tenant_id, state, registered_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'in_stock', now()) RETURNING id",
                (
                    identity.stable_id,
                    identity.address,
                    identity.manufacturer,
                    identity.model,
                    identity.serial,
                    identity.firmware,
                    hardware_revision,
                    product_id,
                    actor.tenant,
                ),
            )
            assert row is not None
            device_id, state, met = row["id"], State.IN_STOCK, False
        else:
            await conn.execute(
                "UPDATE devices SET product_id = %s, owner_tenant_id = %s, registered_at = now(),"
                " hardware_revision = coalesce(%s, hardware_revision),"
                " firmware = coalesce(firmware, %s) WHERE id = %s",
                (product_id, actor.tenant, hardware_revision, identity.firmware, seen["id"]),
            )
            device_id, state, met = seen["id"], State(seen["state"]), True
        await _insert_change(
            conn, actor, device_id, None, state, "registered", {"seen_by_ingest_before": met}
        )
    return await get_device(conn, actor.tenant, device_id)


async def get_device(conn: AConn, tenant: str, device_id: uuid.UUID) -> dict[str, Any]:
    row = await _one(conn, DEVICE_SQL + " AND d.id = %(id)s", {"tenant": tenant, "id": device_id})
    if row is None:
        raise NotFound("device not found")
    # Since its latest return: the data reset that decides whether it may go back to stock.
    row["data_reset"] = (
        (await latest_wipe_status(conn, device_id)).value
        if row["state"] in (State.RETURNED, State.QUARANTINE)
        else None
    )
    return row


async def list_devices(
    conn: AConn,
    tenant: str,
    *,
    state: State | None = None,
    product_id: uuid.UUID | None = None,
    limit: int = 500,
    offset: int = 0,
) -> list[dict[str, Any]]:
    filters = ""
    if state is not None:
        filters += " AND d.state = %(state)s"
    if product_id is not None:
        filters += " AND d.product_id = %(product)s"
    return await _all(
        conn,
        DEVICE_SQL + filters + " ORDER BY d.stable_id LIMIT %(limit)s OFFSET %(offset)s",
        {
            "tenant": tenant,
            "state": state and state.value,
            "product": product_id,
            "limit": limit,
            "offset": offset,
        },
    )


async def device_history(conn: AConn, tenant: str, device_id: uuid.UUID) -> list[dict[str, Any]]:
    await get_device(conn, tenant, device_id)
    return await _all(
        conn,
        "SELECT id, from_state, to_state, at, by_subject, by_tenant, reason, detail"
        " FROM device_state_changes WHERE device_id = %s ORDER BY at, id",
        (device_id,),
    )


# --- the life of a device --------------------------------------------------------------------


async def _insert_change(
    conn: AConn,
    actor: Actor,
    device_id: uuid.UUID,
    from_state: State | None,
    to_state: State,
    reason: str | None,
    detail: dict[str, Any] | None,
) -> None:
    await conn.execute(
        "INSERT INTO device_state_changes (device_id, from_state, to_state, by_subject,"
        " by_tenant, reason, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            device_id,
            from_state and from_state.value,
            to_state.value,
            actor.subject,
            actor.tenant,
            reason,
            Jsonb(detail) if detail is not None else None,
        ),
    )


async def _lock_device(conn: AConn, actor: Actor, device_id: uuid.UUID) -> dict[str, Any]:
    row = await _one(
        conn,
        "SELECT d.id, d.state, d.address, d.product_id, p.kind FROM devices d"
        " LEFT JOIN products p ON p.id = d.product_id"
        " WHERE d.id = %s AND d.owner_tenant_id = %s FOR UPDATE OF d",
        (device_id, actor.tenant),
    )
    if row is None:
        raise NotFound("device not found")
    return row


async def _record_transition(
    conn: AConn,
    actor: Actor,
    device_id: uuid.UUID,
    t: Transition,
    detail: dict[str, Any] | None = None,
) -> None:
    """Check `t` against the device's life and record it (the only way state changes)."""
    try:
        device_life.check(t)
    except TransitionRefused as exc:
        raise Conflict(str(exc)) from exc
    full = dict(detail or {})
    if t.retired_as is not None:
        full["retired_as"] = t.retired_as.value
    if t.override:
        full["override"] = True
    if t.from_state == State.QUARANTINE and t.to_state == State.IN_STOCK:
        full["wipe"] = t.wipe.value
    await conn.execute("UPDATE devices SET state = %s WHERE id = %s", (t.to_state.value, device_id))
    await _insert_change(conn, actor, device_id, t.from_state, t.to_state, t.reason, full or None)


async def _require_patient(conn: AConn, tenant: str, patient_id: uuid.UUID) -> None:
    # FOR SHARE: a deactivation of the resident waits for this assignment, or is waited for.
    row = await _one(conn, registry.PATIENT_OF_TENANT_SQL, (patient_id, tenant))
    if row is None:
        raise NotFound("resident not found")
    if row["deactivated_at"] is not None:
        raise Conflict(f"resident {patient_id} is deactivated: nothing is assigned")


async def assign_device(
    conn: AConn,
    actor: Actor,
    device_id: uuid.UUID,
    *,
    patient_id: uuid.UUID,
    hub_id: str,
    started_at: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """in_stock -> assigned: the device serves the resident from `started_at`, through
    the hub, which gets it on its allow-list and a new configuration."""
    registry.aware(started_at, "from")
    async with conn.transaction():
        device = await _lock_device(conn, actor, device_id)
        await _require_patient(conn, actor.tenant, patient_id)
        hub = await hub_fleet.lock_hub(conn, actor, hub_id)
        transition = Transition(State(device["state"]), State.ASSIGNED, reason=reason)
        try:
            device_life.check(transition)
        except TransitionRefused as exc:
            raise Conflict(str(exc)) from exc
        if device["kind"] is None:
            raise Conflict("the device has no product: register it first")
        if hub["state"] not in (State.IN_STOCK, State.ASSIGNED):
            raise Conflict(f"hub {hub_id} is {hub['state']}: it cannot take devices")
        placed = await hub_fleet.placement(conn, hub_id)
        if placed is not None and placed["patient_id"] != patient_id:
            raise Conflict(f"hub {hub_id} is placed at another resident's home")
        await _open_assignment(conn, device_id, patient_id, actor.tenant, started_at)
        await _allow(conn, hub_id, device_id, started_at)
        await _record_transition(
            conn,
            actor,
            device_id,
            transition,
            {
                "patient_id": str(patient_id),
                "hub_id": hub_id,
                "from": started_at.isoformat(),
            },
        )
        await hub_fleet.issue_config(conn, actor, hub_id)
    return await get_device(conn, actor.tenant, device_id)


async def return_device(
    conn: AConn,
    actor: Actor,
    device_id: uuid.UUID,
    *,
    ended_at: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """assigned -> returned: the resident's period ends at `ended_at`; the device leaves
    its hub's allow-list (new configuration) and the hub is asked to wipe it."""
    registry.aware(ended_at, "until")
    async with conn.transaction():
        device = await _lock_device(conn, actor, device_id)
        transition = Transition(State(device["state"]), State.RETURNED, reason=reason)
        try:
            device_life.check(transition)
        except TransitionRefused as exc:
            raise Conflict(str(exc)) from exc
        ended = await _end_assignment(conn, device_id, ended_at)
        hubs = await _disallow_everywhere(conn, device_id, ended_at)
        detail: dict[str, Any] = {
            "until": ended_at.isoformat(),
            "patient_id": str(ended),
            "hubs": hubs,
        }
        for hub_id in hubs:
            await hub_fleet.issue_config(conn, actor, hub_id)
        # The hub that had it last erases its memory and removes the bond (after the
        # configuration that takes it off the list: the hub waits for it in range).
        if hubs:
            try:
                detail["wipe_command_id"] = str(
                    await commands.request_device_wipe(
                        conn, hub_id=hubs[0], device_id=device_id, requested_by=actor.subject
                    )
                )
            except commands.CommandError as exc:
                detail["wipe_not_asked"] = str(exc)  # back to stock by override only
        else:
            detail["wipe_not_asked"] = "the device was on no hub's allow-list"
        await _record_transition(conn, actor, device_id, transition, detail)
    return await get_device(conn, actor.tenant, device_id)


async def change_state(
    conn: AConn,
    actor: Actor,
    device_id: uuid.UUID,
    *,
    to_state: State,
    reason: str | None = None,
    retired_as: RetiredAs | None = None,
    override: bool = False,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Any other transition: to quarantine, stock, repair or retirement.

    Retiring an assigned device (lost) ends its period at `at` (default now) and takes it
    off its hub's allow-list. Assigning and returning have their own functions.
    """
    if to_state in (State.ASSIGNED, State.RETURNED):
        raise Conflict(f"use {'assign' if to_state == State.ASSIGNED else 'return'} for that")
    async with conn.transaction():
        device = await _lock_device(conn, actor, device_id)
        from_state = State(device["state"])
        wipe = WipeStatus.NONE
        if from_state == State.QUARANTINE and to_state == State.IN_STOCK:
            wipe = await latest_wipe_status(conn, device_id)
        transition = Transition(
            from_state, to_state, reason=reason, retired_as=retired_as, override=override, wipe=wipe
        )
        detail: dict[str, Any] = {}
        hubs: list[str] = []
        if from_state == State.ASSIGNED:
            try:
                device_life.check(transition)
            except TransitionRefused as exc:
                raise Conflict(str(exc)) from exc
            now = at or await _now(conn)
            registry.aware(now, "at")
            detail["patient_id"] = str(await _end_assignment(conn, device_id, now))
            hubs = await _disallow_everywhere(conn, device_id, now)
            detail.update({"until": now.isoformat(), "hubs": hubs})
        await _record_transition(conn, actor, device_id, transition, detail)
        for hub_id in hubs:
            await hub_fleet.issue_config(conn, actor, hub_id)
    return await get_device(conn, actor.tenant, device_id)


async def latest_wipe_status(conn: AConn, device_id: uuid.UUID) -> WipeStatus:
    """Where the data reset asked at the device's latest return stands, as its hub
    reported it. NONE when that return asked none: an older wipe proves nothing of the
    period since."""
    returned = await _one(
        conn,
        "SELECT detail->>'wipe_command_id' AS command_id FROM device_state_changes"
        " WHERE device_id = %s AND to_state = 'returned' ORDER BY at DESC, id DESC LIMIT 1",
        (device_id,),
    )
    if returned is None or returned["command_id"] is None:
        return WipeStatus.NONE
    outcome = await commands.latest_wipe(conn, device_id)
    if outcome is None or str(outcome.command_id) != returned["command_id"]:
        return WipeStatus.NONE
    return WipeStatus(outcome.status)


async def _now(conn: AConn) -> datetime:
    row = await _one(conn, "SELECT now() AS now")
    assert row is not None
    now: datetime = row["now"]
    return now


# --- assignment periods and allow-lists (the invariants of ingest.registry) -----------------


async def _open_assignment(
    conn: AConn, device_id: uuid.UUID, patient_id: uuid.UUID, tenant: str, started_at: datetime
) -> None:
    clash = await _one(conn, registry.ASSIGNMENT_CLASH_SQL, (device_id, started_at))
    if clash is not None:
        raise Conflict(
            registry.assignment_clash_message(
                device_id, clash["id"], clash["started_at"], clash["ended_at"]
            )
        )
    await conn.execute(registry.INSERT_ASSIGNMENT_SQL, (device_id, patient_id, tenant, started_at))


async def _end_assignment(conn: AConn, device_id: uuid.UUID, ended_at: datetime) -> uuid.UUID:
    row = await _one(conn, registry.OPEN_ASSIGNMENT_SQL, (device_id,))
    if row is None:
        raise Conflict("the device has no open assignment")
    if ended_at <= row["started_at"]:
        raise Conflict(
            f"until {ended_at.isoformat()} is not after the assignment's start"
            f" {row['started_at'].isoformat()}"
        )
    await conn.execute(registry.END_ASSIGNMENT_SQL, (ended_at, row["id"]))
    patient: uuid.UUID = row["patient_id"]
    return patient


async def _allow(conn: AConn, hub_id: str, device_id: uuid.UUID, started_at: datetime) -> None:
    clash = await _one(conn, registry.ALLOW_CLASH_SQL, (hub_id, device_id, started_at))
    if clash is not None:
        raise Conflict(
            registry.allow_clash_message(hub_id, device_id, clash["started_at"], clash["ended_at"])
        )
    await conn.execute(registry.INSERT_ALLOW_SQL, (hub_id, device_id, started_at))


async def _disallow_everywhere(conn: AConn, device_id: uuid.UUID, ended_at: datetime) -> list[str]:
    """Take the device off every hub's allow-list at `ended_at`; the hubs, the one it
    joined last first."""
    rows = await _all(
        conn,
        "SELECT id, hub_id, started_at FROM hub_devices WHERE device_id = %s AND ended_at IS NULL"
        " ORDER BY started_at DESC, hub_id FOR UPDATE",
        (device_id,),
    )
    for row in rows:
        if ended_at <= row["started_at"]:
            raise Conflict(
                f"until {ended_at.isoformat()} is not after the start"
                f" {row['started_at'].isoformat()} of the device's place on hub {row['hub_id']}"
            )
        await conn.execute(
            "UPDATE hub_devices SET ended_at = %s WHERE id = %s", (ended_at, row["id"])
        )
    return [str(r["hub_id"]) for r in rows]
