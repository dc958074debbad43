"""Who the token says the caller is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api import schemas
from api.auth import Principal, current_principal

router = APIRouter()


@router.get("/api/v1/me", response_model=schemas.Me, tags=["auth"])
async def me(principal: Annotated[Principal, Depends(current_principal)]) -> schemas.Me:
    """Who the token says the caller is (no patient data)."""
    return schemas.Me(
        sub=principal.sub,
        role=principal.role,
        tenant=principal.tenant,
        care_units=principal.care_unit_list,
    )
