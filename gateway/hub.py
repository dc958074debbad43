"""The hub daemon: one scanner, a session per allowed device when it advertises, the outbox
and its publisher, provisioning from the backend, and the hub's own status.

The gateway uses plain bleak; which radio it drives (BlueZ on a hub, the simulated
radio in the demo and the tests) is decided by the `BleakBackends` it is given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDeviceNotFoundError, BleakError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.dispenser import DISPENSER_SEQUENCE_SIZE
from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.dispenser import run_dispenser_session
from device_drivers.drivers.glucose import run_glucose_session
from device_drivers.drivers.pulse_oximeter import run_pulse_oximeter_session
from device_drivers.drivers.session import (
    DEVICE_CLOCK_ZONE,
    ReceivedMeasurement,
    SessionReport,
)
from device_drivers.drivers.weight_scale import run_weight_scale_session
from gateway import health
from gateway.clock import hub_clock_synced, local_zone
from gateway.config import GatewayConfig
from gateway.failpoints import failpoint
from gateway.outbox import Outbox
from gateway.provisioning import ConfigRejected, ProvisioningStore
from gateway.publisher import OutboxPublisher
from gateway.readings import to_reading
from hemhub.contract import AllowedDevice, DeviceHealth, DeviceProfile, HubAlarm, HubConfig

log = logging.getLogger(__name__)

#: After a failed session a device waits this long, doubling per failure up to the max.
BACKOFF_START_S = 5.0
BACKOFF_MAX_S = 600.0
#: After a good session: a cuff keeps advertising a moment after it has sent everything.
COOLDOWN_S = 2.0
#: Consecutive adapter-level failures (any device) that make the hub restart its scanner.
ADAPTER_FAILURE_LIMIT = 5
OUTBOX_NEAR_FULL = 0.8

SessionRunner = Callable[..., Awaitable[SessionReport]]

#: The driver the hub runs for each profile (all take the same keywords).
DRIVERS: dict[DeviceProfile, SessionRunner] = {
    DeviceProfile.BLOOD_PRESSURE: run_blood_pressure_session,
    DeviceProfile.WEIGHT_SCALE: run_weight_scale_session,
    DeviceProfile.PULSE_OXIMETER: run_pulse_oximeter_session,
    DeviceProfile.GLUCOSE: run_glucose_session,
    DeviceProfile.DISPENSER: run_dispenser_session,
}
#: Profiles whose devices keep numbered records the hub fetches from a sequence on, and
#: the largest record number each one's counter holds before it rolls over to 0.
RECORD_SEQUENCE_MAX: dict[DeviceProfile, int] = {
    DeviceProfile.GLUCOSE: 0xFFFF,
    DeviceProfile.DISPENSER: (1 << (8 * DISPENSER_SEQUENCE_SIZE)) - 1,
}
RECORD_PROFILES = frozenset(RECORD_SEQUENCE_MAX)
#: A bond that could not be deleted is tried again after this long, doubling up to the max.
UNBOND_RETRY_START_S = 5.0
UNBOND_RETRY_MAX_S = 600.0


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass
class DeviceState:
    """What the hub knows of one allowed device (reported in the hub status)."""

    allowed: AllowedDevice
    last_seen: float | None = None
    rssi: int | None = None
    last_reading_at: float | None = None
    readings: int = 0
    sessions_failed: int = 0
    consecutive_failures: int = 0
    not_before: float = 0.0
    last_error: str | None = None
    firmware: str | None = None
    battery_level: int | None = None

    def health(self) -> DeviceHealth:
        return DeviceHealth(
            address=self.allowed.address,
            profile=self.allowed.profile,
            last_seen_at=_when(self.last_seen),
            rssi=self.rssi,
            last_reading_at=_when(self.last_reading_at),
            readings=self.readings,
            firmware=self.firmware,
            battery_level=self.battery_level,
            sessions_failed=self.sessions_failed,
            consecutive_failures=self.consecutive_failures,
            last_error=self.last_error[:512] if self.last_error else None,
        )


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
        self.provisioning = ProvisioningStore(
            config.data_dir / "hub-config.json", config.hub_id, config.devices
        )
        self.devices: dict[str, DeviceState] = {
            d.address: DeviceState(d) for d in self.provisioning.devices
        }
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(config.max_concurrent_sessions)
        self._adapter_failures = 0
        self._adapter_state: str = "ok"
        self._disk_low = False
        self._restart_scanner = asyncio.Event()
        #: Set when there may be a bond to delete (a configuration removed a device).
        self._unbond_wake = asyncio.Event()
        #: Set once the scanner runs (the service then tells systemd it is ready).
        self.started = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outbox = Outbox(config.data_dir / "outbox.sqlite3")
        self.publisher = OutboxPublisher(
            self.outbox,
            hub_id=config.hub_id,
            mqtt_url=config.mqtt_url,
            keepalive_s=config.keepalive_s,
            reconnect_max_s=config.reconnect_max_s,
            status_interval_s=config.status_interval_s,
            max_readings_per_s=config.max_readings_per_s,
            receipt_timeout_s=config.receipt_timeout_s,
            receipt_timeout_max_s=config.receipt_timeout_max_s,
            credentials=config.credentials(),
            status_extra=self._status_extra,
            on_backend_message=self._on_backend_message,
        )

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then end sessions and flush what the broker acknowledges."""
        self._loop = asyncio.get_running_loop()
        self.publisher.start()
        unbonding = asyncio.create_task(self._unbond_pending(stop))
        try:
            await self._scan_until(stop)
        finally:
            unbonding.cancel()
            await asyncio.gather(unbonding, return_exceptions=True)
            for task in list(self._sessions.values()):
                task.cancel()
            await asyncio.gather(*self._sessions.values(), return_exceptions=True)
            await asyncio.to_thread(self.publisher.stop)
            self.outbox.close()

    async def _scan_until(self, stop: asyncio.Event) -> None:
        """One scanner for the adapter; restarted with backoff when the adapter stalls."""
        backoff = 1.0
        while not stop.is_set():
            self._restart_scanner.clear()
            try:
                async with BleakScanner(
                    detection_callback=self._on_advertisement, backend=self.backends.scanner
                ):
                    self._adapter_state = "ok"
                    self.started.set()
                    backoff = 1.0
                    stop_wait = asyncio.ensure_future(stop.wait())
                    restart_wait = asyncio.ensure_future(self._restart_scanner.wait())
                    try:
                        await asyncio.wait(
                            {stop_wait, restart_wait}, return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        stop_wait.cancel()
                        restart_wait.cancel()
            except (BleakError, OSError) as exc:
                self._adapter_state = "unresponsive"
                log.error("adapter failed (%s); scanner restarts in %.0f s", exc, backoff)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
                backoff = min(60.0, backoff * 2)
            if self._restart_scanner.is_set() and not stop.is_set():
                log.warning("restarting the scanner after repeated adapter failures")
                self._adapter_failures = 0

    def healthy(self) -> bool:
        """False when a part that runs outside the event loop is wedged (the publisher):
        the service then stops pinging the systemd watchdog, so systemd restarts it."""
        return self.publisher.healthy()

    def _outbox_full(self) -> bool:
        return self.outbox.size_bytes() >= self.config.max_outbox_bytes

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        state = self.devices.get(device.address.upper())
        if state is None:
            return  # never connect to, bond with or read a device not on the list
        state.last_seen, state.rssi = time.time(), adv.rssi
        if state.allowed.address in self._sessions or time.monotonic() < state.not_before:
            return
        driver = DRIVERS.get(state.allowed.profile)
        if driver is None:
            return
        if self._outbox_full():
            return  # the device keeps its records until the hub can store them
        task = asyncio.get_running_loop().create_task(self._session(device, state, driver))
        self._sessions[state.allowed.address] = task

    async def _session(self, device: BLEDevice, state: DeviceState, driver: SessionRunner) -> None:
        # This task's own context: the driver writes and measures the device clock in
        # the hub's zone, the zone `_store` reads device times in.
        DEVICE_CLOCK_ZONE.set(self._zone)
        try:
            options: dict[str, object] = {}
            if state.allowed.profile in RECORD_PROFILES:
                options["since_sequence"] = self.outbox.last_sequence(state.allowed.address)
            async with self._slots:
                report = await driver(
                    device,
                    backends=self.backends,
                    on_measurement=self._store,
                    connect_timeout=self.config.connect_timeout_s,
                    bond=state.allowed.bond,
                    **options,
                )
            if getattr(report, "sequence_reset", False):
                # Records committed this session raised nothing above the old log's
                # number: without this the hub would ask the new log from that number on
                # and skip its records below it once the new log outgrows them.
                last = getattr(report, "last_sequence", None)
                await asyncio.to_thread(self.outbox.restart_sequence, state.allowed.address, last)
                log.warning("device %s restarted its record log", state.allowed.address)
            state.firmware = report.identity.firmware or state.firmware
            state.battery_level = report.battery_level
            if report.error:
                raise BleakError(report.error)
            state.consecutive_failures, state.last_error = 0, None
            state.not_before = time.monotonic() + COOLDOWN_S
            self._adapter_failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a device session must never take the hub down
            state.sessions_failed += 1
            state.consecutive_failures += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            backoff = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (state.consecutive_failures - 1))
            state.not_before = time.monotonic() + backoff
            log.warning(
                "session with %s failed (%s); retry in %.0f s", device.address, exc, backoff
            )
            if _looks_like_adapter_fault(exc):
                self._adapter_failures += 1
                if self._adapter_failures >= ADAPTER_FAILURE_LIMIT:
                    self._adapter_state = "unresponsive"
                    self._restart_scanner.set()
        finally:
            self._sessions.pop(state.allowed.address, None)

    async def _store(self, received: ReceivedMeasurement) -> None:
        """Commit to the outbox before anything else happens to the reading."""
        reading = to_reading(received, zone=self._zone, synced=self._clock_synced())
        state = self.devices.get(received.identity.address)
        top = RECORD_SEQUENCE_MAX.get(state.allowed.profile) if state is not None else None
        added = await asyncio.to_thread(self.outbox.add, reading, sequence_max=top)
        failpoint("outbox.committed")
        if state is not None:
            state.last_reading_at = time.time()
            state.readings += 1
        if added:
            self.publisher.kick()

    # -- provisioning ----------------------------------------------------------------------

    def _on_backend_message(self, kind: str, payload: bytes) -> None:
        """Called on the MQTT network thread: hand configuration to the event loop."""
        if kind != "config" or not payload or self._loop is None:
            return
        try:
            config = self.provisioning.accept(payload)
        except ConfigRejected as exc:
            log.warning("hub %s ignores a configuration: %s", self.config.hub_id, exc)
            return
        self._loop.call_soon_threadsafe(
            lambda: self._loop.create_task(self.apply_config(config))  # type: ignore[union-attr]
        )

    async def apply_config(self, config: HubConfig) -> None:
        """Adopt a new allow-list: removed devices stop, and their bonds are deleted.

        The store recorded the removed devices as pending unbonds before it saved the
        configuration; `_unbond_pending` deletes the bonds and retries until it could."""
        wanted = {d.address: d for d in config.devices}
        removed = [a for a in self.devices if a not in wanted]
        for address in removed:
            task = self._sessions.pop(address, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            del self.devices[address]
            self.outbox.forget_device(address)
        if removed:
            self._unbond_wake.set()
        for address, allowed in wanted.items():
            state = self.devices.get(address)
            if state is None:
                self.devices[address] = DeviceState(allowed)
            else:
                state.allowed = allowed
        log.info(
            "hub %s applied configuration v%d: %d device(s), %d removed",
            self.config.hub_id,
            config.version,
            len(wanted),
            len(removed),
        )
        self.publisher.publish_status()

    async def _unbond_pending(self, stop: asyncio.Event) -> None:
        """Delete the bonds of removed devices: at start (a hub that died or failed to
        unbond before), after each configuration that removed some, and after a failure
        again with backoff, until every one is gone."""
        backoff = UNBOND_RETRY_START_S
        while not stop.is_set():
            self._unbond_wake.clear()
            failed = False
            for address in self.provisioning.pending_unbonds:
                if address in self.devices:
                    continue  # apply_config has not stopped it yet; it wakes us after
                self.outbox.forget_device(address)  # idempotent (a crash before it)
                if await self._unbond(address):
                    self.provisioning.unbonded(address)
                else:
                    failed = True
            wake = asyncio.ensure_future(self._unbond_wake.wait())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    {wake, stopped},
                    timeout=backoff if failed else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                wake.cancel()
                stopped.cancel()
            backoff = min(UNBOND_RETRY_MAX_S, backoff * 2) if failed else UNBOND_RETRY_START_S

    async def _unbond(self, address: str) -> bool:
        """Delete the bond with `address`; True when there is none any more."""
        try:
            await BleakClient(address, backend=self.backends.client).unpair()
        except BleakDeviceNotFoundError:
            pass  # the adapter does not know the device: no bond to delete
        except NotImplementedError as exc:
            log.error("cannot remove bonds on this platform (%s): %s stays bonded", exc, address)
        except (BleakError, OSError, TimeoutError) as exc:
            log.warning("could not remove the bond with %s (retried later): %s", address, exc)
            return False
        log.info("bond with %s removed (the device left this hub)", address)
        return True

    # -- status ------------------------------------------------------------------------------

    def disk_low(self, size: int, free: int) -> bool:
        """Less free space on the data directory's filesystem than a configured threshold."""
        config = self.config
        return free < config.min_disk_free_bytes or (
            size > 0 and free * 100 < config.min_disk_free_percent * size
        )

    def _status_extra(self) -> dict[str, object]:
        outbox_bytes = self.outbox.size_bytes()
        synced = self._clock_synced()
        disk_size, disk_free = health.disk_usage(self.config.data_dir)
        alarms: list[HubAlarm] = []
        if outbox_bytes >= self.config.max_outbox_bytes:
            alarms.append(HubAlarm.OUTBOX_FULL)
        elif outbox_bytes >= OUTBOX_NEAR_FULL * self.config.max_outbox_bytes:
            alarms.append(HubAlarm.OUTBOX_NEAR_FULL)
        disk_low = self.disk_low(disk_size, disk_free)
        if disk_low:
            alarms.append(HubAlarm.DISK_LOW)
        if disk_low != self._disk_low:
            self._disk_low = disk_low
            (log.warning if disk_low else log.info)(
                "disk space on %s %s: %d of %d bytes free",
                self.config.data_dir,
                "low" if disk_low else "recovered",
                disk_free,
                disk_size,
                extra={"alarm": HubAlarm.DISK_LOW.value, "active": disk_low},
            )
        if self._adapter_state != "ok":
            alarms.append(HubAlarm.ADAPTER_UNRESPONSIVE)
        if not synced:
            alarms.append(HubAlarm.CLOCK_NOT_SYNCED)
        return {
            "outbox_bytes": outbox_bytes,
            "config_version": self.provisioning.version,
            "clock_synced": synced,
            "adapter": self._adapter_state,
            "disk_free_bytes": disk_free,
            "memory_rss_bytes": health.memory_rss_bytes(),
            "cpu_temperature_c": health.cpu_temperature_c(),
            "alarms": alarms,
            "devices": [s.health() for s in self.devices.values()],
        }


def _looks_like_adapter_fault(exc: BaseException) -> bool:
    """BlueZ's signs of a stuck adapter (as opposed to one absent device)."""
    text = str(exc)
    return any(sign in text for sign in ("InProgress", "org.bluez.Error.NotReady", "No adapter"))
