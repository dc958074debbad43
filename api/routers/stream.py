"""Live alerts: Server-Sent Events of the caller's alerts as they open, change and resolve."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from psycopg_pool import PoolTimeout

from api import live, queries, schemas
from api.access import patient_data
from api.auth import Nurse, Principal
from api.db import Pool, get_pool

log = logging.getLogger(__name__)

#: Seconds between SSE heartbeats (comment lines) of the alert stream.
SSE_HEARTBEAT_S = 15.0
#: How often a stream reloads the residents shared with its principal (SharedResidents).
SHARED_REFRESH_S = 10.0
#: How long opening a stream waits for the process's LISTEN connection.
LISTEN_WAIT_S = 5.0

router = APIRouter()


async def get_hub(request: Request) -> live.AlertHub:
    """FastAPI dependency: the process's one LISTEN connection (created on first use)."""
    state = request.app.state
    hub: live.AlertHub | None = getattr(state, "alert_hub", None)
    if hub is None:  # no await between the check and the set: one hub per app
        hub = state.alert_hub = live.AlertHub(state.settings.database_url)
    return hub


Hub = Annotated[live.AlertHub, Depends(get_hub)]


def _sse(event: str, data: Any) -> bytes:
    # json.dumps never emits a raw newline, so `data` is always a single line.
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class SharedResidents:
    """Which residents other principals share with the caller's: whether an event of
    another principal is worth a database round trip. Reloaded at most every
    SHARED_REFRESH_S: a new share reaches an open stream within that; a revoked or expired
    one never shows anything, since every event is re-read under `queries.visible`."""

    def __init__(self, pool: Pool, principal: Principal) -> None:
        self.pool = pool
        self.principal = principal
        self.ids: frozenset[uuid.UUID] = frozenset()
        self.loaded_at: float | None = None

    async def may_show(self, item: live.AlertEvent) -> bool:
        if item.tenant_id == self.principal.tenant:
            return True
        if self.principal.care_units is not None:
            return False  # care-unit tokens see no shared resident (queries.visible)
        now = time.monotonic()
        if self.loaded_at is None or now - self.loaded_at >= SHARED_REFRESH_S:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    queries.SHARED_PATIENTS_SQL, {"tenant": self.principal.tenant}
                )
                self.ids = frozenset(r["patient_id"] for r in await cur.fetchall())
            self.loaded_at = now
        return item.patient_id in self.ids


async def _deliver(
    pool: Pool, principal: Principal, item: live.AlertEvent, shared: SharedResidents
) -> schemas.AlertStreamEvent | None:
    """The alert behind a notification as the caller may see it, audit-logged; None if not."""
    if not await shared.may_show(item):
        return None  # another principal's alert, not shared: not even a database round trip
    async with (
        pool.connection() as conn,
        patient_data(conn, principal, "alerts.stream", f"alerts/{item.alert_id}") as access,
    ):
        # Re-read under the caller's scope (queries.visible: tenant, care units, shares):
        # a resident outside it yields nothing, and the client gets the alert's current state.
        alerts = await queries.select_alerts(
            conn, principal.tenant, care_units=principal.care_unit_list, alert_id=item.alert_id
        )
        if not alerts:
            access.shows_nothing()
            return None
        await access.record(alerts[0].patient_id, {"event": item.event})
    return schemas.AlertStreamEvent(event=item.event, alert=alerts[0])


async def _alert_events(
    pool: Pool, hub: live.AlertHub, principal: Principal, heartbeat_s: float
) -> AsyncIterator[bytes]:
    deadline = principal.expires_at
    shared = SharedResidents(pool, principal)
    async with hub.subscribe() as subscription:
        # From here on every notification reaches this stream: a client that loads the
        # alert list after `ready` misses nothing in between.
        yield b"retry: 5000\n\n" + _sse("ready", {"tenant": principal.tenant})
        while True:
            timeout = heartbeat_s
            if deadline is not None:
                left = (deadline - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    yield _sse("expired", {"detail": "token expired"})
                    return
                timeout = min(timeout, left)
            try:
                item = await asyncio.wait_for(subscription.get(), timeout)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if isinstance(item, live.Stopping):
                return  # the client reconnects (to the next server) and resynchronises
            if isinstance(item, live.Resync):
                yield _sse("resync", {"reason": item.reason})
                continue
            try:
                shown = await _deliver(pool, principal, item, shared)
            except (PoolTimeout, psycopg.OperationalError) as exc:
                # Unaudited data never leaves: end the stream, the client reconnects.
                log.warning("alert stream ends: database unavailable (%s)", exc)
                yield _sse("error", {"detail": "database unavailable"})
                return
            if shown is not None:
                yield _sse("alert", shown.model_dump(mode="json"))


@router.get(
    "/api/v1/alerts/stream",
    tags=["alerts"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 503: {}},
)
async def alert_stream(
    request: Request,
    principal: Nurse,
    pool: Annotated[Pool, Depends(get_pool)],
    hub: Hub,
) -> StreamingResponse:
    """Server-Sent Events of the caller's alerts as they open, change and resolve.

    Events: `ready` (subscribed: load the list now), `alert` (data: `{event, alert}`),
    `resync` (notifications may have been missed: reload), `expired` (the token ran
    out: reconnect with a new one), `error`; a comment line every 15 s as heartbeat.
    """
    hub.start()
    if not await hub.wait_listening(LISTEN_WAIT_S):
        raise HTTPException(503, detail="live alerts unavailable")
    async with (
        pool.connection() as conn,
        patient_data(conn, principal, "alerts.stream.open", "alerts/stream") as access,
    ):
        await access.record(
            None, {"care_units": [str(u) for u in principal.care_unit_list or []] or None}
        )
    heartbeat_s = float(getattr(request.app.state, "sse_heartbeat_s", SSE_HEARTBEAT_S))
    return StreamingResponse(
        _alert_events(pool, hub, principal, heartbeat_s),
        media_type="text/event-stream",
        # no-transform/X-Accel-Buffering: proxies must pass events on as they come.
        headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"},
    )
