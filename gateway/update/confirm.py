"""The running gateway confirms its slot once it is healthy, or gives it up in time.

A slot on trial (gateway/update/slots.py) is confirmed when every check holds at once:
broker connected, outbox writable, scanner running, a status published (acknowledged by
the broker). When the slot's confirmation time runs out first, the slot state goes back
to the previous slot and the caller stops the gateway: systemd restarts the service,
which then runs the previous slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from gateway.update import slots

log = logging.getLogger(__name__)

Outcome = Literal["not_on_trial", "confirmed", "reverted", "stopped"]


async def confirm_when_healthy(
    slots_root: Path,
    checks: Callable[[], dict[str, bool]],
    stop: asyncio.Event,
    *,
    poll_s: float = 1.0,
) -> Outcome:
    state = await asyncio.to_thread(slots.load_state, slots_root)
    if not state.trying:
        return "not_on_trial"
    log.info("slot %s is on trial: confirming once healthy", state.active)
    while not stop.is_set():
        failing = [name for name, ok in checks().items() if not ok]
        if not failing:
            confirmed = await asyncio.to_thread(slots.confirm, slots_root)
            log.info("slot %s confirmed", confirmed.active)
            return "confirmed"
        reverted = await asyncio.to_thread(slots.check_deadline, slots_root)
        if reverted is not None:
            log.error(
                "slot not confirmed in time (failing: %s): back to slot %s",
                ", ".join(failing),
                reverted.active,
            )
            return "reverted"
        try:
            await asyncio.wait_for(stop.wait(), timeout=poll_s)
        except TimeoutError:
            pass
    return "stopped"
