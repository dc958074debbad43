"""`hemhub gateway --config FILE [--simulate SCENARIO]`: the hub daemon as a service,
stopped by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from pydantic import ValidationError

from device_drivers.simulation.home import SimulatedHome, SimulationScenario
from device_drivers.simulation.radio import SimulatedRadio
from gateway import systemd
from gateway.config import GatewayConfig
from gateway.credentials import InsecureCredentialsError
from gateway.hub import HubGateway
from gateway.update.agent import EXIT_RESTART, SlotUpdateAgent

log = logging.getLogger(__name__)

#: Exit status of a configuration the gateway refuses (sysexits' EX_CONFIG).
EXIT_CONFIG = 78


async def serve(gateway: HubGateway, stop: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT (or `stop`), speaking systemd's notify protocol."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agent = gateway.updater.agent if gateway.updater else None
    if isinstance(agent, SlotUpdateAgent):  # an update asks for a restart: stop, then exit

        def restart() -> None:
            loop.call_soon_threadsafe(stop.set)

        agent.on_restart = restart
    config = gateway.config
    log.info("hub %s starting; %d allowed device(s)", config.hub_id, len(gateway.devices))
    run = asyncio.create_task(gateway.run(stop))
    watchdog = asyncio.create_task(systemd.watchdog(stop, gateway.healthy))
    started = asyncio.create_task(gateway.started.wait())
    await asyncio.wait({run, started}, return_when=asyncio.FIRST_COMPLETED)
    if gateway.started.is_set():
        systemd.notify("READY=1")
    await run
    systemd.notify("STOPPING=1")
    started.cancel()
    await watchdog


def update_agent(config: GatewayConfig) -> SlotUpdateAgent | None:
    """The update agent the configuration asks for (`update`), else None."""
    if config.update is None or config.slots_root is None:
        return None
    return SlotUpdateAgent(config.update, config.slots_root, config.data_dir)


async def serve_simulated(
    config: GatewayConfig, scenario: SimulationScenario, agent: SlotUpdateAgent | None = None
) -> None:
    """The real gateway against a simulated home on the simulated radio.

    Without devices in the configuration, the scenario's devices are the allow-list.
    """
    if not config.devices:
        config = config.model_copy(update={"devices": [d.allowed() for d in scenario.devices]})
    async with SimulatedRadio() as radio:
        home = SimulatedHome(radio, scenario, config.data_dir)
        await home.start()
        try:
            await serve(HubGateway(config, radio.bleak_backends(), update_agent=agent))
        finally:
            await home.stop()


def run_gateway(config_path: Path, simulate: Path | None = None) -> int:
    """Run the gateway; a configuration it refuses (invalid, a password in clear text
    over the network, a secret readable by others or missing, update settings without a
    trusted root) is one error line and EXIT_CONFIG, before anything starts. After an
    update asked for a restart (into the new slot, or back): EXIT_RESTART."""
    try:
        config = GatewayConfig.load(config_path)
        credentials = config.credentials()  # refuses a private key others can read
        credentials.password()  # likewise the password file
        agent = update_agent(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        log.error("refusing configuration %s: %s", config_path, problems)
        return EXIT_CONFIG
    except (InsecureCredentialsError, OSError, ValueError) as exc:
        log.error("refusing configuration %s: %s", config_path, exc)
        return EXIT_CONFIG
    if simulate is not None:
        asyncio.run(serve_simulated(config, SimulationScenario.load(simulate), agent))
    else:
        asyncio.run(serve(HubGateway(config, update_agent=agent)))
    if agent is not None and agent.restart_requested.is_set():
        log.info("hub %s restarts for its software update", config.hub_id)
        return EXIT_RESTART
    return 0
