"""A resident's erasure: what hemhub holds about a deactivated resident is deleted or made
pseudonymous (ingest/sql/0024_resident_erasure.sql says what exactly), for the HMC or an
admin of the resident's principal; audited under the pseudonym the resident becomes.
Retention (what is kept, where, how long): docs/audit.md.
"""

from __future__ import annotations

import uuid

import psycopg.errors
from fastapi import APIRouter, HTTPException

from api.access import patient_data
from api.auth import Fleet
from api.db import DbConn
from api.schemas_audit import ErasureReport, ErasureRequest

router = APIRouter(tags=["residents"])


@router.post("/api/v1/residents/{patient_id}/erasure", response_model=ErasureReport)
async def erase_resident(
    patient_id: uuid.UUID, principal: Fleet, conn: DbConn, body: ErasureRequest
) -> ErasureReport:
    """Erase a deactivated resident of the caller's principal (409 while it is active).
    The answer's `pseudonym` is the resident's id in the access log from now on: keep it
    with the resident's record in the journal; hemhub keeps no link to it."""
    pseudonym = uuid.uuid4()
    # The resource names no resident: the erasure's row must not carry the old id.
    async with patient_data(conn, principal, "resident.erase", "residents/erasure") as access:
        await access.require_patient(patient_id, lock=True)
        try:
            cur = await conn.execute(
                "SELECT hemhub_erase_resident(%s, %s, %s) AS done",
                (patient_id, principal.tenant, pseudonym),
            )
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            raise access.refuse(
                HTTPException(409, detail="the resident is active: deactivate it first"),
                patient_id,
                {"outcome": "conflict", "basis": body.basis},
            ) from exc
        except psycopg.errors.FeatureNotSupported as exc:
            # A table this installation added that erasure does not cover: refuse, never
            # erase half.
            reason = exc.diag.message_primary or "erasure is not possible here"
            raise access.refuse(
                HTTPException(409, detail=reason),
                patient_id,
                {"outcome": "conflict", "basis": body.basis},
            ) from exc
        row = await cur.fetchone()
        assert row is not None
        done = dict(row["done"])
        await access.record(pseudonym, {"basis": body.basis, **done})
    return ErasureReport.model_validate({"pseudonym": pseudonym, "basis": body.basis, **done})
