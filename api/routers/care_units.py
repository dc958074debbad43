"""Care units of a principal, and placing residents in them."""

from __future__ import annotations

import uuid

import psycopg
import psycopg.errors
from fastapi import APIRouter, HTTPException

from api import queries, schemas
from api.access import not_found, patient_data
from api.auth import Fleet
from api.db import DbConn
from ingest import registry

router = APIRouter()


@router.get("/api/v1/care-units", response_model=list[schemas.CareUnit], tags=["care units"])
async def list_care_units(principal: Fleet, conn: DbConn) -> list[schemas.CareUnit]:
    """The principal's care units with their number of residents (no patient data)."""
    cur = await conn.execute(registry.CARE_UNITS_SQL, (principal.tenant,))
    units = [schemas.CareUnit.model_validate(r) for r in await cur.fetchall()]
    if principal.care_units is not None:
        units = [u for u in units if u.id in principal.care_units]
    return units


@router.post(
    "/api/v1/care-units",
    response_model=schemas.CareUnit,
    status_code=201,
    responses={409: {}},
    tags=["care units"],
)
async def create_care_unit(
    principal: Fleet, conn: DbConn, body: schemas.CareUnitCreate
) -> schemas.CareUnit:
    """A new care unit of the caller's principal; names are unique within a principal."""
    name = body.name.strip()
    try:
        async with conn.transaction():
            row = await (
                await conn.execute(registry.CREATE_CARE_UNIT_SQL, (principal.tenant, name))
            ).fetchone()
            assert row is not None
            async with patient_data(
                conn, principal, "care_unit.create", f"care-units/{row['id']}"
            ) as access:
                await access.record(None, {"name": name})
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, detail="a care unit of that name exists") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        # The principal is not in the registry yet: nothing to attach a unit to.
        raise HTTPException(409, detail="the principal is not registered") from exc
    return schemas.CareUnit(id=row["id"], name=name, created_at=row["created_at"], residents=0)


@router.put(
    "/api/v1/patients/{patient_id}/care-unit",
    response_model=schemas.PatientCareUnit,
    tags=["care units"],
)
async def place_patient(
    patient_id: uuid.UUID, principal: Fleet, conn: DbConn, body: schemas.CareUnitPlacement
) -> schemas.PatientCareUnit:
    """Place the resident in a care unit of the principal (`null`: in none)."""
    resource = f"patients/{patient_id}/care-unit"
    unit = body.care_unit_id
    async with patient_data(conn, principal, "patient.care_unit", resource) as access:
        await access.require_patient(patient_id, lock=True)
        in_scope = principal.care_units is None or unit in principal.care_units
        if unit is not None and (
            not in_scope
            or await (
                await conn.execute(registry.CARE_UNIT_OF_TENANT_SQL, (unit, principal.tenant))
            ).fetchone()
            is None
        ):
            raise not_found("care unit")
        await conn.execute(registry.PLACE_PATIENT_SQL, (unit, patient_id, principal.tenant))
        await access.record(patient_id, {"care_unit_id": str(unit) if unit else None})
    return schemas.PatientCareUnit(patient_id=patient_id, care_unit_id=unit)


@router.patch(
    "/api/v1/care-units/{care_unit_id}",
    response_model=schemas.CareUnit,
    responses={409: {}},
    tags=["care units"],
)
async def rename_care_unit(
    care_unit_id: uuid.UUID, principal: Fleet, conn: DbConn, body: schemas.CareUnitRename
) -> schemas.CareUnit:
    """Rename a care unit of the caller's principal (within the token's care units)."""
    name = body.name.strip()
    if principal.care_units is not None and care_unit_id not in principal.care_units:
        raise not_found("care unit")
    try:
        async with patient_data(
            conn, principal, "care_unit.rename", f"care-units/{care_unit_id}"
        ) as access:
            before = await (
                await conn.execute(
                    "SELECT name FROM care_units WHERE id = %s AND tenant_id = %s FOR UPDATE",
                    (care_unit_id, principal.tenant),
                )
            ).fetchone()
            if before is None:
                raise not_found("care unit")
            await conn.execute(
                queries.RENAME_CARE_UNIT_SQL,
                {"id": care_unit_id, "tenant": principal.tenant, "name": name},
            )
            await access.record(None, {"from": before["name"], "to": name})
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, detail="a care unit of that name exists") from exc
    cur = await conn.execute(registry.CARE_UNITS_SQL, (principal.tenant,))
    return next(
        schemas.CareUnit.model_validate(r) for r in await cur.fetchall() if r["id"] == care_unit_id
    )
