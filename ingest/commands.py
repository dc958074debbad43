"""Commands to hubs: asking a hub to wipe a device or itself, and recording its answer.

The backend writes a `hub_commands` row and the `HubCommand` payload (through the hub
link's transactional outbox, `ingest.hub_link.enqueue`) in the caller's transaction:
a hub is asked if and only if the request committed. The hub carries out a command id
once and answers with a `CommandResult` on `.../results`; ingest records it here
(`record_results`, inside the worker's store transaction).

A device goes back to stock only after its latest wipe says `wiped` (`latest_wipe`),
or a person's override (the devices part records that in `device_state_changes`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from hemhub.contract import CommandKind, CommandResult, DeviceProfile, HubCommand
from ingest.hub_link import enqueue

WipeStatus = Literal["pending", "wiped", "unsupported", "failed"]


class CommandError(ValueError):
    """A command that cannot be asked: an unknown hub or device, or no profile known."""


@dataclass(frozen=True)
class WipeOutcome:
    """Where a command stands: `pending` until the hub's result is recorded."""

    command_id: uuid.UUID
    hub_id: str
    kind: str
    status: WipeStatus
    reason: str | None
    requested_by: str
    requested_at: datetime
    published_at: datetime | None
    finished_at: datetime | None
    device_id: uuid.UUID | None = None
    address: str | None = None
    profile: str | None = None
    #: The whole result as the hub sent it (bond_removed, records_before, ...).
    result: dict[str, Any] | None = None


_INSERT = """
INSERT INTO hub_commands
    (id, hub_id, device_id, kind, address, profile, requested_by, requested_at, outbound_id)
VALUES (%(id)s, %(hub)s, %(device)s, %(kind)s, %(address)s, %(profile)s, %(by)s, %(at)s,
        %(outbound)s)
"""

_COLUMNS = """
    id AS command_id, hub_id, kind, status, reason, requested_by, requested_at,
    published_at, finished_at, device_id, address, profile, result
"""

# The profile a device was used with, best source first: the product catalogue (issue
# 13's devices part), the allow-list last sent to the hub, what a hub last reported.
_PROFILE_FROM_PRODUCT = """
SELECT p.kind FROM devices d JOIN products p ON p.id = d.product_id WHERE d.id = %(device)s
"""
_PROFILE_FROM_CONFIG = """
SELECT e->>'profile' FROM hub_outbound o, jsonb_array_elements(o.payload->'devices') e
WHERE o.hub_id = %(hub)s AND o.topic_kind = 'config' AND upper(e->>'address') = %(address)s
ORDER BY o.id DESC LIMIT 1
"""
_PROFILE_FROM_HUB_REPORT = "SELECT profile FROM device_last_hub WHERE address = %(address)s"


async def _one(conn: psycopg.AsyncConnection[Any], sql: str, params: dict[str, Any]) -> Any:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    return await cur.fetchone()


async def _scalar(conn: psycopg.AsyncConnection[Any], sql: str, params: dict[str, Any]) -> Any:
    # A tuple row whatever the connection's row factory (the API's pool gives dicts).
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(sql, params)
        row = await cur.fetchone()
    return None if row is None else row[0]


async def _device_profile(
    conn: psycopg.AsyncConnection[Any], hub_id: str, device_id: uuid.UUID, address: str
) -> DeviceProfile:
    params = {"device": device_id, "hub": hub_id, "address": address}
    queries = [_PROFILE_FROM_CONFIG, _PROFILE_FROM_HUB_REPORT]
    has_products = await _scalar(
        conn,
        "SELECT count(*) = 1 FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'devices'"
        " AND column_name = 'product_id'",
        {},
    )
    if has_products:
        queries.insert(0, _PROFILE_FROM_PRODUCT)
    for sql in queries:
        value = await _scalar(conn, sql, params)
        if value in DeviceProfile.__members__.values():
            return DeviceProfile(value)
    raise CommandError(
        f"the profile of device {device_id} is not known (no product, no allow-list entry,"
        " no hub report): say which profile to wipe it by"
    )


async def _require_hub(conn: psycopg.AsyncConnection[Any], hub_id: str) -> None:
    if await _scalar(conn, "SELECT 1 FROM hubs WHERE id = %(hub)s", {"hub": hub_id}) is None:
        raise CommandError(f"unknown hub {hub_id!r}")


async def _request(
    conn: psycopg.AsyncConnection[Any],
    command: HubCommand,
    *,
    device_id: uuid.UUID | None,
    requested_by: str,
) -> uuid.UUID:
    if not requested_by.strip():
        raise CommandError("requested_by must name who asked")
    outbound = await enqueue(conn, command.hub_id, "commands", command, retain=False)
    command_id = uuid.UUID(command.command_id)
    async with conn.cursor() as cur:
        await cur.execute(
            _INSERT,
            {
                "id": command_id,
                "hub": command.hub_id,
                "device": device_id,
                "kind": command.kind.value,
                "address": command.address,
                "profile": None if command.profile is None else command.profile.value,
                "by": requested_by[:200],
                "at": command.issued_at,
                "outbound": outbound,
            },
        )
    return command_id


async def request_device_wipe(
    conn: psycopg.AsyncConnection[Any],
    *,
    hub_id: str,
    device_id: uuid.UUID,
    requested_by: str,
    profile: DeviceProfile | None = None,
) -> uuid.UUID:
    """Ask `hub_id` to erase what `device_id` stores and remove its bond; the command id.

    The profile decides how (docs/devices.md, "Data reset"); without `profile` it is
    looked up (see `_device_profile`). Written in the caller's transaction.
    """
    async with conn.transaction():
        await _require_hub(conn, hub_id)
        address = await _scalar(
            conn, "SELECT address FROM devices WHERE id = %(device)s", {"device": device_id}
        )
        if address is None:
            raise CommandError(f"unknown device {device_id}")
        address = str(address).upper()
        if profile is None:
            profile = await _device_profile(conn, hub_id, device_id, address)
        command = HubCommand(
            hub_id=hub_id,
            command_id=str(uuid.uuid4()),
            issued_at=datetime.now(UTC),
            kind=CommandKind.WIPE_DEVICE,
            address=address,
            profile=profile,
        )
        return await _request(conn, command, device_id=device_id, requested_by=requested_by)


async def request_forget_device(
    conn: psycopg.AsyncConnection[Any],
    *,
    hub_id: str,
    device_id: uuid.UUID,
    requested_by: str,
) -> uuid.UUID:
    """Ask `hub_id` to remove the bond of `device_id` and forget it, leaving the device's
    memory as it is (a device moved to another hub of the same home); the command id."""
    async with conn.transaction():
        await _require_hub(conn, hub_id)
        address = await _scalar(
            conn, "SELECT address FROM devices WHERE id = %(device)s", {"device": device_id}
        )
        if address is None:
            raise CommandError(f"unknown device {device_id}")
        command = HubCommand(
            hub_id=hub_id,
            command_id=str(uuid.uuid4()),
            issued_at=datetime.now(UTC),
            kind=CommandKind.FORGET_DEVICE,
            address=str(address).upper(),
        )
        return await _request(conn, command, device_id=device_id, requested_by=requested_by)


async def request_hub_wipe(
    conn: psycopg.AsyncConnection[Any], *, hub_id: str, requested_by: str
) -> uuid.UUID:
    """Ask `hub_id` to erase its outbox, bonds, cached configuration and credentials; the
    command id. The hub reports the result before it erases its credentials; revoking
    them at the broker is the caller's (the hub's registry) part."""
    async with conn.transaction():
        await _require_hub(conn, hub_id)
        command = HubCommand(
            hub_id=hub_id,
            command_id=str(uuid.uuid4()),
            issued_at=datetime.now(UTC),
            kind=CommandKind.WIPE_HUB,
        )
        return await _request(conn, command, device_id=None, requested_by=requested_by)


def _outcome(row: dict[str, Any]) -> WipeOutcome:
    return WipeOutcome(**row)


async def latest_wipe(
    conn: psycopg.AsyncConnection[Any], device_id: uuid.UUID
) -> WipeOutcome | None:
    """The newest wipe_device command of a device, with where it stands; None if never."""
    row = await _one(
        conn,
        f"SELECT {_COLUMNS} FROM hub_commands WHERE device_id = %(device)s"
        " AND kind = 'wipe_device' ORDER BY requested_at DESC, id LIMIT 1",
        {"device": device_id},
    )
    return None if row is None else _outcome(row)


async def get_command(
    conn: psycopg.AsyncConnection[Any], command_id: uuid.UUID
) -> WipeOutcome | None:
    """One command and where it stands; None if unknown."""
    row = await _one(
        conn, f"SELECT {_COLUMNS} FROM hub_commands WHERE id = %(id)s", {"id": command_id}
    )
    return None if row is None else _outcome(row)


async def hub_commands(
    conn: psycopg.AsyncConnection[Any], hub_id: str, *, limit: int = 100
) -> list[WipeOutcome]:
    """A hub's commands, newest first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM hub_commands WHERE hub_id = %(hub)s"
        " ORDER BY requested_at DESC, id LIMIT %(limit)s",
        {"hub": hub_id, "limit": limit},
    )
    return [_outcome(r) for r in await cur.fetchall()]


# --------------------------------------------------------------------------- results

_RECORD = """
UPDATE hub_commands SET
    status = %(status)s, reason = %(reason)s, finished_at = %(finished)s,
    recorded_at = now(), result = %(result)s
WHERE id = %(id)s AND hub_id = %(hub)s AND kind = %(kind)s AND status = 'pending'
RETURNING id
"""

#: A result that changes nothing: already recorded (the hub sent it again).
RecordOutcome = Literal["recorded", "duplicate"]


def record_result(conn: psycopg.Connection[Any], result: CommandResult) -> RecordOutcome | str:
    """Record a hub's result of a command: "recorded", "duplicate" (the first result
    stands), or the reason to dead-letter it (no such command of that hub)."""
    params = {
        "id": uuid.UUID(result.command_id),
        "hub": result.hub_id,
        "kind": result.kind.value,
        "status": result.outcome.value,
        "reason": result.reason,
        "finished": result.finished_at,
        "result": Jsonb(result.model_dump(mode="json", exclude_none=True)),
    }
    if conn.execute(_RECORD, params).fetchone() is not None:
        return "recorded"
    row = conn.execute(
        "SELECT hub_id, kind, status FROM hub_commands WHERE id = %(id)s", params
    ).fetchone()
    if row is None:
        return f"result of unknown command {result.command_id}"
    hub_id, kind, _ = row
    if hub_id != result.hub_id:
        return f"result of command {result.command_id} of another hub"
    if kind != result.kind.value:
        return f"result says {result.kind.value!r} for a {kind!r} command {result.command_id}"
    return "duplicate"
