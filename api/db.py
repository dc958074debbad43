"""The API's PostgreSQL connection pool, opened and closed by the app lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

Conn = AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Conn]

#: How long a request waits for a pooled connection before answering 503.
ACQUIRE_TIMEOUT_S = 5.0


def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """A closed pool; the lifespan opens it.

    Autocommit: every endpoint opens its own `conn.transaction()` so that the read and
    its audit row commit together *before* the response leaves (a yield dependency's
    exit can run after the response is sent).
    """
    return AsyncConnectionPool(
        database_url,
        connection_class=AsyncConnection[DictRow],
        kwargs={"autocommit": True, "row_factory": dict_row, "application_name": "hemhub-api"},
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=ACQUIRE_TIMEOUT_S,
        # A connection the server dropped (restart, failover) is replaced, not handed out.
        check=AsyncConnectionPool.check_connection,
        name="hemhub-api",
    )


async def open_pool(pool: Pool) -> None:
    # wait=False: the API starts (and /readyz answers 503) while PostgreSQL is still down.
    await pool.open(wait=False)


async def get_pool(request: Request) -> Pool:
    """FastAPI dependency: the app's pool (opened by the lifespan).

    Served without its lifespan (a bare `httpx.ASGITransport`), the app opens the pool
    on first use instead of failing; that pool is then never closed explicitly.
    """
    state = request.app.state
    pool: Pool | None = getattr(state, "pool", None)
    if pool is not None:
        return pool
    lock: asyncio.Lock | None = getattr(state, "pool_lock", None)
    if lock is None:  # no await between the check and the set: one lock per app
        lock = state.pool_lock = asyncio.Lock()
    async with lock:
        pool = getattr(state, "pool", None)
        if pool is None:
            pool = create_pool(state.settings.database_url)
            await open_pool(pool)
            state.pool = pool
    return pool


async def get_conn(pool: Annotated[Pool, Depends(get_pool)]) -> AsyncIterator[Conn]:
    """FastAPI dependency: a pooled connection for the duration of the endpoint."""
    try:
        async with pool.connection() as conn:
            yield conn
    except PoolTimeout as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="database unavailable"
        ) from exc


#: Scope "function": the connection goes back to the pool when the endpoint returns,
#: not after the response body has been streamed to a slow client.
DbConn = Annotated[Conn, Depends(get_conn, scope="function")]
