"""systemd's notify protocol: readiness and watchdog pings (no dependency needed: it is
one datagram to the socket named in $NOTIFY_SOCKET)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when not run under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        # Never block the event loop on a full notify queue: a lost ping is retried
        # at the next interval.
        sock.setblocking(False)
        try:
            sock.connect(address)
            sock.send(state.encode())
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd set for this process, or None without one."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


async def watchdog(stop: asyncio.Event, healthy: Callable[[], bool] | None = None) -> None:
    """Ping the watchdog from the event loop: a loop that hangs stops pinging, and
    systemd restarts the service. So does a wedged part outside the loop: while
    `healthy()` is False no ping is sent."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    withheld = False
    while not stop.is_set():
        if healthy is None or healthy():
            if withheld:
                log.warning("healthy again: watchdog pings resume")
                withheld = False
            notify("WATCHDOG=1")
        elif not withheld:
            log.error("a part of the gateway is wedged: watchdog pings withheld (systemd restarts)")
            withheld = True
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
