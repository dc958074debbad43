"""Liveness, readiness and the nurse web UI's page (no patient data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import psycopg
import psycopg.errors
from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse
from psycopg_pool import PoolTimeout

from api import queries, schemas
from api.db import Pool, get_pool

STATIC_DIR = Path(__file__).parent.parent / "static"

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
                for r in await (await conn.execute(queries.APPLIED_MIGRATIONS_SQL)).fetchall()
            }
            meta = await (await conn.execute(queries.PARTITIONING_SQL)).fetchone()
            unattributed = await (await conn.execute(queries.UNATTRIBUTED_COUNT_SQL)).fetchone()
            dead = await (await conn.execute(queries.DEAD_LETTERS_SQL)).fetchone()
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
        quarantined_readings=unattributed["quarantined"] if unattributed else None,
        dead_letters=dead["n"] if dead else None,
        dead_letter_deliveries=dead["deliveries"] if dead else None,
        last_dead_letter_at=dead["last"] if dead else None,
    )


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")
