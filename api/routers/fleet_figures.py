"""Follow-up figures of the caller's principal (HMC and admin), as JSON or CSV; audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from api import figures
from api.access import patient_data
from api.auth import Fleet
from api.db import DbConn
from api.health_schemas import FigureTable
from api.queries import CARE_UNIT_SCOPE
from api.schemas import Instant

router = APIRouter()

#: The default period (ending now) and the longest one taken.
DEFAULT_PERIOD = timedelta(weeks=12)
MAX_PERIOD = timedelta(days=731)


@router.get(
    "/api/v1/fleet/figures/{figure}",
    response_model=FigureTable,
    responses={200: {"content": {"text/csv": {}}}, 404: {}},
    tags=["fleet figures"],
)
async def get_figure(
    request: Request,
    principal: Fleet,
    conn: DbConn,
    figure: Annotated[str, Path(description=", ".join(figures.FIGURES))],
    start: Annotated[
        Instant | None, Query(alias="from", description="default: 12 weeks before `to`")
    ] = None,
    end: Annotated[Instant | None, Query(alias="to", description="default: now")] = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="or Accept")] = None,
) -> Any:
    """One figure as a table; CSV with `format=csv` or `Accept: text/csv`."""
    fig = figures.FIGURES.get(figure)
    if fig is None:
        raise HTTPException(404, detail=f"no such figure; figures: {', '.join(figures.FIGURES)}")
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_PERIOD
    if not start < end:
        raise HTTPException(422, detail="`from` must be before `to`")
    if end - start > MAX_PERIOD:
        raise HTTPException(422, detail=f"the period is at most {MAX_PERIOD.days} days")
    params: dict[str, Any] = {"tenant": principal.tenant, "start": start, "end": end}
    scope = ""
    if principal.care_units is not None:
        scope, params["units"] = CARE_UNIT_SCOPE, principal.care_unit_list
    resource = f"fleet/figures/{figure}"
    async with patient_data(conn, principal, "fleet.figures", resource) as access:
        cur = await conn.execute(fig.sql.replace("{scope}", scope), params)
        rows = [dict(r) for r in await cur.fetchall()]
        detail = {"from": start.isoformat(), "to": end.isoformat(), "rows": len(rows)}
        if fig.patient_column is not None:
            await access.record_many((r[fig.patient_column] for r in rows), detail)
        else:
            await access.record(None, detail)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        name = f"hemhub-{figure}-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        return Response(
            figures.to_csv(fig.columns, rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return FigureTable(
        figure=figure, title=fig.title, start=start, end=end, columns=list(fig.columns), rows=rows
    )
