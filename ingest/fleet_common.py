"""What the fleet operations share: who acts, the errors they raise, row helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

AConn = AsyncConnection[Any]


class FleetError(ValueError):
    """A fleet operation refused as invalid; the message says why (no database detail)."""


class NotFound(FleetError):
    """Unknown, or of another principal (the same answer: no existence is leaked)."""


class Conflict(FleetError):
    """Not possible in the current state (an impossible transition, a duplicate)."""


@dataclass(frozen=True)
class Actor:
    """Who changes the fleet: the token's subject and principal."""

    subject: str
    tenant: str


async def one(conn: AConn, sql: str, params: Any = None) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchone()


async def all_rows(conn: AConn, sql: str, params: Any = None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()
