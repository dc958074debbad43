"""The nurse's pages: the triage queue, an alert's page, a resident's chart and
medication calendar. Read-only; every answer is confined by `queries.visible` and
audited per resident shown (`api.access.patient_data`)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Query

from api import chart_data, nurse_queries, queries, schemas
from api import nurse_schemas as ns
from api.access import not_found, patient_data
from api.auth import Nurse, Principal
from api.db import Conn, DbConn
from api.reason_parts import reason_parts
from api.routers.thresholds import _thresholds_view
from ingest import thresholds
from ingest.engine import missing_rule
from ingest.programmes import PROGRAMMES
from ingest.rules import RANGE_SPECS

router = APIRouter(tags=["nurse"])

SEVERITIES: tuple[ns.Severity, ...] = ("critical", "high", "medium", "low")
#: The chart's periods, in days.
CHART_DAYS = (7, 30, 90)
#: The measurements the chart draws.
CHART_TYPES = ["blood_pressure", "body_weight", "pulse_oximetry", "glucose"]
#: The alert page shows the readings from this long before the alert to this long after.
AROUND_BEFORE, AROUND_AFTER = timedelta(days=3), timedelta(days=1)
AROUND_LIMIT = 100


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HTTPException(422, detail=f"tz: unknown time zone {tz[:64]!r}") from exc


def _scope(principal: Principal, at: str, table: str = "r") -> str:
    return queries.visible(
        at=at,
        care_units=principal.care_units is not None,
        data_tenant=f"{table}.tenant_id",
        data_patient=f"{table}.patient_id",
    )


async def _book(conn: Conn, patient_ids: list[uuid.UUID]) -> thresholds.ThresholdBook:
    params = {"patients": patient_ids}
    programme_rows = await (await conn.execute(thresholds.PROGRAMMES_SQL, params)).fetchall()
    set_rows = await (await conn.execute(thresholds.SETS_SQL, params)).fetchall()
    return thresholds.ThresholdBook.from_rows(
        [tuple(r.values()) for r in programme_rows], [tuple(r.values()) for r in set_rows]
    )


def _book_of(
    programmes: dict[uuid.UUID, str], sets: list[dict[str, Any]]
) -> thresholds.ThresholdBook:
    """The book from the residents' programmes and their versions as JSON (`_SETS_JSON`:
    the columns of thresholds.SETS_SQL, timestamps as text): one round trip less."""
    rows = [
        (
            s["patient_id"],
            s["id"],
            s["version"],
            s["programme"],
            s["rules"],
            s["created_by"],
            datetime.fromisoformat(s["created_at"]),
            datetime.fromisoformat(s["applies_from"]),
            s["note"],
        )
        for s in sets
    ]
    return thresholds.ThresholdBook.from_rows(list(programmes.items()), rows)


def _fired_by(book: thresholds.ThresholdBook, row: dict[str, Any]) -> thresholds.Effective | None:
    """The threshold version the alert records: its set, else the programme profile."""
    set_id = row["threshold_set_id"]
    if set_id is None:
        return thresholds.programme_default(row["programme"])
    return next((s for s in book.overrides.get(row["patient_id"], []) if s.set_id == set_id), None)


def _triage_alert(row: dict[str, Any], eff: thresholds.Effective | None) -> ns.TriageAlert:
    parts = reason_parts(
        rule=row["rule"],
        severity=row["severity"],
        values=row["values"],
        status=row["reading_status"],
        event=row["event"],
        thresholds=eff.thresholds if eff is not None else None,
    )
    return ns.TriageAlert.model_validate({**row, "reason_parts": parts})


async def _alert_rows(
    conn: Conn, principal: Principal, filters: list[str], params: dict[str, Any], limit: int
) -> list[dict[str, Any]]:
    sql = nurse_queries.TRIAGE_SQL.format(
        scope=_scope(principal, "a.measured_at", "a"), filters=" ".join(filters)
    )
    params = {
        **queries.scope_params(principal.tenant, principal.care_unit_list),
        **params,
        "limit": limit,
    }
    return list(await (await conn.execute(sql, params)).fetchall())


@router.get("/api/v1/triage", response_model=ns.TriageQueue)
async def triage_queue(
    principal: Nurse,
    conn: DbConn,
    care_unit: Annotated[uuid.UUID | None, Query(description="only this care unit")] = None,
    programme: Annotated[str | None, Query(description="only this programme")] = None,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="how many (the most urgent); `total` counts all")
    ] = 50,
) -> ns.TriageQueue:
    """The unresolved alerts the caller sees: open before acknowledged, each severity
    first, then the longest waiting first; with the resident, the reason in parts, and
    the counts per severity."""
    if programme is not None and programme not in PROGRAMMES:
        raise HTTPException(422, detail=f"programme: one of {', '.join(PROGRAMMES)}")
    filters = [nurse_queries.ACTIVE_FILTER]
    params: dict[str, Any] = {}
    if care_unit is not None:
        filters.append(nurse_queries.UNIT_FILTER)
        params["care_unit"] = care_unit
    if programme is not None:
        filters.append(nurse_queries.PROGRAMME_FILTER)
        params["programme"] = programme
    async with patient_data(conn, principal, "triage.read", "triage") as access:
        rows = await _alert_rows(conn, principal, filters, params, limit)
        units = "AND u.id = ANY(%(units)s::uuid[])" if principal.care_units is not None else ""
        extras = await (
            await conn.execute(
                nurse_queries.TRIAGE_EXTRAS_SQL.format(
                    scope=_scope(principal, "a.measured_at", "a"),
                    filters=" ".join(filters),
                    units=units,
                ),
                {
                    **queries.scope_params(principal.tenant, principal.care_unit_list),
                    **params,
                    "patients": list({r["patient_id"] for r in rows}),
                },
            )
        ).fetchone()
        assert extras is not None  # an aggregate: always one row
        book = _book_of({r["patient_id"]: r["programme"] for r in rows}, extras["sets"])
        alerts = [_triage_alert(r, _fired_by(book, r)) for r in rows]
        counts: dict[ns.Severity, int] = dict.fromkeys(SEVERITIES, 0)
        counts.update(extras["counts"])
        await access.record_many(
            (a.patient_id for a in alerts),
            {
                "count": len(alerts),
                "care_unit": str(care_unit) if care_unit else None,
                "programme": programme,
            },
        )
    return ns.TriageQueue(
        now=datetime.now(UTC),
        alerts=alerts,
        counts=counts,
        total=sum(counts.values()),
        care_units=[ns.CareUnitOption.model_validate(u) for u in extras["care_units"]],
        programmes=list(PROGRAMMES),
    )


def _time_note(row: dict[str, Any]) -> Literal["hub_clock_unsynced", "no_device_time"] | None:
    if row["clock_source"] == "no_device_time":
        return "no_device_time"
    if not row["hub_clock_synced"]:
        return "hub_clock_unsynced"
    return None


def _history(row: dict[str, Any], events: list[dict[str, Any]]) -> list[ns.AlertEvent]:
    """Opened (and repeated) by the engine, then each person's step; a step taken before
    steps were kept (no event row) is told from the alert's own columns."""
    out = [ns.AlertEvent(at=row["opened_at"], actor="hemhub", action="opened")]
    if row["count"] > 1:
        out.append(
            ns.AlertEvent(at=row["last_at"], actor="hemhub", action="repeated", count=row["count"])
        )
    actions = {e["action"] for e in events}
    out += [ns.AlertEvent.model_validate(e) for e in events]
    if row["acknowledged_at"] is not None and "acknowledged" not in actions:
        out.append(
            ns.AlertEvent(
                at=row["acknowledged_at"], actor=row["acknowledged_by"], action="acknowledged"
            )
        )
    if row["resolved_at"] is not None and "resolved" not in actions:
        out.append(
            ns.AlertEvent(
                at=row["resolved_at"],
                actor=row["resolved_by"] or "hemhub",
                action="auto_resolved" if row["auto_resolved"] else "resolved",
                note=row["resolution_note"],
            )
        )
    return sorted(out, key=lambda e: e.at)


def _alert_measurement(row: dict[str, Any]) -> str | None:
    """The measurement whose readings surround the alert."""
    if row["measurement_type"] is not None:
        return str(row["measurement_type"])
    for mtype in (*CHART_TYPES, "medication_event"):
        if row["rule"] == missing_rule(mtype):
            return mtype
    return None


@router.get("/api/v1/alerts/{alert_id}/page", response_model=ns.AlertPage, tags=["alerts"])
async def alert_page(alert_id: uuid.UUID, principal: Nurse, conn: DbConn) -> ns.AlertPage:
    """Everything an alert's page shows: the alert with its reason in parts, the readings
    of its measurement around it, the threshold version that fired, and who did what."""
    resource = f"alerts/{alert_id}"
    async with patient_data(conn, principal, "alert.read", resource) as access:
        rows = await _alert_rows(
            conn, principal, [nurse_queries.ALERT_FILTER], {"alert": alert_id}, 1
        )
        if not rows:
            raise access.refuse(not_found("alert"), None, {"outcome": "not_found"})
        row = rows[0]
        patient_id = row["patient_id"]
        book = await _book(conn, [patient_id])
        eff = _fired_by(book, row)
        readings: list[ns.NearbyReading] = []
        mtype = _alert_measurement(row)
        if mtype is not None:
            cur = await conn.execute(
                nurse_queries.READINGS_SQL.format(scope=_scope(principal, "r.measured_at")),
                {
                    **queries.scope_params(principal.tenant, principal.care_unit_list),
                    "patient": patient_id,
                    "types": [mtype],
                    "since": row["measured_at"] - AROUND_BEFORE,
                    "until": row["measured_at"] + AROUND_AFTER,
                    "limit": AROUND_LIMIT,
                },
            )
            readings = [
                ns.NearbyReading(
                    id=r["idempotency_key"],
                    measured_at=r["measured_at"],
                    measurement_type=r["measurement_type"],
                    values=r["values"],
                    status=r["status"],
                    event=r["event"],
                    clock=schemas.Clock(
                        source=r["clock_source"],
                        offset_s=r["clock_offset_s"],
                        hub_clock_synced=r["hub_clock_synced"],
                    ),
                    time_note=_time_note(r),
                    fired=r["idempotency_key"] == row["reading_id"],
                )
                for r in await cur.fetchall()
            ]
        events = await (
            await conn.execute(
                nurse_queries.ALERT_EVENTS_SQL, {"alert": alert_id, "tenant": row["principal"]}
            )
        ).fetchall()
        view = None
        if eff is not None:
            view = _thresholds_view(
                book, patient_id, eff.applies_from or row["measured_at"]
            ).model_copy(
                update={
                    "version": eff.version,
                    "source": eff.source,
                    "threshold_set_id": eff.set_id,
                    "created_by": eff.created_by,
                    "created_at": eff.created_at,
                    "applies_from": eff.applies_from,
                    "note": eff.note,
                    "rules": eff.thresholds.model_dump(mode="json"),
                }
            )
        await access.record(patient_id, {"alert_id": str(alert_id), "readings": len(readings)})
    return ns.AlertPage(
        now=datetime.now(UTC),
        alert=_triage_alert(row, eff),
        readings=readings,
        thresholds=view,
        history=_history(row, list(events)),
    )


def _rule_metrics(rule: str) -> list[str]:
    spec = RANGE_SPECS.get(rule)
    if spec is not None:
        return list(spec.metrics)
    if rule.startswith("weight"):
        return ["weight"]
    return []


def _missing(
    schedule: dict[str, Any],
    rows: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    grace: timedelta,
) -> ns.ChartMissing:
    """Where a schedule stands (from CHART_CONTEXT_SQL's JSON) and its gaps in the period."""
    every = timedelta(seconds=float(schedule["every_s"]))
    starts_at = datetime.fromisoformat(schedule["starts_at"])
    last = schedule["last_valid_at"] and datetime.fromisoformat(schedule["last_valid_at"])
    due = (last or starts_at) + every
    valid = [
        r["measured_at"]
        for r in rows
        if r["measurement_type"] == schedule["measurement_type"]
        and any(q.get("value") is not None for q in r["values"])
    ]
    return ns.ChartMissing(
        measurement_type=schedule["measurement_type"],
        every_s=every.total_seconds(),
        last_valid_at=last or None,
        due_at=due,
        overdue=end > due + grace,
        error_readings=schedule["error_readings"] or 0,
        error_flags=schedule["error_flags"] or [],
        gaps=chart_data.gaps(valid, max(start, starts_at), end, every, grace),
    )


@router.get("/api/v1/patients/{patient_id}/chart", response_model=ns.Chart, tags=["patients"])
async def resident_chart(
    patient_id: uuid.UUID,
    principal: Nurse,
    conn: DbConn,
    days: Annotated[int, Query(description="the period: 7, 30 or 90 days")] = 30,
) -> ns.Chart:
    """A resident's measurements over the last `days`, per metric, with the threshold
    bands in force, alert markers, the weight's 3-day change, and missing data."""
    if days not in CHART_DAYS:
        raise HTTPException(422, detail="days: one of 7, 30, 90")
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    resource = f"patients/{patient_id}/chart"
    async with patient_data(conn, principal, "chart.read", resource) as access:
        await access.require_patient(patient_id, shared=True)
        base = {
            **queries.scope_params(principal.tenant, principal.care_unit_list),
            "patient": patient_id,
            "since": start,
            "until": end,
        }
        context = await (
            await conn.execute(
                nurse_queries.CHART_CONTEXT_SQL.format(
                    scope=queries.visible(at=None, care_units=principal.care_units is not None),
                    alert_scope=_scope(principal, "a.measured_at", "a"),
                    reading_scope=_scope(principal, "r.measured_at"),
                ),
                base,
            )
        ).fetchone()
        assert context is not None  # reached through require_patient
        rows = await (
            await conn.execute(
                nurse_queries.CHART_READINGS_SQL.format(scope=_scope(principal, "r.measured_at")),
                {**base, "types": CHART_TYPES},
            )
        ).fetchall()
        raw = chart_data.series_of(rows)
        series: dict[str, list[dict[str, Any]]] = {}
        downsampled: dict[str, bool] = {}
        for metric, points in raw.items():
            series[metric], downsampled[metric] = chart_data.downsample(
                points, start, end, chart_data.MAX_POINTS
            )
        book = _book_of({patient_id: context["programme"]}, context["sets"])
        markers = [
            ns.ChartMarker.model_validate({**a, "metrics": _rule_metrics(a["rule"])})
            for a in context["markers"]
        ]
        grace = timedelta(hours=book.at(patient_id, end).thresholds.missing_data.grace_hours)
        missing = [_missing(s, rows, start, end, grace) for s in context["schedules"]]
        await access.record(patient_id, {"days": days, "readings": len(rows)})
    return ns.Chart(
        patient_id=patient_id,
        display_name=context["display_name"],
        programme=context["programme"],
        care_unit_name=context["care_unit_name"],
        days=days,
        start=start,
        end=end,
        units={m: chart_data.unit_of(m) for m in chart_data.CHART_METRICS},
        series=series,
        downsampled=downsampled,
        weight_change=chart_data.weight_change(raw["weight"]),
        bands=chart_data.bands(book, patient_id, start, end),
        markers=markers,
        missing=missing,
        unsynced_readings=sum(1 for r in rows if r["unsure_time"]),
    )


@router.get(
    "/api/v1/patients/{patient_id}/adherence", response_model=ns.Adherence, tags=["patients"]
)
async def medication_adherence(
    patient_id: uuid.UUID,
    principal: Nurse,
    conn: DbConn,
    days: Annotated[int, Query(ge=7, le=92)] = 35,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the days")] = (
        "Europe/Stockholm"
    ),
) -> ns.Adherence:
    """The medication robot's doses per calendar day (in `tz`) over the last `days`:
    due, taken, late and missed."""
    zone = _zone(tz)
    today = datetime.now(zone).date()
    first: date = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), zone)
    until = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone)
    resource = f"patients/{patient_id}/adherence"
    async with patient_data(conn, principal, "adherence.read", resource) as access:
        await access.require_patient(patient_id, shared=True)
        params = {
            **queries.scope_params(principal.tenant, principal.care_unit_list),
            "patient": patient_id,
            "since": since,
            "until": until,
        }
        scope = _scope(principal, "r.measured_at")
        rows = await (
            await conn.execute(nurse_queries.DOSE_EVENTS_SQL.format(scope=scope), params)
        ).fetchall()
        has = await (
            await conn.execute(nurse_queries.HAS_DISPENSER_SQL.format(scope=scope), params)
        ).fetchone()
        await access.record(patient_id, {"days": days, "events": len(rows)})
    return ns.Adherence(
        patient_id=patient_id,
        time_zone=tz,
        days=[
            ns.AdherenceDay.model_validate(d)
            for d in chart_data.adherence_days(
                ((r["measured_at"], r["kind"]) for r in rows), first, today, zone
            )
        ],
        has_dispenser=bool(has and has["has"]),
    )
