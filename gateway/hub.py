"""The hub daemon: one scanner, a session per allowed device when it advertises, the outbox
and its publisher.

The gateway uses plain bleak; which radio it drives (BlueZ on a hub, the simulated
radio in the demo and the tests) is decided by the `BleakBackends` it is given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from device_drivers.bleak_backends import BleakBackends
from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.session import ReceivedMeasurement
from gateway.clock import hub_clock_synced, local_zone
from gateway.config import AllowedDevice, GatewayConfig
from gateway.outbox import Outbox
from gateway.publisher import OutboxPublisher
from gateway.readings import to_reading

log = logging.getLogger(__name__)

#: After a failed session a device waits this long, doubling per failure up to the max.
BACKOFF_START_S = 5.0
BACKOFF_MAX_S = 600.0
#: After a good session: a cuff keeps advertising a moment after it has sent everything.
COOLDOWN_S = 2.0


@dataclass
class DeviceState:
    """What the hub knows of one allowed device (reported in the hub status)."""

    last_seen: float | None = None
    rssi: int | None = None
    last_reading_at: float | None = None
    readings: int = 0
    failures: int = 0
    not_before: float = 0.0
    last_error: str | None = None


class HubGateway:
    def __init__(
        self,
        config: GatewayConfig,
        backends: BleakBackends | None = None,
        *,
        clock_synced: Callable[[], bool] = hub_clock_synced,
    ) -> None:
        self.config = config
        self.backends = backends or BleakBackends()
        self._clock_synced = clock_synced
        self._zone = local_zone(config.timezone)
        self._allowed: dict[str, AllowedDevice] = {d.address: d for d in config.devices}
        self.devices: dict[str, DeviceState] = {a: DeviceState() for a in self._allowed}
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(config.max_concurrent_sessions)
        self.outbox = Outbox(config.data_dir / "outbox.sqlite3")
        self.publisher = OutboxPublisher(
            self.outbox,
            hub_id=config.hub_id,
            mqtt_url=config.mqtt_url,
            keepalive_s=config.keepalive_s,
            status_interval_s=config.status_interval_s,
            ca_file=config.ca_file,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then end sessions and flush what the broker acknowledges."""
        self.publisher.start()
        scanner = BleakScanner(
            detection_callback=self._on_advertisement, backend=self.backends.scanner
        )
        try:
            async with scanner:
                await stop.wait()
        finally:
            for task in list(self._sessions.values()):
                task.cancel()
            await asyncio.gather(*self._sessions.values(), return_exceptions=True)
            await asyncio.to_thread(self.publisher.stop)
            self.outbox.close()

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        allowed = self._allowed.get(device.address.upper())
        if allowed is None:
            return  # never connect to, bond with or read a device not on the list
        state = self.devices[allowed.address]
        state.last_seen, state.rssi = time.time(), adv.rssi
        if allowed.address in self._sessions or time.monotonic() < state.not_before:
            return
        task = asyncio.get_running_loop().create_task(self._session(device, allowed, state))
        self._sessions[allowed.address] = task

    async def _session(self, device: BLEDevice, allowed: AllowedDevice, state: DeviceState) -> None:
        try:
            async with self._slots:
                report = await run_blood_pressure_session(
                    device,
                    backends=self.backends,
                    on_measurement=self._store,
                    connect_timeout=self.config.connect_timeout_s,
                    bond=allowed.bond,
                )
            if report.error:
                raise RuntimeError(report.error)
            state.failures, state.last_error = 0, None
            state.not_before = time.monotonic() + COOLDOWN_S
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a device session must never take the hub down
            state.failures += 1
            state.last_error = str(exc)
            backoff = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (state.failures - 1))
            state.not_before = time.monotonic() + backoff
            log.warning(
                "session with %s failed (%s); retry in %.0f s", device.address, exc, backoff
            )
        finally:
            self._sessions.pop(allowed.address, None)

    async def _store(self, received: ReceivedMeasurement) -> None:
        """Commit to the outbox before anything else happens to the reading."""
        reading = to_reading(received, zone=self._zone, synced=self._clock_synced())
        added = await asyncio.to_thread(self.outbox.add, reading)
        state = self.devices.get(received.identity.address)
        if state is not None:
            state.last_reading_at = time.time()
            state.readings += 1
        if added:
            self.publisher.kick()
