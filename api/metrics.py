"""Prometheus metrics of the API (`GET /metrics`; docs/operations.md lists them).

Requests are counted and timed by route template (never the raw path: ids would make a
series per resident), method and status. The hub gauges are read from `hubs`, which
ingest keeps from the hub status stream (every status and last will), at each scrape:
one indexed count, so every API process answers the same. No patient data, no
principal names: the endpoint needs no token, and is for the operators' network only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from api.db import Pool

REQUESTS = Counter("hemhub_api_requests", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "hemhub_api_request_seconds",
    "Time to answer an HTTP request (to the start of the response)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
HUBS = Gauge(
    "hemhub_hubs",
    "Hubs by their last status (online, offline: a last will or an offline status;"
    " unknown: none yet)",
    ["state"],
)

_HUB_COUNTS_SQL = """
SELECT count(*) FILTER (WHERE online) AS online,
       count(*) FILTER (WHERE NOT online) AS offline,
       count(*) FILTER (WHERE online IS NULL) AS unknown
FROM hubs
"""


async def count_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """HTTP middleware: count and time each request by its route template."""
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        if route != "/metrics":
            REQUEST_SECONDS.labels(request.method, route).observe(time.perf_counter() - started)
            REQUESTS.labels(request.method, route, str(status)).inc()


async def exposition(pool: Pool) -> Response:
    """The metrics in the Prometheus text format, the hub gauges read now."""
    async with pool.connection() as conn:
        row = await (await conn.execute(_HUB_COUNTS_SQL)).fetchone()
    if row is not None:
        for state in ("online", "offline", "unknown"):
            HUBS.labels(state).set(row[state])
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
