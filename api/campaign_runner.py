"""The rollout campaigns' engine, run by the API (`HEMHUB_CAMPAIGN_TICK_S`): every so
often a pass over the running campaigns (`ingest.campaigns.tick_all`; one replica at a
time: an advisory lock). It runs where `issue_config` runs (async, the API's pool);
a failed pass is logged and the next one tries again."""

from __future__ import annotations

import asyncio
import logging

from api.db import Pool
from ingest import campaigns

log = logging.getLogger(__name__)


async def run_campaigns(pool: Pool, every_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with pool.connection() as conn:
                await campaigns.tick_all(conn)
        except Exception:
            log.warning("campaign pass failed; next in %.0f s", every_s, exc_info=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            pass
