"""Sharing a resident with another principal: grant, list, revoke.

The owning principal's admins decide (a disclosure of patient data to another care
provider is the principal's decision, not a technician's): they grant another principal
a resident for a purpose and a period [starts_at, ends_at), with a reason, and may revoke
it; both are recorded with who, when and why, and audited under the resident. The
grantee's nurses then see the resident, and its readings and alerts measured in the
period, while the share is in force (`api.queries.visible`, the one rule); nothing after
revocation or expiry. Shares are never deleted.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError

from api import queries, schemas
from api.access import not_found, patient_data
from api.auth import Admin, Principal
from api.db import Conn, DbConn

router = APIRouter(tags=["sharing"])


def _invalid(field: str, msg: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": msg, "type": "value_error"}])


async def _shares(
    conn: Conn, where: str, params: dict[str, Any], limit: int
) -> list[schemas.Share]:
    cur = await conn.execute(queries.SHARES_SQL.format(where=where), {**params, "limit": limit})
    return [schemas.Share.model_validate(r) for r in await cur.fetchall()]


async def _share(conn: Conn, principal: Principal, share_id: uuid.UUID) -> schemas.Share | None:
    """A share the caller's principal granted or received."""
    found = await _shares(
        conn,
        "s.id = %(id)s AND (s.owner_tenant_id = %(tenant)s OR s.grantee_tenant_id = %(tenant)s)",
        {"id": share_id, "tenant": principal.tenant},
        1,
    )
    return found[0] if found else None


@router.post(
    "/api/v1/residents/{patient_id}/shares",
    response_model=schemas.Share,
    status_code=201,
)
async def grant_share(
    patient_id: uuid.UUID, principal: Admin, conn: DbConn, body: schemas.ShareCreate
) -> schemas.Share:
    """Grant another principal the resident, for a purpose and a period, with a reason."""
    if body.grantee == principal.tenant:
        raise _invalid("grantee", "the resident is already your principal's")
    starts_at = body.starts_at or datetime.now(UTC)
    if body.ends_at <= starts_at:
        raise _invalid("ends_at", "ends_at must be after starts_at")
    if body.ends_at <= datetime.now(UTC):
        raise _invalid("ends_at", "ends_at is past: such a share would grant nothing")
    resource = f"residents/{patient_id}/shares"
    async with patient_data(conn, principal, "share.grant", resource) as access:
        await access.require_patient(patient_id, lock=True)
        grantee = await (
            await conn.execute("SELECT 1 FROM tenants WHERE id = %s", (body.grantee,))
        ).fetchone()
        if grantee is None:
            raise not_found("principal")
        row = await (
            await conn.execute(
                queries.GRANT_SHARE_SQL,
                {
                    "patient": patient_id,
                    "tenant": principal.tenant,
                    "grantee": body.grantee,
                    "purpose": body.purpose.strip(),
                    "reason": body.reason.strip(),
                    "starts_at": body.starts_at,
                    "ends_at": body.ends_at,
                    "sub": principal.sub,
                },
            )
        ).fetchone()
        assert row is not None
        share = await _share(conn, principal, row["id"])
        assert share is not None
        await access.record(
            patient_id,
            {
                "share_id": str(share.id),
                "grantee": share.grantee,
                "purpose": share.purpose,
                "reason": share.reason,
                "starts_at": share.starts_at.isoformat(),
                "ends_at": share.ends_at.isoformat(),
            },
        )
    return share


@router.get("/api/v1/residents/{patient_id}/shares", response_model=list[schemas.Share])
async def list_resident_shares(
    patient_id: uuid.UUID,
    principal: Admin,
    conn: DbConn,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.Share]:
    """Every share of one of the principal's residents, revoked ones too, newest first."""
    resource = f"residents/{patient_id}/shares"
    async with patient_data(conn, principal, "shares.read", resource) as access:
        await access.require_patient(patient_id)
        shares = await _shares(
            conn,
            "s.patient_id = %(patient)s AND s.owner_tenant_id = %(tenant)s",
            {"patient": patient_id, "tenant": principal.tenant},
            limit,
        )
        await access.record(patient_id, {"count": len(shares)})
    return shares


@router.get("/api/v1/shares", response_model=list[schemas.Share])
async def list_shares(
    principal: Admin,
    conn: DbConn,
    direction: Annotated[
        Literal["granted", "received"],
        Query(description="granted by the caller's principal, or received by it"),
    ] = "granted",
    in_force: Annotated[bool, Query(description="only shares in force now")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.Share]:
    """The shares the caller's principal granted (or received), newest first."""
    column = "s.owner_tenant_id" if direction == "granted" else "s.grantee_tenant_id"
    where = f"{column} = %(tenant)s"
    if in_force:
        where += " AND s.revoked_at IS NULL AND s.starts_at <= now() AND now() < s.ends_at"
    async with patient_data(conn, principal, "shares.list", "shares") as access:
        shares = await _shares(conn, where, {"tenant": principal.tenant}, limit)
        await access.record_many(
            (s.patient_id for s in shares),
            {"count": len(shares), "direction": direction, "in_force": in_force},
        )
    return shares


@router.get("/api/v1/shares/{share_id}", response_model=schemas.Share)
async def get_share(share_id: uuid.UUID, principal: Admin, conn: DbConn) -> schemas.Share:
    """One share the caller's principal granted or received."""
    async with patient_data(conn, principal, "share.read", f"shares/{share_id}") as access:
        share = await _share(conn, principal, share_id)
        if share is None:
            raise access.refuse(not_found("share"), None, {"outcome": "not_found"})
        await access.record(share.patient_id, {"share_id": str(share_id)})
    return share


@router.post("/api/v1/shares/{share_id}/revoke", response_model=schemas.Share)
async def revoke_share(
    share_id: uuid.UUID, principal: Admin, conn: DbConn, body: schemas.Revocation
) -> schemas.Share:
    """Revoke a share the caller's principal granted, with a reason: from now on the
    grantee sees nothing of the resident. 409 when revoked already."""
    async with patient_data(conn, principal, "share.revoke", f"shares/{share_id}") as access:
        share = await _share(conn, principal, share_id)
        if share is None:
            raise access.refuse(not_found("share"), None, {"outcome": "not_found"})
        if share.owner != principal.tenant:
            raise access.refuse(
                HTTPException(403, detail="only the resident's principal revokes a share"),
                share.patient_id,
                {"outcome": "refused", "share_id": str(share_id)},
            )
        changed = await (
            await conn.execute(
                queries.REVOKE_SHARE_SQL,
                {
                    "id": share_id,
                    "tenant": principal.tenant,
                    "sub": principal.sub,
                    "reason": body.reason.strip(),
                },
            )
        ).fetchone()
        if changed is None:
            raise access.refuse(
                HTTPException(409, detail="the share is revoked already"),
                share.patient_id,
                {"outcome": "conflict", "share_id": str(share_id)},
            )
        share = await _share(conn, principal, share_id)
        assert share is not None
        await access.record(
            share.patient_id,
            {"share_id": str(share_id), "grantee": share.grantee, "reason": share.revoke_reason},
        )
    return share
