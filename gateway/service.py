"""`hemhub gateway --config FILE`: the hub daemon as a service, stopped by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.hub import HubGateway

log = logging.getLogger(__name__)


async def serve(gateway: HubGateway) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "hub %s running; allowed devices: %d", gateway.config.hub_id, len(gateway.config.devices)
    )
    await gateway.run(stop)


def run_gateway(config_path: Path) -> int:
    config = GatewayConfig.load(config_path)
    asyncio.run(serve(HubGateway(config)))
    return 0
