"""What the web app needs before anyone signs in: where to sign in, and its language."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api import schemas
from api.demo_idp import PREFIX as DEMO_IDP_PREFIX
from hemhub.settings import Settings, get_settings

router = APIRouter()


@router.get("/api/v1/ui-config", response_model=schemas.UiConfig, tags=["auth"])
async def ui_config(
    request: Request, settings: Annotated[Settings, Depends(get_settings)]
) -> schemas.UiConfig:
    """The OpenID Connect provider and client id the web app signs in with (no secrets:
    a browser app is a public client, and proves itself with PKCE)."""
    issuer = settings.oidc_issuer
    if issuer is None and settings.demo_idp:
        issuer = str(request.base_url).rstrip("/") + DEMO_IDP_PREFIX
    return schemas.UiConfig(
        issuer=issuer,
        client_id=settings.oidc_client_id,
        scope=settings.oidc_scope,
        default_language=settings.ui_default_language,
        demo=settings.demo_idp,
    )
