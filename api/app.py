"""The nurse/integration HTTP API and the small nurse web UI.

Every query is scoped by the token's tenant: a principal never sees, nor learns the
existence of, another principal's patients (their ids answer 404, like unknown ids).
Every response carrying patient data writes audit rows in the same transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
import psycopg.errors
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from psycopg_pool import PoolTimeout
from pydantic import AwareDatetime, ValidationError

from api import audit, live, schemas
from api.auth import Principal, Role, current_principal, ensure_demo_key, require_role
from api.db import Conn, DbConn, Pool, create_pool, get_pool, open_pool
from hemhub.contract import MeasurementType
from hemhub.settings import Settings, get_settings
from ingest import registry, thresholds
from ingest.alerts import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

Nurse = Annotated[Principal, Depends(require_role(Role.NURSE, Role.ADMIN))]
Reader = Annotated[Principal, Depends(require_role(Role.NURSE, Role.ADMIN, Role.INTEGRATION))]
#: The principal's fleet and organisation: its HMC (assistive-technology centre) and admins.
Fleet = Annotated[Principal, Depends(require_role(Role.HMC, Role.ADMIN))]

#: Seconds between SSE heartbeats (comment lines) of the alert stream.
SSE_HEARTBEAT_S = 15.0
#: How long opening a stream waits for the process's LISTEN connection.
LISTEN_WAIT_S = 5.0

# --- queries ----------------------------------------------------------------------------

PATIENTS_SQL = """
SELECT p.id, p.display_name, p.programme, p.care_unit_id, count(a.id)::int AS open_alerts
FROM patients p
LEFT JOIN alerts a ON a.patient_id = p.id AND a.tenant_id = p.tenant_id AND a.status = 'open'
WHERE p.tenant_id = %(tenant)s {scope}
GROUP BY p.id
ORDER BY p.display_name, p.id
LIMIT %(limit)s OFFSET %(offset)s
"""

OBSERVATIONS_SQL = """
SELECT r.idempotency_key, r.measured_at, r.measurement_type, r."values", r.status, r.hub_id,
       r.clock_source, r.clock_offset_s, r.hub_clock_synced, r.late, r.raw,
       r.device_sequence, r.event,
       d.address, d.model, d.serial
FROM readings r
JOIN devices d ON d.id = r.device_id
WHERE r.patient_id = %(patient)s AND r.tenant_id = %(tenant)s {filters}
ORDER BY r.measured_at DESC, r.idempotency_key DESC
LIMIT %(limit)s
"""

# The triggering reading is found through reading_keys (key -> measured_at), so the
# lookup in the time-partitioned readings table is an index probe on
# (patient_id, measured_at) in one partition, not a scan of the patient's history.
ALERTS_SQL = """
SELECT a.id, a.patient_id, p.display_name AS patient_display_name, a.rule, a.rule_version,
       a.severity, a.status, a.reason, a.count, a.measured_at, a.late, a.opened_at, a.last_at,
       a.acknowledged_by, a.acknowledged_at, a.resolved_by, a.resolved_at, a.resolution_note,
       a.last_reason, a.auto_resolved, a.threshold_set_id,
       coalesce(a.last_reading_key, a.first_reading_key) AS reading_id,
       rv."values"
FROM alerts a
JOIN patients p ON p.id = a.patient_id AND p.tenant_id = a.tenant_id
LEFT JOIN LATERAL (
    SELECT r."values"
    FROM readings r
    WHERE r.patient_id = a.patient_id
      AND r.measured_at = (
          SELECT k.measured_at FROM reading_keys k
          WHERE k.idempotency_key = coalesce(a.last_reading_key, a.first_reading_key)
      )
      AND r.idempotency_key = coalesce(a.last_reading_key, a.first_reading_key)
      AND r.tenant_id = a.tenant_id
    LIMIT 1
) rv ON true
WHERE a.tenant_id = %(tenant)s {filters}
ORDER BY a.last_at DESC, a.id
LIMIT %(limit)s
"""

#: The care-unit scope of a token with a `care_units` claim, on patients `p`
#: (a fixed fragment; the units are a bound parameter).
CARE_UNIT_SCOPE = "AND p.care_unit_id = ANY(%(units)s::uuid[])"

UNATTRIBUTED_SQL = """
SELECT d.id AS device_id, d.address, d.manufacturer, d.model, d.serial, r.hub_id,
       count(*)::int AS readings, min(r.measured_at) AS first_measured_at,
       max(r.measured_at) AS last_measured_at, sum(count(*)) OVER ()::bigint AS total
FROM devices d
JOIN readings r ON r.device_id = d.id AND r.patient_id IS NULL {filters}
WHERE d.owner_tenant_id = %(tenant)s
GROUP BY d.id, r.hub_id
ORDER BY last_measured_at DESC, d.id, r.hub_id
LIMIT %(limit)s
"""

#: An alert status change by a person, announced like the engine's (ingest.alerts) at
#: commit: {alert_id, tenant_id, patient_id, status, rule, event}.
_TRANSITION_SQL = """
WITH up AS (
    UPDATE alerts SET {assignments}
    WHERE id = %(id)s AND tenant_id = %(tenant)s AND {condition} {scope}
    RETURNING id, tenant_id, patient_id, status, rule
)
SELECT id, pg_notify(%(channel)s, json_build_object(
        'alert_id', id, 'tenant_id', tenant_id, 'patient_id', patient_id,
        'status', status, 'rule', rule, 'event', %(event)s::text)::text)
FROM up
"""
_TRANSITION_SCOPE = (
    "AND patient_id IN (SELECT p.id FROM patients p"
    " WHERE p.tenant_id = %(tenant)s " + CARE_UNIT_SCOPE + ")"
)


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


async def _select_alerts(
    conn: Conn,
    tenant: str,
    *,
    care_units: list[uuid.UUID] | None = None,
    status: schemas.AlertStatus | None = None,
    patient_id: uuid.UUID | None = None,
    alert_id: uuid.UUID | None = None,
    limit: int = 1,
) -> list[schemas.Alert]:
    # Filters are fixed SQL fragments chosen here; values are always bound parameters.
    filters = []
    params: dict[str, Any] = {"tenant": tenant, "limit": limit}
    if care_units is not None:
        filters.append(CARE_UNIT_SCOPE)
        params["units"] = care_units
    if status is not None:
        filters.append("AND a.status = %(status)s")
        params["status"] = status.value
    if patient_id is not None:
        filters.append("AND a.patient_id = %(patient)s")
        params["patient"] = patient_id
    if alert_id is not None:
        filters.append("AND a.id = %(alert)s")
        params["alert"] = alert_id
    cur = await conn.execute(ALERTS_SQL.format(filters=" ".join(filters)), params)
    return [schemas.Alert.model_validate(row) for row in await cur.fetchall()]


def _not_found(what: str) -> HTTPException:
    return HTTPException(404, detail=f"{what} not found")


async def _patient_of_tenant(
    conn: Conn,
    principal: Principal,
    patient_id: uuid.UUID,
    action: str,
    resource: str,
    *,
    lock: bool = False,
) -> bool:
    """Whether the patient belongs to the caller's principal (and care units, when the token
    names some); a miss is audit-logged."""
    scope = CARE_UNIT_SCOPE if principal.care_units is not None else ""
    found = await (
        await conn.execute(
            f"SELECT 1 FROM patients p WHERE p.id = %(id)s AND p.tenant_id = %(tenant)s {scope}"
            + (" FOR UPDATE" if lock else ""),
            {"id": patient_id, "tenant": principal.tenant, "units": principal.care_unit_list},
        )
    ).fetchone()
    if found is None:
        # Logged too: probing for other principals' patient ids is worth seeing.
        await audit.record_access(
            conn,
            principal,
            action,
            resource,
            patient_id,
            {"outcome": "not_found"},
        )
    return found is not None


# --- routes -----------------------------------------------------------------------------

router = APIRouter()


@router.get("/healthz", response_model=schemas.Health, tags=["ops"])
async def healthz() -> schemas.Health:
    """Liveness: the process answers (no database access)."""
    return schemas.Health()


def _expected_migrations() -> set[str]:
    folder = resources.files("ingest") / "sql"
    return {p.name.removesuffix(".sql") for p in folder.iterdir() if p.name.endswith(".sql")}


@router.get(
    "/readyz",
    response_model=schemas.Ready,
    responses={503: {"model": schemas.Ready}},
    tags=["ops"],
)
async def readyz(pool: Annotated[Pool, Depends(get_pool)], response: Response) -> schemas.Ready:
    """Readiness: the database answers, every migration is applied, and how readings are stored."""
    response.status_code = 503
    try:
        async with pool.connection(timeout=2.0) as conn:
            applied = {
                r["version"]
                for r in await (
                    await conn.execute("SELECT version FROM schema_migrations")
                ).fetchall()
            }
            meta = await (
                await conn.execute(
                    "SELECT value FROM hemhub_meta WHERE key = 'readings_partitioning'"
                )
            ).fetchone()
            # An index-only count on the partial index readings_unattributed.
            unattributed = await (
                await conn.execute("SELECT count(*) AS n FROM readings WHERE patient_id IS NULL")
            ).fetchone()
            dead = await (
                await conn.execute(
                    "SELECT count(*) AS n, coalesce(sum(deliveries), 0) AS deliveries,"
                    " max(last_received_at) AS last FROM dead_letters"
                )
            ).fetchone()
    except psycopg.errors.UndefinedTable:
        return schemas.Ready(database="not migrated", detail="run `hemhub migrate`")
    except (PoolTimeout, psycopg.OperationalError) as exc:
        return schemas.Ready(database="unreachable", detail=type(exc).__name__)
    pending = sorted(_expected_migrations() - applied)
    if pending or meta is None:
        return schemas.Ready(database="not migrated", detail=f"pending: {', '.join(pending)}")
    response.status_code = 200
    partitioning: Literal["native", "timescaledb"] = (
        "timescaledb" if meta["value"] == "timescaledb" else "native"
    )
    return schemas.Ready(
        database="ok",
        partitioning=partitioning,
        unattributed_readings=unattributed["n"] if unattributed else None,
        dead_letters=dead["n"] if dead else None,
        dead_letter_deliveries=dead["deliveries"] if dead else None,
        last_dead_letter_at=dead["last"] if dead else None,
    )


@router.get("/api/v1/me", response_model=schemas.Me, tags=["auth"])
async def me(principal: Annotated[Principal, Depends(current_principal)]) -> schemas.Me:
    """Who the token says the caller is (no patient data)."""
    return schemas.Me(
        sub=principal.sub,
        role=principal.role,
        tenant=principal.tenant,
        care_units=principal.care_unit_list,
    )


@router.get("/api/v1/patients", response_model=list[schemas.Patient], tags=["patients"])
async def list_patients(
    principal: Nurse,
    conn: DbConn,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[schemas.Patient]:
    """The patients of the caller's principal, with their count of open alerts."""
    async with conn.transaction():
        scope = CARE_UNIT_SCOPE if principal.care_units is not None else ""
        cur = await conn.execute(
            PATIENTS_SQL.format(scope=scope),
            {
                "tenant": principal.tenant,
                "units": principal.care_unit_list,
                "limit": limit,
                "offset": offset,
            },
        )
        patients = [schemas.Patient.model_validate(r) for r in await cur.fetchall()]
        # The roster (names, programme) is logged as one access, not one row per patient:
        # clinical data (observations, alerts) is what gets per-patient rows.
        await audit.record_access(
            conn,
            principal,
            "patients.list",
            "patients",
            None,
            {"count": len(patients), "limit": limit, "offset": offset},
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
    since: Annotated[AwareDatetime | None, Query(description="inclusive lower bound")] = None,
    until: Annotated[AwareDatetime | None, Query(description="exclusive upper bound")] = None,
    measurement_type: Annotated[MeasurementType | None, Query(alias="type")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.Observation]:
    """Readings attributed to the patient (by assignment period), newest first.

    Page backwards by passing the oldest `measured_at` you got as `until`.
    """
    if since is not None and until is not None and since >= until:
        raise RequestValidationError(
            [{"loc": ("query", "until"), "msg": "until must be after since", "type": "value_error"}]
        )
    resource = f"patients/{patient_id}/observations"
    async with conn.transaction():
        if not await _patient_of_tenant(conn, principal, patient_id, "observations.read", resource):
            observations = None
        else:
            filters = []
            params: dict[str, Any] = {
                "patient": patient_id,
                "tenant": principal.tenant,
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
            cur = await conn.execute(
                OBSERVATIONS_SQL.format(filters=" ".join(filters)),
                params,
            )
            observations = [_observation(r) for r in await cur.fetchall()]
            await audit.record_access(
                conn,
                principal,
                "observations.read",
                resource,
                patient_id,
                {
                    "count": len(observations),
                    "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None,
                    "type": measurement_type.value if measurement_type else None,
                },
            )
    if observations is None:
        raise _not_found("patient")
    return observations


@router.get("/api/v1/alerts", response_model=list[schemas.Alert], tags=["alerts"])
async def list_alerts(
    principal: Nurse,
    conn: DbConn,
    status: schemas.AlertStatus | None = None,
    patient_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.Alert]:
    """The principal's alerts, most recently (re)triggered first."""
    async with conn.transaction():
        alerts = await _select_alerts(
            conn,
            principal.tenant,
            care_units=principal.care_unit_list,
            status=status,
            patient_id=patient_id,
            limit=limit,
        )
        await audit.record_access_many(
            conn,
            principal,
            "alerts.list",
            "alerts",
            (a.patient_id for a in alerts),
            {
                "count": len(alerts),
                "status": status.value if status else None,
                "patient_id": str(patient_id) if patient_id else None,
            },
        )
    return alerts


async def _transition(
    conn: Conn,
    principal: Principal,
    alert_id: uuid.UUID,
    *,
    action: str,
    event: str,
    assignments: str,
    condition: str,
    params: dict[str, Any],
    conflict_status: schemas.AlertStatus | None,
) -> schemas.Alert:
    """Apply a status change atomically; an alert already in the target state is returned as is.

    A change is announced on NOTIFY (`event`), delivered at commit with the audit row.
    """
    scope = _TRANSITION_SCOPE if principal.care_units is not None else ""
    sql = _TRANSITION_SQL.format(assignments=assignments, condition=condition, scope=scope)
    async with conn.transaction():
        # The WHERE on the current status makes concurrent acks race-free: one wins,
        # the other sees the new state and answers 200 unchanged.
        changed = await (
            await conn.execute(
                sql,
                {
                    **params,
                    "id": alert_id,
                    "tenant": principal.tenant,
                    "units": principal.care_unit_list,
                    "sub": principal.sub,
                    "channel": NOTIFY_CHANNEL,
                    "event": event,
                },
            )
        ).fetchone()
        alerts = await _select_alerts(
            conn, principal.tenant, care_units=principal.care_unit_list, alert_id=alert_id
        )
        if not alerts:
            raise _not_found("alert")
        alert = alerts[0]
        if changed is None and alert.status == conflict_status:
            raise HTTPException(409, detail=f"alert is {alert.status.value}")
        await audit.record_access(
            conn,
            principal,
            action,
            f"alerts/{alert_id}",
            alert.patient_id,
            {"changed": changed is not None},
        )
    return alert


@router.post("/api/v1/alerts/{alert_id}/ack", response_model=schemas.Alert, tags=["alerts"])
async def acknowledge_alert(alert_id: uuid.UUID, principal: Nurse, conn: DbConn) -> schemas.Alert:
    """open -> acknowledged (by the caller); idempotent; 409 when already resolved."""
    return await _transition(
        conn,
        principal,
        alert_id,
        action="alert.ack",
        event="acknowledged",
        assignments="status = 'acknowledged', acknowledged_by = %(sub)s, acknowledged_at = now()",
        condition="status = 'open'",
        params={},
        conflict_status=schemas.AlertStatus.RESOLVED,
    )


@router.post("/api/v1/alerts/{alert_id}/resolve", response_model=schemas.Alert, tags=["alerts"])
async def resolve_alert(
    alert_id: uuid.UUID,
    principal: Nurse,
    conn: DbConn,
    body: Annotated[schemas.ResolveRequest | None, Body()] = None,
) -> schemas.Alert:
    """open|acknowledged -> resolved (by the caller, with an optional note); idempotent."""
    return await _transition(
        conn,
        principal,
        alert_id,
        action="alert.resolve",
        event="resolved",
        assignments="status = 'resolved', resolved_by = %(sub)s, resolved_at = now(),"
        " resolution_note = %(note)s",
        condition="status <> 'resolved'",
        params={"note": body.note if body else None},
        conflict_status=None,
    )


# --- live alerts (Server-Sent Events) -----------------------------------------------------


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


async def _deliver(
    pool: Pool, principal: Principal, item: live.AlertEvent
) -> schemas.AlertStreamEvent | None:
    """The alert behind a notification as the caller may see it, audit-logged; None if not."""
    if item.tenant_id != principal.tenant:
        return None  # another principal's alert: not even a database round trip
    async with pool.connection() as conn, conn.transaction():
        # Re-read under the caller's scope (tenant, care units): a resident outside the
        # caller's units yields nothing, and the client gets the alert's current state.
        alerts = await _select_alerts(
            conn, principal.tenant, care_units=principal.care_unit_list, alert_id=item.alert_id
        )
        if not alerts:
            return None
        await audit.record_access(
            conn,
            principal,
            "alerts.stream",
            f"alerts/{item.alert_id}",
            alerts[0].patient_id,
            {"event": item.event},
        )
    return schemas.AlertStreamEvent(event=item.event, alert=alerts[0])


async def _alert_events(
    pool: Pool, hub: live.AlertHub, principal: Principal, heartbeat_s: float
) -> AsyncIterator[bytes]:
    deadline = principal.expires_at
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
            if isinstance(item, live.Resync):
                yield _sse("resync", {"reason": item.reason})
                continue
            try:
                shown = await _deliver(pool, principal, item)
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
    async with pool.connection() as conn, conn.transaction():
        await audit.record_access(
            conn,
            principal,
            "alerts.stream.open",
            "alerts/stream",
            None,
            {"care_units": [str(u) for u in principal.care_unit_list or []] or None},
        )
    heartbeat_s = float(getattr(request.app.state, "sse_heartbeat_s", SSE_HEARTBEAT_S))
    return StreamingResponse(
        _alert_events(pool, hub, principal, heartbeat_s),
        media_type="text/event-stream",
        # no-transform/X-Accel-Buffering: proxies must pass events on as they come.
        headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"},
    )


# --- care units ---------------------------------------------------------------------------


@router.get("/api/v1/care-units", response_model=list[schemas.CareUnit], tags=["care units"])
async def list_care_units(principal: Fleet, conn: DbConn) -> list[schemas.CareUnit]:
    """The principal's care units with their number of residents (no patient data)."""
    cur = await conn.execute(registry.CARE_UNITS_SQL, (principal.tenant,))
    units = [schemas.CareUnit.model_validate(r) for r in await cur.fetchall()]
    if principal.care_units is not None:
        units = [u for u in units if u.id in principal.care_units]
    return units


@router.post(
    "/api/v1/care-units",
    response_model=schemas.CareUnit,
    status_code=201,
    responses={409: {}},
    tags=["care units"],
)
async def create_care_unit(
    principal: Fleet, conn: DbConn, body: schemas.CareUnitCreate
) -> schemas.CareUnit:
    """A new care unit of the caller's principal; names are unique within a principal."""
    name = body.name.strip()
    try:
        async with conn.transaction():
            row = await (
                await conn.execute(registry.CREATE_CARE_UNIT_SQL, (principal.tenant, name))
            ).fetchone()
            assert row is not None
            await audit.record_access(
                conn, principal, "care_unit.create", f"care-units/{row['id']}", None, {"name": name}
            )
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, detail="a care unit of that name exists") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        # The principal is not in the registry yet: nothing to attach a unit to.
        raise HTTPException(409, detail="the principal is not registered") from exc
    return schemas.CareUnit(id=row["id"], name=name, created_at=row["created_at"], residents=0)


@router.put(
    "/api/v1/patients/{patient_id}/care-unit",
    response_model=schemas.PatientCareUnit,
    tags=["care units"],
)
async def place_patient(
    patient_id: uuid.UUID, principal: Fleet, conn: DbConn, body: schemas.CareUnitPlacement
) -> schemas.PatientCareUnit:
    """Place the resident in a care unit of the principal (`null`: in none)."""
    resource = f"patients/{patient_id}/care-unit"
    unit = body.care_unit_id
    async with conn.transaction():
        if not await _patient_of_tenant(
            conn, principal, patient_id, "patient.care_unit", resource, lock=True
        ):
            raise _not_found("patient")
        in_scope = principal.care_units is None or unit in principal.care_units
        if unit is not None and (
            not in_scope
            or await (
                await conn.execute(registry.CARE_UNIT_OF_TENANT_SQL, (unit, principal.tenant))
            ).fetchone()
            is None
        ):
            raise _not_found("care unit")
        await conn.execute(registry.PLACE_PATIENT_SQL, (unit, patient_id, principal.tenant))
        await audit.record_access(
            conn,
            principal,
            "patient.care_unit",
            resource,
            patient_id,
            {"care_unit_id": str(unit) if unit else None},
        )
    return schemas.PatientCareUnit(patient_id=patient_id, care_unit_id=unit)


# --- the fleet: unattributed readings ---------------------------------------------------


@router.get("/api/v1/fleet/unattributed", response_model=schemas.Unattributed, tags=["fleet"])
async def list_unattributed(
    principal: Fleet,
    conn: DbConn,
    since: Annotated[AwareDatetime | None, Query(description="measured at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> schemas.Unattributed:
    """Counts per device and hub of readings no assignment covered, for the devices the
    caller's principal owns; no values, never under a resident."""
    filters, params = "", {"tenant": principal.tenant, "limit": limit}
    if since is not None:
        filters, params["since"] = "AND r.measured_at >= %(since)s", since
    async with conn.transaction():
        cur = await conn.execute(UNATTRIBUTED_SQL.format(filters=filters), params)
        rows = await cur.fetchall()
        devices = [schemas.UnattributedDevice.model_validate(r) for r in rows]
        total = int(rows[0]["total"]) if rows else 0
        await audit.record_access(
            conn,
            principal,
            "fleet.unattributed",
            "fleet/unattributed",
            None,
            {"devices": len(devices), "readings": total, "since": since and since.isoformat()},
        )
    return schemas.Unattributed(since=since, total=total, devices=devices)


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
    at: Annotated[AwareDatetime | None, Query(description="instant (default now)")] = None,
) -> schemas.Thresholds:
    """The alert thresholds in force for the patient (now, or `at`), their version and history."""
    when = at or datetime.now(UTC)
    resource = f"patients/{patient_id}/thresholds"
    async with conn.transaction():
        view = None
        if await _patient_of_tenant(conn, principal, patient_id, "thresholds.read", resource):
            view = _thresholds_view(await _threshold_book(conn, patient_id), patient_id, when)
            await audit.record_access(
                conn,
                principal,
                "thresholds.read",
                resource,
                patient_id,
                {"version": view.version, "at": when.isoformat()},
            )
    if view is None:
        raise _not_found("patient")
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
    async with conn.transaction():
        view = None
        # The row lock serialises concurrent changes: versions are numbered without gaps.
        if await _patient_of_tenant(
            conn, principal, patient_id, "thresholds.change", resource, lock=True
        ):
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
            await audit.record_access(
                conn,
                principal,
                "thresholds.change",
                resource,
                patient_id,
                {
                    "version": params["version"],
                    "applies_from": applies_from.isoformat(),
                    "patch": body.rules,
                },
            )
    if view is None:
        raise _not_found("patient")
    return view


# --- the app ----------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.url.path.startswith("/api/"):
        # Patient data must not linger in browser or proxy caches.
        response.headers["Cache-Control"] = "no-store"
    elif request.url.path == "/" or request.url.path.startswith("/static/"):
        # The UI handles bearer tokens: only our own script, no inline code, no framing.
        # (Not on /docs: Swagger UI needs its CDN script and an inline bootstrap.)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
    return response


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; `settings` replaces `get_settings()` for every dependency (tests, demo)."""
    resolved = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not resolved.database_url:
            raise RuntimeError("HEMHUB_DATABASE_URL is not set (`hemhub demo` sets it)")
        if not resolved.jwt_jwks_url:
            ensure_demo_key(resolved.demo_key_file)  # demo: tokens are verified locally
        pool = create_pool(resolved.database_url)
        await open_pool(pool)
        app.state.pool = pool
        try:
            yield
        finally:
            hub: live.AlertHub | None = getattr(app.state, "alert_hub", None)
            if hub is not None:
                await hub.close()
            await pool.close()

    app = FastAPI(
        title="hemhub API",
        version="1",
        summary="Readings and alerts of home-monitored patients, per principal.",
        lifespan=lifespan,
    )
    app.dependency_overrides[get_settings] = lambda: resolved
    app.state.settings = resolved
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.middleware("http")(_security_headers)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    return app
