"""A patient's alert thresholds: the version in force and new versions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api import schemas
from api.access import patient_data
from api.auth import Nurse
from api.db import Conn, DbConn
from ingest import thresholds

router = APIRouter()


async def _threshold_book(conn: Conn, patient_id: uuid.UUID) -> thresholds.ThresholdBook:
    params = {"patients": [patient_id]}
    programme_rows = await (await conn.execute(thresholds.PROGRAMMES_SQL, params)).fetchall()
    set_rows = await (await conn.execute(thresholds.SETS_SQL, params)).fetchall()
    return thresholds.ThresholdBook.from_rows(
        [tuple(r.values()) for r in programme_rows], [tuple(r.values()) for r in set_rows]
    )


def _thresholds_view(
    book: thresholds.ThresholdBook, patient_id: uuid.UUID, at: datetime
) -> schemas.Thresholds:
    eff = book.at(patient_id, at)
    return schemas.Thresholds(
        patient_id=patient_id,
        programme=eff.programme,
        version=eff.version,
        source=eff.source,
        threshold_set_id=eff.set_id,
        created_by=eff.created_by,
        created_at=eff.created_at,
        applies_from=eff.applies_from,
        note=eff.note,
        rules=eff.thresholds.model_dump(mode="json"),
        history=[
            schemas.ThresholdVersion.model_validate(
                {
                    "version": s.version,
                    "threshold_set_id": s.set_id,
                    "applies_from": s.applies_from,
                    "created_by": s.created_by,
                    "created_at": s.created_at,
                    "note": s.note,
                }
            )
            for s in sorted(book.overrides.get(patient_id, []), key=lambda s: -s.version)
        ],
    )


@router.get(
    "/api/v1/patients/{patient_id}/thresholds",
    response_model=schemas.Thresholds,
    tags=["thresholds"],
)
async def get_thresholds(
    patient_id: uuid.UUID,
    principal: Nurse,
    conn: DbConn,
    at: Annotated[schemas.Instant | None, Query(description="instant (default now)")] = None,
) -> schemas.Thresholds:
    """The alert thresholds in force for the patient (now, or `at`), their version and history."""
    when = at or datetime.now(UTC)
    resource = f"patients/{patient_id}/thresholds"
    async with patient_data(conn, principal, "thresholds.read", resource) as access:
        await access.require_patient(patient_id)
        view = _thresholds_view(await _threshold_book(conn, patient_id), patient_id, when)
        await access.record(patient_id, {"version": view.version, "at": when.isoformat()})
    return view


@router.put(
    "/api/v1/patients/{patient_id}/thresholds",
    response_model=schemas.Thresholds,
    tags=["thresholds"],
)
async def change_thresholds(
    patient_id: uuid.UUID, principal: Nurse, conn: DbConn, body: schemas.ThresholdChange
) -> schemas.Thresholds:
    """Create a new version of the patient's thresholds (created_by = the caller)."""
    applies_from = body.applies_from or datetime.now(UTC)
    resource = f"patients/{patient_id}/thresholds"
    async with patient_data(conn, principal, "thresholds.change", resource) as access:
        # The row lock serialises concurrent changes: versions are numbered without gaps.
        await access.require_patient(patient_id, lock=True)
        book = await _threshold_book(conn, patient_id)
        try:
            doc = thresholds.changed_document(
                book.at(patient_id, applies_from).thresholds, body.rules
            )
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", "rules", *e["loc"])} for e in exc.errors()]
            ) from exc
        params = thresholds.insert_params(
            book, patient_id, principal.tenant, doc, principal.sub, applies_from, body.note
        )
        await conn.execute(thresholds.INSERT_SQL, params)
        book = await _threshold_book(conn, patient_id)
        view = _thresholds_view(book, patient_id, applies_from)
        await access.record(
            patient_id,
            {
                "version": params["version"],
                "applies_from": applies_from.isoformat(),
                "patch": body.rules,
            },
        )
    return view
