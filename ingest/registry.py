"""Registry operations: tenants (principals), care units, patients, devices, assignment
periods, hubs and their allow-lists.

Synchronous, on a caller's psycopg connection. Each function is atomic on its own
(`conn.transaction()` becomes a savepoint when the caller already holds a
transaction), and commits nothing beyond what the caller's transaction allows.

Assignment periods are what readings are attributed by (see `ingest.pipeline`), so
they must never overlap for one device: two periods covering the same instant
would make the owner of a reading measured then ambiguous.

A hub belongs to one principal, and writes only for the devices on its allow-list:
periods (hub, device, from, until), checked against each reading's measurement time
(see `ingest.pipeline`); a reading of any other hub is stored quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import errors

from hemhub.contract import DeviceIdentity

Conn = psycopg.Connection[Any]


class RegistryError(ValueError):
    """A registry operation that would break an invariant (not a database failure)."""


class AssignmentError(RegistryError):
    """A device assignment that would overlap another, or end nothing."""


class AllowListError(RegistryError):
    """An allow-list period that would overlap another, or end nothing."""


def aware(at: datetime, what: str) -> datetime:
    """`at`, unless it is naive (RegistryError): a naive time would be read in the
    session time zone, a silently wrong attribution."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise RegistryError(f"{what} must carry a UTC offset")
    return at


_aware = aware

# --- the statements of assignment periods and allow-lists, shared with the async fleet
# --- operations (ingest/inventory.py) so both keep the same invariants -------------------

#: Whether a patient is of a principal.
PATIENT_OF_TENANT_SQL = (
    "SELECT deactivated_at FROM patients WHERE id = %s AND tenant_id = %s FOR SHARE"
)

#: The first period of a device that is open or ends after an instant (device, instant).
ASSIGNMENT_CLASH_SQL = """
SELECT id, patient_id, started_at, ended_at FROM device_assignments
WHERE device_id = %s
  AND (ended_at IS NULL OR ended_at > %s)
ORDER BY started_at LIMIT 1
"""

INSERT_ASSIGNMENT_SQL = (
    "INSERT INTO device_assignments (device_id, patient_id, tenant_id, started_at)"
    " VALUES (%s, %s, %s, %s) RETURNING id"
)

#: The open period of a device, locked (device).
OPEN_ASSIGNMENT_SQL = (
    "SELECT id, patient_id, started_at FROM device_assignments"
    " WHERE device_id = %s AND ended_at IS NULL FOR UPDATE"
)

END_ASSIGNMENT_SQL = "UPDATE device_assignments SET ended_at = %s WHERE id = %s"

#: The first allow-list period of a hub and device open or ending after an instant.
ALLOW_CLASH_SQL = (
    "SELECT id, started_at, ended_at FROM hub_devices"
    " WHERE hub_id = %s AND device_id = %s AND (ended_at IS NULL OR ended_at > %s)"
    " ORDER BY started_at LIMIT 1"
)

INSERT_ALLOW_SQL = (
    "INSERT INTO hub_devices (hub_id, device_id, started_at) VALUES (%s, %s, %s) RETURNING id"
)


def assignment_clash_message(
    device_id: UUID, assignment_id: UUID, started_at: datetime, ended_at: datetime | None
) -> str:
    if ended_at is None:
        return (
            f"device {device_id} is still assigned (assignment {assignment_id} since"
            f" {started_at.isoformat()}); end it first"
        )
    return (
        f"device {device_id} was assigned until {ended_at.isoformat()}"
        f" (assignment {assignment_id}); a new period cannot start before that"
    )


def allow_clash_message(
    hub_id: str, device_id: UUID, started_at: datetime, ended_at: datetime | None
) -> str:
    if ended_at is None:
        return (
            f"device {device_id} is on hub {hub_id}'s allow-list since"
            f" {started_at.isoformat()}; take it off first"
        )
    return (
        f"device {device_id} was on hub {hub_id}'s allow-list until"
        f" {ended_at.isoformat()}; a new period cannot start before that"
    )


def ensure_tenant(conn: Conn, tenant_id: str, name: str) -> None:
    """Create the tenant (principal) if missing; an existing one gets the given name."""
    conn.execute(
        "INSERT INTO tenants (id, name) VALUES (%s, %s)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name"
        " WHERE tenants.name IS DISTINCT FROM EXCLUDED.name",
        (tenant_id, name),
    )


def create_patient(
    conn: Conn, tenant_id: str, display_name: str, programme: str = "hypertension"
) -> UUID:
    """Create a patient of a tenant; return the new id."""
    row = conn.execute(
        "INSERT INTO patients (tenant_id, display_name, programme) VALUES (%s, %s, %s)"
        " RETURNING id",
        (tenant_id, display_name, programme),
    ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def ensure_device(conn: Conn, identity: DeviceIdentity, seen_at: datetime | None = None) -> UUID:
    """Upsert a device by its stable id; refresh address, firmware and last_seen_at.

    Firmware and address are only overwritten by a sighting at least as recent as the
    last one, so an old backlog replayed later does not roll the record back.
    """
    row = conn.execute(
        """
        INSERT INTO devices AS d
            (stable_id, address, manufacturer, model, serial, firmware,
             first_seen_at, last_seen_at)
        VALUES (%(stable_id)s, %(address)s, %(manufacturer)s, %(model)s, %(serial)s,
                %(firmware)s, coalesce(%(seen_at)s, now()), coalesce(%(seen_at)s, now()))
        ON CONFLICT (stable_id) DO UPDATE SET
            address = CASE WHEN EXCLUDED.last_seen_at >= d.last_seen_at
                           THEN EXCLUDED.address ELSE d.address END,
            firmware = CASE WHEN EXCLUDED.last_seen_at >= d.last_seen_at
                            THEN coalesce(EXCLUDED.firmware, d.firmware) ELSE d.firmware END,
            last_seen_at = greatest(d.last_seen_at, EXCLUDED.last_seen_at)
        RETURNING id
        """,
        {
            "stable_id": identity.stable_id,
            "address": identity.address,
            "manufacturer": identity.manufacturer,
            "model": identity.model,
            "serial": identity.serial,
            "firmware": identity.firmware,
            "seen_at": seen_at,
        },
    ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def assign_device(conn: Conn, device_id: UUID, patient_id: UUID, started_at: datetime) -> UUID:
    """Open an assignment period of a device to a patient from `started_at`.

    The tenant is the patient's. Raises AssignmentError when the device still has an
    open assignment or when the new period would start inside an earlier one.
    """
    _aware(started_at, "started_at")
    with conn.transaction():
        # Lock the device row: serialises concurrent assignments of the same device.
        locked = conn.execute("SELECT 1 FROM devices WHERE id = %s FOR UPDATE", (device_id,))
        if locked.fetchone() is None:
            raise RegistryError(f"unknown device {device_id}")
        # FOR SHARE: a deactivation of the patient (FOR UPDATE) waits, or is waited for.
        patient = conn.execute(
            "SELECT tenant_id, deactivated_at FROM patients WHERE id = %s FOR SHARE",
            (patient_id,),
        ).fetchone()
        if patient is None:
            raise RegistryError(f"unknown patient {patient_id}")
        if patient[1] is not None:
            raise AssignmentError(f"patient {patient_id} is deactivated: nothing is assigned")
        clash = conn.execute(ASSIGNMENT_CLASH_SQL, (device_id, started_at)).fetchone()
        if clash is not None:
            raise AssignmentError(assignment_clash_message(device_id, clash[0], clash[2], clash[3]))
        try:
            row = conn.execute(
                INSERT_ASSIGNMENT_SQL, (device_id, patient_id, patient[0], started_at)
            ).fetchone()
        except errors.UniqueViolation as exc:  # device_assignments_one_open, belt and braces
            raise AssignmentError(f"device {device_id} is still assigned") from exc
        # The first principal to lend the device out takes it into its fleet (who may
        # see its unattributed readings); an owner set before is kept.
        conn.execute(
            "UPDATE devices SET owner_tenant_id = %s WHERE id = %s AND owner_tenant_id IS NULL",
            (patient[0], device_id),
        )
    assert row is not None
    return UUID(str(row[0]))


def end_assignment(conn: Conn, device_id: UUID, ended_at: datetime) -> UUID:
    """Close the open assignment of a device at `ended_at`; return the assignment id.

    Readings measured from `ended_at` on are no longer attributed to that patient.
    """
    _aware(ended_at, "ended_at")
    with conn.transaction():
        row = conn.execute(OPEN_ASSIGNMENT_SQL, (device_id,)).fetchone()
        if row is None:
            raise AssignmentError(f"device {device_id} has no open assignment")
        if ended_at <= row[2]:
            raise AssignmentError(
                f"ended_at {ended_at.isoformat()} is not after the start"
                f" {row[2].isoformat()} of assignment {row[0]}"
            )
        conn.execute(END_ASSIGNMENT_SQL, (ended_at, row[0]))
    return UUID(str(row[0]))


def device_id_by_stable_id(conn: Conn, stable_id: str) -> UUID | None:
    """The device id of a stable id, or None when the device was never seen."""
    row = conn.execute("SELECT id FROM devices WHERE stable_id = %s", (stable_id,)).fetchone()
    return None if row is None else UUID(str(row[0]))


# --- care units and fleet ownership --------------------------------------------------------
#
# The SQL is shared with the API (async connections), which runs the same statements.

CREATE_CARE_UNIT_SQL = (
    "INSERT INTO care_units (tenant_id, name) VALUES (%s, %s) RETURNING id, created_at"
)

#: The principal's care units with their number of residents, by name.
CARE_UNITS_SQL = """
SELECT u.id, u.tenant_id, u.name, u.created_at, count(p.id)::int AS residents
FROM care_units u
LEFT JOIN patients p ON p.care_unit_id = u.id AND p.tenant_id = u.tenant_id
WHERE u.tenant_id = %s
GROUP BY u.id
ORDER BY u.name, u.id
"""

#: Place a resident in a unit of the resident's own principal (NULL: in none). The
#: composite foreign key (tenant_id, care_unit_id) rejects a unit of another principal.
PLACE_PATIENT_SQL = (
    "UPDATE patients SET care_unit_id = %s WHERE id = %s AND tenant_id = %s RETURNING id"
)

#: Whether a care unit belongs to the principal.
CARE_UNIT_OF_TENANT_SQL = "SELECT 1 FROM care_units WHERE id = %s AND tenant_id = %s"


@dataclass(frozen=True)
class CareUnit:
    id: UUID
    tenant_id: str
    name: str
    created_at: datetime
    residents: int


def create_care_unit(conn: Conn, tenant_id: str, name: str) -> UUID:
    """Create a care unit of a tenant; a name is unique within its tenant."""
    name = name.strip()
    if not name:
        raise RegistryError("a care unit needs a name")
    try:
        with conn.transaction():
            row = conn.execute(CREATE_CARE_UNIT_SQL, (tenant_id, name)).fetchone()
    except errors.UniqueViolation as exc:
        raise RegistryError(f"tenant {tenant_id} already has a care unit named {name!r}") from exc
    except errors.ForeignKeyViolation as exc:
        raise RegistryError(f"unknown tenant {tenant_id}") from exc
    assert row is not None
    return UUID(str(row[0]))


def care_units(conn: Conn, tenant_id: str) -> list[CareUnit]:
    """The tenant's care units, by name, with their number of residents."""
    rows = conn.execute(CARE_UNITS_SQL, (tenant_id,)).fetchall()
    return [CareUnit(UUID(str(r[0])), r[1], r[2], r[3], r[4]) for r in rows]


def place_patient(conn: Conn, patient_id: UUID, care_unit_id: UUID | None) -> None:
    """Put a resident in a care unit of its own tenant, or (None) in none."""
    with conn.transaction():
        patient = conn.execute(
            "SELECT tenant_id FROM patients WHERE id = %s FOR UPDATE", (patient_id,)
        ).fetchone()
        if patient is None:
            raise RegistryError(f"unknown patient {patient_id}")
        if care_unit_id is not None and (
            conn.execute(CARE_UNIT_OF_TENANT_SQL, (care_unit_id, patient[0])).fetchone() is None
        ):
            raise RegistryError(f"care unit {care_unit_id} is not a unit of tenant {patient[0]}")
        conn.execute(PLACE_PATIENT_SQL, (care_unit_id, patient_id, patient[0]))


def set_device_owner(conn: Conn, device_id: UUID, tenant_id: str | None) -> None:
    """Record which principal's fleet owns a device (None: unknown)."""
    try:
        with conn.transaction():
            row = conn.execute(
                "UPDATE devices SET owner_tenant_id = %s WHERE id = %s RETURNING id",
                (tenant_id, device_id),
            ).fetchone()
    except errors.ForeignKeyViolation as exc:
        raise RegistryError(f"unknown tenant {tenant_id}") from exc
    if row is None:
        raise RegistryError(f"unknown device {device_id}")


# --- hubs and their allow-lists ------------------------------------------------------------


def register_hub(conn: Conn, hub_id: str, tenant_id: str) -> None:
    """Register a hub under a principal (a hub already seen, unregistered, joins it).

    A hub of another principal is not moved: that would hand it the other principal's
    devices' history; raises RegistryError.
    """
    with conn.transaction():
        if conn.execute("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,)).fetchone() is None:
            raise RegistryError(f"unknown tenant {tenant_id}")
        row = conn.execute(
            "INSERT INTO hubs AS h (id, tenant_id) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id"
            " WHERE h.tenant_id IS NULL OR h.tenant_id = EXCLUDED.tenant_id"
            " RETURNING id",
            (hub_id, tenant_id),
        ).fetchone()
        if row is None:
            raise RegistryError(f"hub {hub_id} is registered under another principal")


def allow_device(conn: Conn, hub_id: str, device_id: UUID, started_at: datetime) -> UUID:
    """Put a device on a hub's allow-list from `started_at`; return the period's id.

    The hub must be registered, and the device of the hub's principal at `started_at`
    (its resident's then, else its fleet owner): a device with no fleet owner yet joins
    the hub principal's fleet. Readings are checked each against its own time. Raises
    AllowListError when the device is still on the hub's list or a period would start
    inside an earlier one.
    """
    _aware(started_at, "started_at")
    with conn.transaction():
        hub = conn.execute(
            "SELECT tenant_id FROM hubs WHERE id = %s FOR UPDATE", (hub_id,)
        ).fetchone()
        if hub is None or hub[0] is None:
            raise RegistryError(f"hub {hub_id} is not registered under a principal")
        # The device's principal then: its resident's (a device lent to another
        # principal's resident), else its fleet owner's.
        device = conn.execute(
            "SELECT coalesce((SELECT da.tenant_id FROM device_assignments da"
            "   WHERE da.device_id = d.id AND da.started_at <= %s"
            "     AND (da.ended_at IS NULL OR %s < da.ended_at)"
            "   ORDER BY da.started_at DESC LIMIT 1), d.owner_tenant_id)"
            " FROM devices d WHERE d.id = %s FOR UPDATE",
            (started_at, started_at, device_id),
        ).fetchone()
        if device is None:
            raise RegistryError(f"unknown device {device_id}")
        if device[0] is not None and device[0] != hub[0]:
            raise RegistryError(
                f"device {device_id} is of principal {device[0]} at {started_at.isoformat()},"
                f" hub {hub_id} of {hub[0]}"
            )
        clash = conn.execute(ALLOW_CLASH_SQL, (hub_id, device_id, started_at)).fetchone()
        if clash is not None:
            raise AllowListError(allow_clash_message(hub_id, device_id, clash[1], clash[2]))
        row = conn.execute(INSERT_ALLOW_SQL, (hub_id, device_id, started_at)).fetchone()
        conn.execute(
            "UPDATE devices SET owner_tenant_id = %s WHERE id = %s AND owner_tenant_id IS NULL",
            (hub[0], device_id),
        )
    assert row is not None
    return UUID(str(row[0]))


def disallow_device(conn: Conn, hub_id: str, device_id: UUID, ended_at: datetime) -> UUID:
    """Take a device off a hub's allow-list at `ended_at`; return the period's id.

    Readings the hub sends of it measured from `ended_at` on are quarantined.
    """
    _aware(ended_at, "ended_at")
    with conn.transaction():
        row = conn.execute(
            "SELECT id, started_at FROM hub_devices"
            " WHERE hub_id = %s AND device_id = %s AND ended_at IS NULL FOR UPDATE",
            (hub_id, device_id),
        ).fetchone()
        if row is None:
            raise AllowListError(f"device {device_id} is not on hub {hub_id}'s allow-list")
        if ended_at <= row[1]:
            raise AllowListError(
                f"ended_at {ended_at.isoformat()} is not after the start"
                f" {row[1].isoformat()} of allow-list period {row[0]}"
            )
        conn.execute("UPDATE hub_devices SET ended_at = %s WHERE id = %s", (ended_at, row[0]))
    return UUID(str(row[0]))


# --- residents: administrative data and deactivation --------------------------------------
#
# The SQL is shared with the API (api/routers/residents.py), which runs the same statements.

#: A resident's administrative record (no clinical values).
RESIDENT_SQL = """
SELECT p.id, p.tenant_id, p.display_name, p.programme, p.care_unit_id, p.created_at,
       p.deactivated_at, p.deactivated_by, p.deactivation_reason
FROM patients p WHERE p.id = %(id)s AND p.tenant_id = %(tenant)s
"""

#: Their monitoring schedules (ingest.schedule), by measurement type.
RESIDENT_SCHEDULES_SQL = """
SELECT patient_id, measurement_type, every, starts_at, active, created_by, created_at
FROM monitoring_schedules WHERE patient_id = ANY(%(ids)s::uuid[])
ORDER BY patient_id, measurement_type
"""

CREATE_RESIDENT_SQL = """
INSERT INTO patients (tenant_id, display_name, programme, care_unit_id)
VALUES (%(tenant)s, %(name)s, %(programme)s, %(unit)s)
RETURNING id
"""

#: Change the display name and/or programme (NULL: keep).
UPDATE_RESIDENT_SQL = """
UPDATE patients SET display_name = coalesce(%(name)s, display_name),
                    programme = coalesce(%(programme)s, programme)
WHERE id = %(id)s AND tenant_id = %(tenant)s
RETURNING id
"""

#: Assignments that would still attribute readings to the resident after now: open ones
#: and those ending in the future. A resident is deactivated only without any.
ASSIGNED_ON_SQL = """
SELECT d.id AS device_id, d.stable_id, da.started_at, da.ended_at
FROM device_assignments da JOIN devices d ON d.id = da.device_id
WHERE da.patient_id = %(id)s AND (da.ended_at IS NULL OR da.ended_at > now())
ORDER BY d.stable_id
"""

DEACTIVATE_SQL = """
UPDATE patients SET deactivated_at = now(), deactivated_by = %(by)s,
                    deactivation_reason = %(reason)s
WHERE id = %(id)s AND tenant_id = %(tenant)s AND deactivated_at IS NULL
RETURNING deactivated_at
"""

#: A deactivated resident is expected to measure nothing: the missing-data rules stop.
STOP_SCHEDULES_SQL = "UPDATE monitoring_schedules SET active = false WHERE patient_id = %(id)s"


def deactivate_patient(conn: Conn, patient_id: UUID, *, by: str, reason: str) -> datetime:
    """Deactivate a resident now: its history stays, nothing new is attributed to it (it
    must have no device assigned), it gets no new alerts (its schedules stop; ingest and
    the scheduled evaluation skip deactivated residents). Returns when.

    Raises RegistryError for an unknown or already deactivated resident, AssignmentError
    while a device is (or will stay) assigned to it: return the devices first.
    """
    if not reason.strip():
        raise RegistryError("a deactivation needs a reason")
    with conn.transaction():
        row = conn.execute(
            "SELECT tenant_id, deactivated_at FROM patients WHERE id = %s FOR UPDATE",
            (patient_id,),
        ).fetchone()
        if row is None:
            raise RegistryError(f"unknown patient {patient_id}")
        if row[1] is not None:
            raise RegistryError(f"patient {patient_id} was deactivated at {row[1].isoformat()}")
        params = {"id": patient_id, "tenant": row[0], "by": by, "reason": reason.strip()}
        assigned = conn.execute(ASSIGNED_ON_SQL, params).fetchall()
        if assigned:
            names = ", ".join(str(a[1]) for a in assigned)
            raise AssignmentError(
                f"patient {patient_id} still has devices assigned ({names}): return them first"
            )
        done = conn.execute(DEACTIVATE_SQL, params).fetchone()
        conn.execute(STOP_SCHEDULES_SQL, params)
    assert done is not None
    return done[0]
