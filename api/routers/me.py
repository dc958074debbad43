"""Who the token says the caller is, and how their principal wants times shown."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api import schemas
from api.auth import Principal, current_principal
from api.db import Pool, get_pool

router = APIRouter()

PRINCIPAL_TIME_ZONE_SQL = "SELECT time_zone FROM tenants WHERE id = %(tenant)s"
DEFAULT_TIME_ZONE = "Europe/Stockholm"


@router.get("/api/v1/me", response_model=schemas.Me, tags=["auth"])
async def me(
    principal: Annotated[Principal, Depends(current_principal)],
    pool: Annotated[Pool, Depends(get_pool)],
) -> schemas.Me:
    """Who the token says the caller is, and the principal's time zone (no patient data)."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(PRINCIPAL_TIME_ZONE_SQL, {"tenant": principal.tenant})
        ).fetchone()
    return schemas.Me(
        sub=principal.sub,
        role=principal.role,
        tenant=principal.tenant,
        care_units=principal.care_unit_list,
        name=principal.name,
        time_zone=row["time_zone"] if row else DEFAULT_TIME_ZONE,
    )
