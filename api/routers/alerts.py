"""The principal's alerts: the list, acknowledging and resolving."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query

from api import nurse_queries, queries, schemas
from api.access import not_found, patient_data
from api.auth import Nurse, Principal
from api.db import Conn, DbConn
from api.nurse_schemas import AcknowledgeRequest
from ingest.alerts import NOTIFY_CHANNEL

router = APIRouter()


@router.get("/api/v1/alerts", response_model=list[schemas.Alert], tags=["alerts"])
async def list_alerts(
    principal: Nurse,
    conn: DbConn,
    status: schemas.AlertStatus | None = None,
    patient_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.Alert]:
    """The principal's alerts in triage order: open, then acknowledged, each by severity
    (critical first) and longest waiting first; then resolved, most recent first."""
    async with patient_data(conn, principal, "alerts.list", "alerts") as access:
        alerts = await queries.select_alerts(
            conn,
            principal.tenant,
            care_units=principal.care_unit_list,
            status=status,
            patient_id=patient_id,
            limit=limit,
        )
        await access.record_many(
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
    note: str | None = None,
) -> schemas.Alert:
    """Apply a status change atomically; an alert already in the target state is returned as is.

    A change is announced on NOTIFY (`event`), delivered at commit with the audit row,
    and kept as a step of the alert's history (`alert_events`, with the note).
    """
    scope = queries.TRANSITION_SCOPE if principal.care_units is not None else ""
    sql = queries.TRANSITION_SQL.format(assignments=assignments, condition=condition, scope=scope)
    async with patient_data(conn, principal, action, f"alerts/{alert_id}") as access:
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
        alerts = await queries.select_alerts(
            conn, principal.tenant, care_units=principal.care_unit_list, alert_id=alert_id
        )
        if not alerts:
            # Audited too: acting on other principals' alert ids is worth seeing.
            raise access.refuse(not_found("alert"), None, {"outcome": "not_found"})
        alert = alerts[0]
        if alert.principal != principal.tenant:
            # A share lets the grantee see, not act: the owning principal's nurses do.
            raise access.refuse(
                HTTPException(403, detail="the alert is of a resident another principal shares"),
                alert.patient_id,
                {"outcome": "refused", "principal": alert.principal},
            )
        if changed is None and alert.status == conflict_status:
            raise access.refuse(
                HTTPException(409, detail=f"alert is {alert.status.value}"),
                alert.patient_id,
                {"outcome": "conflict", "status": alert.status.value},
            )
        if changed is not None:
            await conn.execute(
                nurse_queries.INSERT_ALERT_EVENT_SQL,
                {
                    "id": alert_id,
                    "tenant": principal.tenant,
                    "sub": principal.sub,
                    "event": event,
                    "note": note,
                },
            )
        await access.record(alert.patient_id, {"changed": changed is not None})
    return alert


@router.post("/api/v1/alerts/{alert_id}/ack", response_model=schemas.Alert, tags=["alerts"])
async def acknowledge_alert(
    alert_id: uuid.UUID,
    principal: Nurse,
    conn: DbConn,
    body: Annotated[AcknowledgeRequest | None, Body()] = None,
) -> schemas.Alert:
    """open -> acknowledged (by the caller, with an optional note); idempotent; 409 when
    already resolved."""
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
        note=body.note if body else None,
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
        note=body.note if body else None,
    )
