"""Principals (tenants): the organisations whose residents, devices and staff hemhub serves.

A principal is created by the platform's operator: an admin token of the principal named
by HEMHUB_OPERATOR_PRINCIPAL (`hemhub fleet principals create`). Any other caller (HMC or
admin) sees and renames only its own principal: another principal's id answers 404. A
new principal's staff get their tokens from the identity provider (the `tenant` claim);
creating a principal gives its creator no access to it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from api import queries, schemas
from api.access import not_found, patient_data
from api.auth import Admin, Fleet, Principal, Role
from api.db import DbConn
from hemhub.settings import Settings, get_settings

router = APIRouter(tags=["principals"])

Config = Annotated[Settings, Depends(get_settings)]


def _is_operator(principal: Principal, settings: Settings) -> bool:
    return (
        settings.operator_principal is not None
        and principal.tenant == settings.operator_principal
        and principal.role is Role.ADMIN
    )


@router.get("/api/v1/principals", response_model=list[schemas.PrincipalOut])
async def list_principals(
    principal: Fleet, conn: DbConn, settings: Config
) -> list[schemas.PrincipalOut]:
    """All principals for the operator's admins; the caller's own for anyone else."""
    where = "" if _is_operator(principal, settings) else "WHERE id = %(tenant)s"
    cur = await conn.execute(
        queries.PRINCIPALS_SQL.format(where=where), {"tenant": principal.tenant}
    )
    return [schemas.PrincipalOut.model_validate(r) for r in await cur.fetchall()]


@router.post(
    "/api/v1/principals", response_model=schemas.PrincipalOut, status_code=201, responses={409: {}}
)
async def create_principal(
    principal: Admin,
    conn: DbConn,
    body: schemas.PrincipalCreate,
    settings: Config,
) -> schemas.PrincipalOut:
    """A new principal (operator's admins only); 409 when the id is taken."""
    if not _is_operator(principal, settings):
        raise HTTPException(
            403,
            detail="only an admin of the operator principal (HEMHUB_OPERATOR_PRINCIPAL)"
            " creates principals",
        )
    name = body.name.strip()
    async with patient_data(conn, principal, "principal.create", f"principals/{body.id}") as access:
        row = await (
            await conn.execute(queries.CREATE_PRINCIPAL_SQL, {"id": body.id, "name": name})
        ).fetchone()
        if row is None:
            raise HTTPException(409, detail=f"principal {body.id} exists")
        await access.record(None, {"id": body.id, "name": name})
    return schemas.PrincipalOut.model_validate(row)


@router.get("/api/v1/principals/{principal_id}", response_model=schemas.PrincipalOut)
async def get_principal(
    principal_id: str,
    principal: Fleet,
    conn: DbConn,
    settings: Config,
) -> schemas.PrincipalOut:
    """One principal: the caller's own (any principal for the operator's admins)."""
    if principal_id != principal.tenant and not _is_operator(principal, settings):
        raise not_found("principal")
    cur = await conn.execute(
        queries.PRINCIPALS_SQL.format(where="WHERE id = %(id)s"), {"id": principal_id}
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found("principal")
    return schemas.PrincipalOut.model_validate(row)


@router.patch("/api/v1/principals/{principal_id}", response_model=schemas.PrincipalOut)
async def rename_principal(
    principal_id: str,
    principal: Admin,
    conn: DbConn,
    body: schemas.PrincipalRename,
    settings: Config,
) -> schemas.PrincipalOut:
    """Rename the caller's own principal (any principal for the operator's admins)."""
    if principal_id != principal.tenant and not _is_operator(principal, settings):
        raise not_found("principal")
    name = body.name.strip()
    resource = f"principals/{principal_id}"
    async with patient_data(conn, principal, "principal.rename", resource) as access:
        before = await (
            await conn.execute("SELECT name FROM tenants WHERE id = %s FOR UPDATE", (principal_id,))
        ).fetchone()
        if before is None:
            raise not_found("principal")
        row = await (
            await conn.execute(queries.RENAME_PRINCIPAL_SQL, {"id": principal_id, "name": name})
        ).fetchone()
        await access.record(None, {"id": principal_id, "from": before["name"], "to": name})
    return schemas.PrincipalOut.model_validate(row)
