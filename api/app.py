"""The nurse/integration HTTP API and the small nurse web UI: this module builds the app.

Every query is scoped by the token's tenant: a principal never sees, nor learns the
existence of, another principal's patients (their ids answer 404, like unknown ids).
Patient data is reached only through `api.access.patient_data`, which writes the audit
rows in the same transaction. The routes live in `api.routers`, their SQL in `api.queries`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import psycopg
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import live
from api.auth import ensure_demo_key
from api.campaign_runner import run_campaigns
from api.db import create_pool, open_pool
from api.demo_idp import demo_idp_router
from api.fhir import outcome as fhir_outcome
from api.fhir import router as fhir_router
from api.fhir import subject_access as fhir_subject_access
from api.limits import BodySizeLimit
from api.metrics import count_requests
from api.routers import (
    alerts,
    audit,
    campaigns,
    care_units,
    devices,
    docs,
    erasure,
    fleet,
    fleet_figures,
    fleet_health,
    hub_commands,
    hubs,
    me,
    metrics,
    nurse,
    ops,
    patients,
    principals,
    products,
    residents,
    shares,
    stream,
    thresholds,
    ui_config,
)
from hemhub.settings import Settings, get_settings
from ingest.hub_link import HubLink

log = logging.getLogger(__name__)

STATIC_DIR = ops.STATIC_DIR

#: Every route of the API, by resource.
ROUTERS = (
    ops.router,
    docs.router,
    ui_config.router,
    me.router,
    patients.router,
    alerts.router,
    nurse.router,
    stream.router,
    care_units.router,
    principals.router,
    residents.router,
    erasure.router,
    audit.router,
    shares.router,
    fleet.router,
    products.router,
    devices.router,
    hubs.router,
    campaigns.router,
    fleet_health.router,
    fleet_figures.router,
    hub_commands.router,
    thresholds.router,
    metrics.router,
    fhir_router.router,
    fhir_subject_access.router,
)


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.url.path.startswith(("/api/", "/fhir/")):
        # Patient data must not linger in browser or proxy caches.
        response.headers["Cache-Control"] = "no-store"
    elif request.url.path in ("/", "/docs") or request.url.path.startswith("/static/"):
        # The UI handles bearer tokens: only our own scripts, no inline code, no framing;
        # it talks to this API and to the identity provider (sign-in), nothing else.
        settings: Settings = request.app.state.settings
        response.headers.setdefault("Content-Security-Policy", _csp(settings))
    return response


def _csp(settings: Settings) -> str:
    connect = "'self'"
    if settings.oidc_issuer:
        # Discovery and the token endpoint are fetched from the provider's origin.
        parts = urlsplit(settings.oidc_issuer)
        connect += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'self'; connect-src {connect}; img-src 'self' data:;"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if request.url.path.startswith(fhir_outcome.FHIR_PREFIX):
        return fhir_outcome.outcome_response(503, "database unavailable")
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


class SelfMadeKeyRefused(RuntimeError):
    """No JWKS is configured and the API is not allowed to trust a key it makes itself."""


def _check_demo_idp(settings: Settings) -> None:
    """The demo identity provider signs with the self-made key: only where that is allowed."""
    if settings.demo_idp and (settings.jwt_jwks_url or not settings.jwt_allow_self_made_key):
        raise SelfMadeKeyRefused(
            "HEMHUB_DEMO_IDP=1 serves demo users with one shared password, signed with the"
            " self-made key: only for a demo or test (HEMHUB_JWT_ALLOW_SELF_MADE_KEY=1 and no"
            " HEMHUB_JWT_JWKS_URL)"
        )


def _check_signing_key(settings: Settings) -> None:
    """Refuse a self-made signing key unless the settings allow it; warn loudly if they do.

    With no JWKS the API verifies tokens with a key file it creates: whoever can read
    that file can mint an admin token for any principal. Fine for `hemhub demo` and
    tests, never by accident in production.
    """
    if settings.jwt_jwks_url:
        return
    if not settings.jwt_allow_self_made_key:
        raise SelfMadeKeyRefused(
            "no HEMHUB_JWT_JWKS_URL is set, so the API would verify tokens with a signing key"
            f" it makes itself ({settings.demo_key_file}); set HEMHUB_JWT_JWKS_URL to your"
            " identity provider's keys, or HEMHUB_JWT_ALLOW_SELF_MADE_KEY=1 for a demo or test"
        )
    log.warning(
        "SECURITY: tokens are verified with a self-made signing key (%s), not an identity"
        " provider's JWKS: anyone who can read that file can mint a token for any principal."
        " For demos and tests only (HEMHUB_JWT_ALLOW_SELF_MADE_KEY=1).",
        settings.demo_key_file,
    )


def announce_stop(app: FastAPI) -> None:
    """The server is about to stop: end the live streams now, so that its graceful
    shutdown does not wait for browsers that hold them (they reconnect)."""
    hub: live.AlertHub | None = getattr(app.state, "alert_hub", None)
    if hub is not None:
        hub.announce_stop()


class Server(uvicorn.Server):
    """uvicorn's server, ending the app's live streams as soon as it is told to stop."""

    def __init__(self, app: FastAPI, **config: Any) -> None:
        super().__init__(uvicorn.Config(app, **config))
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        announce_stop(self.app)
        super().handle_exit(sig, frame)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; `settings` replaces `get_settings()` for every dependency (tests, demo).

    Raises SelfMadeKeyRefused when no JWKS is configured and no setting allows a self-made key.
    """
    resolved = settings or get_settings()
    _check_signing_key(resolved)
    _check_demo_idp(resolved)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not resolved.database_url:
            raise RuntimeError("HEMHUB_DATABASE_URL is not set (`hemhub demo` sets it)")
        if not resolved.jwt_jwks_url:
            ensure_demo_key(resolved.demo_key_file)  # demo: tokens are verified locally
        pool = create_pool(resolved.database_url)
        await open_pool(pool)
        app.state.pool = pool
        link = None
        if resolved.api_runs_hub_link and resolved.hub_link_mqtt_url:
            link = HubLink(
                resolved.database_url, resolved.hub_link_mqtt_url, ca_file=resolved.mqtt_ca_file
            ).start()
        stop_campaigns = asyncio.Event()
        runner = None
        if resolved.campaign_tick_s > 0:
            runner = asyncio.create_task(
                run_campaigns(pool, resolved.campaign_tick_s, stop_campaigns)
            )
        try:
            yield
        finally:
            stop_campaigns.set()
            if runner is not None:
                await asyncio.gather(runner, return_exceptions=True)
            if link is not None:
                await asyncio.to_thread(link.stop)
            hub: live.AlertHub | None = getattr(app.state, "alert_hub", None)
            if hub is not None:
                await hub.close()
            await pool.close()

    app = FastAPI(
        title="hemhub API",
        version="1",
        summary="Readings and alerts of home-monitored patients, per principal.",
        lifespan=lifespan,
        # /docs is served from this server (api/routers/docs.py), never from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.dependency_overrides[get_settings] = lambda: resolved
    app.state.settings = resolved
    for router in ROUTERS:
        app.include_router(router)
    if resolved.demo_idp:
        app.include_router(demo_idp_router(resolved))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/docs-assets", StaticFiles(directory=docs.SWAGGER_UI_DIR), name="docs-assets")
    # Added first, so inside the security headers: a 413 carries them too.
    app.add_middleware(BodySizeLimit, max_bytes=resolved.api_max_body_bytes)
    app.middleware("http")(_security_headers)
    app.middleware("http")(count_requests)  # outermost: counts every answer
    # Under /fhir/ every error is an OperationOutcome; elsewhere the API's usual answer.
    app.add_exception_handler(RequestValidationError, fhir_outcome.invalid_request)
    app.add_exception_handler(StarletteHTTPException, fhir_outcome.http_error)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    return app
