"""The principal's patients and their observations."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from api import queries, schemas
from api.access import patient_data
from api.auth import Nurse, Reader
from api.db import DbConn
from hemhub.contract import MeasurementType

router = APIRouter()


def _observation(row: dict[str, Any]) -> schemas.Observation:
    return schemas.Observation(
        id=row["idempotency_key"],
        measured_at=row["measured_at"],
        measurement_type=row["measurement_type"],
        values=row["values"],
        status=row["status"],
        device=schemas.Device(address=row["address"], model=row["model"], serial=row["serial"]),
        hub_id=row["hub_id"],
        clock=schemas.Clock(
            source=row["clock_source"],
            offset_s=row["clock_offset_s"],
            hub_clock_synced=row["hub_clock_synced"],
        ),
        late=row["late"],
        raw_hex=bytes(row["raw"]).hex(),
        device_sequence=row["device_sequence"],
        event=row["event"],
    )


@router.get("/api/v1/patients", response_model=list[schemas.Patient], tags=["patients"])
async def list_patients(
    principal: Nurse,
    conn: DbConn,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=schemas.MAX_OFFSET)] = 0,
    deactivated: Annotated[
        bool, Query(description="also list deactivated residents (their history)")
    ] = False,
) -> list[schemas.Patient]:
    """The patients the caller sees (its principal's, and those other principals share
    with it while the share is in force), with their count of open alerts it sees."""
    async with patient_data(conn, principal, "patients.list", "patients") as access:
        care_units = principal.care_units is not None
        cur = await conn.execute(
            queries.PATIENTS_SQL.format(
                scope=queries.visible(at=None, care_units=care_units),
                alert_scope=queries.visible(
                    at="a.measured_at",
                    care_units=care_units,
                    data_tenant="a.tenant_id",
                    data_patient="a.patient_id",
                ),
                active="" if deactivated else "AND p.deactivated_at IS NULL",
            ),
            {
                **queries.scope_params(principal.tenant, principal.care_unit_list),
                "limit": limit,
                "offset": offset,
            },
        )
        patients = [schemas.Patient.model_validate(r) for r in await cur.fetchall()]
        # One row per patient shown: the roster shows names, and the log is reviewed as
        # "who looked at this patient".
        await access.record_many(
            (p.id for p in patients), {"count": len(patients), "limit": limit, "offset": offset}
        )
    return patients


@router.get(
    "/api/v1/patients/{patient_id}/observations",
    response_model=list[schemas.Observation],
    tags=["patients"],
)
async def list_observations(
    patient_id: uuid.UUID,
    principal: Reader,
    conn: DbConn,
    since: Annotated[schemas.Instant | None, Query(description="inclusive lower bound")] = None,
    until: Annotated[schemas.Instant | None, Query(description="exclusive upper bound")] = None,
    measurement_type: Annotated[MeasurementType | None, Query(alias="type")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.Observation]:
    """Readings attributed to the patient (by assignment period), newest first; of a
    resident another principal shares, those measured in the shared period.

    Page backwards by passing the oldest `measured_at` you got as `until`.
    """
    if since is not None and until is not None and since >= until:
        raise RequestValidationError(
            [{"loc": ("query", "until"), "msg": "until must be after since", "type": "value_error"}]
        )
    resource = f"patients/{patient_id}/observations"
    async with patient_data(conn, principal, "observations.read", resource) as access:
        await access.require_patient(patient_id, shared=True)
        filters = []
        params: dict[str, Any] = {
            **queries.scope_params(principal.tenant, principal.care_unit_list),
            "patient": patient_id,
            "limit": limit,
        }
        if since is not None:
            filters.append("AND r.measured_at >= %(since)s")
            params["since"] = since
        if until is not None:
            filters.append("AND r.measured_at < %(until)s")
            params["until"] = until
        if measurement_type is not None:
            filters.append("AND r.measurement_type = %(type)s")
            params["type"] = measurement_type.value
        scope = queries.visible(
            at="r.measured_at",
            care_units=principal.care_units is not None,
            data_tenant="r.tenant_id",
            data_patient="r.patient_id",
        )
        cur = await conn.execute(
            queries.OBSERVATIONS_SQL.format(scope=scope, filters=" ".join(filters)), params
        )
        observations = [_observation(r) for r in await cur.fetchall()]
        await access.record(
            patient_id,
            {
                "count": len(observations),
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
                "type": measurement_type.value if measurement_type else None,
            },
        )
    return observations
