"""Residents' administrative data: create, rename, programme, schedules, deactivate.

The principal's HMC and admins manage it, its nurses read it; it holds no clinical
values (no readings, no alerts), so HMC staff see none. Every change and every read is
audited under the resident (`api.access.patient_data`). Only the principal's own
residents are reached here (within the token's care units when it names some): another
principal's, shared or not, answer 404. Placing a resident in a care unit is
PUT /api/v1/patients/{id}/care-unit (api.routers.care_units).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Annotated, Any

import psycopg.errors
from fastapi import APIRouter, HTTPException, Query

from api import queries, schemas
from api.access import Access, not_found, patient_data
from api.auth import Fleet, Principal, Registry
from api.db import Conn, DbConn
from hemhub.contract import MeasurementType
from ingest import registry, schedule

router = APIRouter(tags=["residents"])


async def _residents(conn: Conn, rows: list[dict[str, Any]]) -> list[schemas.Resident]:
    """Records with their schedules (one more query for all of them)."""
    ids = [r["id"] for r in rows]
    cur = await conn.execute(registry.RESIDENT_SCHEDULES_SQL, {"ids": ids})
    by_patient: dict[uuid.UUID, list[schemas.Schedule]] = defaultdict(list)
    for s in await cur.fetchall():
        by_patient[s["patient_id"]].append(schemas.Schedule.model_validate(s))
    return [
        schemas.Resident.model_validate(
            {**r, "principal": r["tenant_id"], "schedules": by_patient[r["id"]]}
        )
        for r in rows
    ]


async def _resident(conn: Conn, principal: Principal, patient_id: uuid.UUID) -> schemas.Resident:
    cur = await conn.execute(registry.RESIDENT_SQL, {"id": patient_id, "tenant": principal.tenant})
    row = await cur.fetchone()
    assert row is not None  # reached through access.require_patient
    return (await _residents(conn, [row]))[0]


async def _active(access: Access, patient_id: uuid.UUID) -> None:
    """409 when the resident is deactivated (its registry record is history)."""
    cur = await access.conn.execute(
        "SELECT deactivated_at FROM patients WHERE id = %s", (patient_id,)
    )
    row = await cur.fetchone()
    if row is not None and row["deactivated_at"] is not None:
        raise access.refuse(
            HTTPException(409, detail="the resident is deactivated"),
            patient_id,
            {"outcome": "conflict", "deactivated_at": row["deactivated_at"].isoformat()},
        )


@router.get("/api/v1/residents", response_model=list[schemas.Resident])
async def list_residents(
    principal: Registry,
    conn: DbConn,
    deactivated: Annotated[bool, Query(description="also list deactivated residents")] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=schemas.MAX_OFFSET)] = 0,
) -> list[schemas.Resident]:
    """The principal's residents (within the token's care units), by name."""
    async with patient_data(conn, principal, "residents.list", "residents") as access:
        sql = queries.RESIDENTS_SQL.format(
            scope=queries.own(care_units=principal.care_units is not None),
            active="" if deactivated else "AND p.deactivated_at IS NULL",
        )
        params = {
            **queries.scope_params(principal.tenant, principal.care_unit_list),
            "limit": limit,
            "offset": offset,
        }
        residents = await _residents(conn, await (await conn.execute(sql, params)).fetchall())
        await access.record_many(
            (r.id for r in residents), {"count": len(residents), "deactivated": deactivated}
        )
    return residents


@router.post("/api/v1/residents", response_model=schemas.Resident, status_code=201)
async def create_resident(
    principal: Fleet, conn: DbConn, body: schemas.ResidentCreate
) -> schemas.Resident:
    """A new resident of the caller's principal, optionally placed in one of its care units."""
    unit = body.care_unit_id
    async with patient_data(conn, principal, "resident.create", "residents") as access:
        if unit is not None and (
            (principal.care_units is not None and unit not in principal.care_units)
            or await (
                await conn.execute(registry.CARE_UNIT_OF_TENANT_SQL, (unit, principal.tenant))
            ).fetchone()
            is None
        ):
            raise not_found("care unit")
        if principal.care_units is not None and unit is None:
            # A unit-scoped caller could not see a resident placed in no unit.
            raise HTTPException(422, detail="care_unit_id: required for a care-unit token")
        try:
            row = await (
                await conn.execute(
                    registry.CREATE_RESIDENT_SQL,
                    {
                        "tenant": principal.tenant,
                        "name": body.display_name.strip(),
                        "programme": body.programme,
                        "unit": unit,
                    },
                )
            ).fetchone()
        except psycopg.errors.ForeignKeyViolation as exc:
            raise HTTPException(409, detail="the principal is not registered") from exc
        assert row is not None
        resident = await _resident(conn, principal, row["id"])
        await access.record(
            resident.id,
            {"programme": resident.programme, "care_unit_id": unit and str(unit)},
        )
    return resident


@router.get("/api/v1/residents/{patient_id}", response_model=schemas.Resident)
async def get_resident(
    patient_id: uuid.UUID, principal: Registry, conn: DbConn
) -> schemas.Resident:
    """One resident's administrative record and schedules."""
    resource = f"residents/{patient_id}"
    async with patient_data(conn, principal, "resident.read", resource) as access:
        await access.require_patient(patient_id)
        resident = await _resident(conn, principal, patient_id)
        await access.record(patient_id)
    return resident


@router.patch("/api/v1/residents/{patient_id}", response_model=schemas.Resident)
async def update_resident(
    patient_id: uuid.UUID, principal: Fleet, conn: DbConn, body: schemas.ResidentUpdate
) -> schemas.Resident:
    """Change the display name and/or the programme (also of a deactivated resident:
    corrections of the record)."""
    resource = f"residents/{patient_id}"
    async with patient_data(conn, principal, "resident.update", resource) as access:
        await access.require_patient(patient_id, lock=True)
        before = await _resident(conn, principal, patient_id)
        name = body.display_name.strip() if body.display_name is not None else None
        await conn.execute(
            registry.UPDATE_RESIDENT_SQL,
            {
                "id": patient_id,
                "tenant": principal.tenant,
                "name": name,
                "programme": body.programme,
            },
        )
        resident = await _resident(conn, principal, patient_id)
        changes = {
            field: {"from": getattr(before, field), "to": getattr(resident, field)}
            for field in ("display_name", "programme")
            if getattr(before, field) != getattr(resident, field)
        }
        await access.record(patient_id, {"changes": changes})
    return resident


@router.put(
    "/api/v1/residents/{patient_id}/schedules/{measurement_type}",
    response_model=schemas.Resident,
)
async def set_schedule(
    patient_id: uuid.UUID,
    measurement_type: MeasurementType,
    principal: Fleet,
    conn: DbConn,
    body: schemas.ScheduleSet,
) -> schemas.Resident:
    """Expect the measurement every `every` from `starts_at` (default now): the
    missing-data rules alert when none arrives in time (docs/alerts.md)."""
    resource = f"residents/{patient_id}/schedules/{measurement_type.value}"
    async with patient_data(conn, principal, "resident.schedule", resource) as access:
        await access.require_patient(patient_id, lock=True)
        await _active(access, patient_id)
        await conn.execute(
            schedule.UPSERT_SCHEDULE_SQL,
            (patient_id, measurement_type.value, body.every, body.starts_at, True, principal.sub),
        )
        resident = await _resident(conn, principal, patient_id)
        await access.record(
            patient_id,
            {
                "measurement_type": measurement_type.value,
                "every_s": body.every.total_seconds(),
                "starts_at": body.starts_at and body.starts_at.isoformat(),
                "active": True,
            },
        )
    return resident


@router.delete(
    "/api/v1/residents/{patient_id}/schedules/{measurement_type}",
    response_model=schemas.Resident,
)
async def stop_schedule(
    patient_id: uuid.UUID, measurement_type: MeasurementType, principal: Fleet, conn: DbConn
) -> schemas.Resident:
    """Stop expecting the measurement (the schedule is kept, inactive)."""
    resource = f"residents/{patient_id}/schedules/{measurement_type.value}"
    async with patient_data(conn, principal, "resident.schedule", resource) as access:
        await access.require_patient(patient_id, lock=True)
        cur = await conn.execute(
            "UPDATE monitoring_schedules SET active = false, created_by = %s, created_at = now()"
            " WHERE patient_id = %s AND measurement_type = %s RETURNING patient_id",
            (principal.sub, patient_id, measurement_type.value),
        )
        if await cur.fetchone() is None:
            raise access.refuse(
                not_found("schedule"), patient_id, {"outcome": "not_found", "schedule": resource}
            )
        resident = await _resident(conn, principal, patient_id)
        await access.record(
            patient_id, {"measurement_type": measurement_type.value, "active": False}
        )
    return resident


@router.post("/api/v1/residents/{patient_id}/deactivate", response_model=schemas.Resident)
async def deactivate_resident(
    patient_id: uuid.UUID, principal: Fleet, conn: DbConn, body: schemas.Deactivation
) -> schemas.Resident:
    """Deactivate the resident now: its history stays readable, nothing new is attributed
    to it and it gets no new alerts (its schedules stop). 409 while a device is assigned
    to it (return the devices first) or when it is deactivated already."""
    resource = f"residents/{patient_id}"
    async with patient_data(conn, principal, "resident.deactivate", resource) as access:
        await access.require_patient(patient_id, lock=True)
        await _active(access, patient_id)
        params = {
            "id": patient_id,
            "tenant": principal.tenant,
            "by": principal.sub,
            "reason": body.reason.strip(),
        }
        assigned = await (await conn.execute(registry.ASSIGNED_ON_SQL, params)).fetchall()
        if assigned:
            devices = [str(a["stable_id"]) for a in assigned]
            raise access.refuse(
                HTTPException(
                    409,
                    detail="devices are still assigned to the resident, return them first: "
                    + ", ".join(devices),
                ),
                patient_id,
                {"outcome": "conflict", "devices": devices},
            )
        await conn.execute(registry.DEACTIVATE_SQL, params)
        await conn.execute(registry.STOP_SCHEDULES_SQL, params)
        resident = await _resident(conn, principal, patient_id)
        await access.record(patient_id, {"reason": params["reason"]})
    return resident
