"""`GET /metrics`: the API's Prometheus metrics (api/metrics.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api import metrics
from api.db import Pool, get_pool

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(pool: Annotated[Pool, Depends(get_pool)]) -> Response:
    """Request counts and latencies, and hubs by state (from the hub status stream)."""
    return await metrics.exposition(pool)
