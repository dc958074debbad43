"""The access log, reviewed: who read or changed which resident's data, when, through what.

For the principal's auditors and admins, confined to the principal's own rows (the
accesses its staff and integrations made). Filters: resident, user (subject), action,
period; pages by id (`after`); CSV export, streamed. Reading the log is itself patient-data
access and is audited like any other: one row per resident whose entries were shown.
The chain's verification is the operator's (`hemhub audit verify`, on the database):
the chain spans every principal. docs/audit.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse

from api.access import patient_data
from api.auth import Auditor
from api.csv_export import csv_header, csv_lines
from api.db import DbConn, Pool, get_pool
from api.schemas import Instant
from api.schemas_audit import AuditEntry, AuditPage
from api.text import text_problem

router = APIRouter(tags=["audit"])

#: The longest page; an export has no limit (it is streamed).
MAX_PAGE = 1000
#: Rows an export fetches from its cursor at a time.
EXPORT_BATCH = 500
MAX_ACTIONS = 20

COLUMNS = (
    "id",
    "at",
    "subject",
    "role",
    "action",
    "resource",
    "patient_id",
    "patient_display_name",
    "detail",
    "chain_seq",
    "row_hash",
    "pseudonymised",
)

_SELECT = """
SELECT a.id, a.at, a.subject, a.role, a.action, a.resource, a.patient_id,
       p.display_name AS patient_display_name, a.detail, a.chain_seq,
       encode(a.row_hash, 'hex') AS row_hash, a.pseudonymised_as IS NOT NULL AS pseudonymised
FROM audit_log a
LEFT JOIN patients p ON p.id = a.patient_id AND p.tenant_id = a.tenant_id
"""


@dataclass(frozen=True)
class Filters:
    """The review's filters, as SQL conditions on audit_log `a` and their parameters."""

    tenant: str
    patient: uuid.UUID | None
    subject: str | None
    actions: list[str]
    start: datetime | None
    end: datetime | None

    def where(self) -> tuple[str, dict[str, Any]]:
        conditions = ["a.tenant_id = %(tenant)s"]
        params: dict[str, Any] = {"tenant": self.tenant}
        if self.patient is not None:
            conditions.append("a.patient_id = %(patient)s")
            params["patient"] = self.patient
        if self.subject is not None:
            conditions.append("a.subject = %(subject)s")
            params["subject"] = self.subject
        if self.actions:
            conditions.append("a.action = ANY(%(actions)s)")
            params["actions"] = self.actions
        if self.start is not None:
            conditions.append("a.at >= %(start)s")
            params["start"] = self.start
        if self.end is not None:
            conditions.append("a.at < %(end)s")
            params["end"] = self.end
        return " AND ".join(conditions), params

    def detail(self) -> dict[str, Any]:
        """The filters as the review's own audit row records them."""
        return {
            "patient": self.patient and str(self.patient),
            "subject": self.subject,
            "actions": self.actions or None,
            "from": self.start and self.start.isoformat(),
            "to": self.end and self.end.isoformat(),
        }


def _text(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    problem = text_problem(value)
    if problem is not None or not value or len(value) > limit:
        raise HTTPException(422, detail=f"{name}: {problem or f'1 to {limit} characters'}")
    return value


def review_filters(
    principal: Auditor,
    patient: Annotated[uuid.UUID | None, Query(description="the resident's id")] = None,
    subject: Annotated[str | None, Query(description="the user (token subject)")] = None,
    action: Annotated[
        list[str] | None, Query(description="e.g. readings.list (repeatable)")
    ] = None,
    start: Annotated[Instant | None, Query(alias="from", description="at or after")] = None,
    end: Annotated[Instant | None, Query(alias="to", description="before")] = None,
) -> Filters:
    """The filters of a review by the caller's principal; 422 for ones that cannot hold."""
    if principal.care_units is not None:
        # The log is reviewed principal-wide; a token narrowed to care units may not.
        raise HTTPException(403, detail="a care-unit token may not review the access log")
    actions = [a for a in (_text("action", a, 100) for a in action or []) if a is not None]
    if len(actions) > MAX_ACTIONS:
        raise HTTPException(422, detail=f"action: at most {MAX_ACTIONS}")
    if start is not None and end is not None and not start < end:
        raise HTTPException(422, detail="`from` must be before `to`")
    return Filters(
        tenant=principal.tenant,
        patient=patient,
        subject=_text("subject", subject, 256),
        actions=actions,
        start=start,
        end=end,
    )


ReviewFilters = Annotated[Filters, Depends(review_filters)]


def _entry(row: dict[str, Any]) -> AuditEntry:
    return AuditEntry.model_validate(row)


@router.get("/api/v1/audit", response_model=AuditPage)
async def list_audit(
    principal: Auditor,
    conn: DbConn,
    filters: ReviewFilters,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[int | None, Query(ge=0, description="`next_after` of the page before")] = None,
) -> AuditPage:
    """The principal's access-log entries, oldest first, one page."""
    where, params = filters.where()
    if after is not None:
        where += " AND a.id > %(after)s"
        params["after"] = after
    params["limit"] = limit + 1
    sql = f"{_SELECT} WHERE {where} ORDER BY a.id LIMIT %(limit)s"
    async with patient_data(conn, principal, "audit.list", "audit") as access:
        rows = await (await conn.execute(sql, params)).fetchall()
        entries = [_entry(r) for r in rows[:limit]]
        await access.record_many(
            (e.patient_id for e in entries if e.patient_id is not None),
            {**filters.detail(), "after": after, "count": len(entries)},
        )
    more = len(rows) > limit
    return AuditPage(entries=entries, next_after=entries[-1].id if more else None)


@router.get(
    "/api/v1/audit/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_audit(
    principal: Auditor,
    conn: DbConn,
    pool: Annotated[Pool, Depends(get_pool)],
    filters: ReviewFilters,
) -> StreamingResponse:
    """All the principal's entries the filters select, as CSV (a header row, RFC 4180),
    streamed. The export is audited before it starts, with every resident it holds; it
    holds exactly the entries that existed then."""
    where, params = filters.where()
    async with patient_data(conn, principal, "audit.export", "audit") as access:
        found = await (
            await conn.execute(
                "SELECT max(a.id) AS upto, count(*) AS n, coalesce(array_agg(DISTINCT"
                " a.patient_id) FILTER (WHERE a.patient_id IS NOT NULL), '{}') AS patients"
                f" FROM audit_log a WHERE {where}",
                params,
            )
        ).fetchone()
        assert found is not None
        await access.record_many(
            found["patients"], {**filters.detail(), "rows": found["n"], "upto_id": found["upto"]}
        )
    params["upto"] = found["upto"] or 0
    sql = f"{_SELECT} WHERE {where} AND a.id <= %(upto)s ORDER BY a.id"
    return StreamingResponse(
        _csv_rows(pool, sql, params),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="hemhub-audit.csv"'},
    )


async def _csv_rows(pool: Pool, sql: str, params: dict[str, Any]) -> AsyncIterator[str]:
    yield csv_header(COLUMNS)
    async with pool.connection() as conn, conn.transaction():
        cursor = conn.cursor(name="hemhub_audit_export")
        cursor.itersize = EXPORT_BATCH
        await cursor.execute(sql, params)
        batch: list[list[Any]] = []
        async for row in cursor:
            batch.append(
                [
                    *(row[c] for c in COLUMNS[:8]),
                    None
                    if row["detail"] is None
                    else json.dumps(row["detail"], ensure_ascii=False),
                    row["chain_seq"],
                    row["row_hash"],
                    "true" if row["pseudonymised"] else "false",
                ]
            )
            batch[-1][1] = row["at"].isoformat()
            if len(batch) >= EXPORT_BATCH:
                yield csv_lines(COLUMNS, batch)
                batch = []
        await cursor.close()
        if batch:
            yield csv_lines(COLUMNS, batch)
