"""The hub daemon: one scanner, a session per allowed device when it advertises, the outbox
and its publisher, provisioning from the backend, and the hub's own status.

The gateway uses plain bleak; which radio it drives (BlueZ on a hub, the simulated
radio in the demo and the tests) is decided by the `BleakBackends` it is given.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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
from device_drivers.drivers.wipe import WipeOptions, cannot_wipe, needs_device, wipe_device
from gateway import health
from gateway.clock import hub_clock_synced, local_zone
from gateway.commands import CommandBook, Ignore, Repeat, Run
from gateway.config import GatewayConfig
from gateway.failpoints import failpoint
from gateway.outbox import Outbox
from gateway.provisioning import ConfigRejected, ProvisioningStore
from gateway.publisher import OutboxPublisher
from gateway.readings import to_reading
from gateway.update.confirm import confirm_when_healthy
from gateway.update.device_firmware import FirmwareOutcome
from gateway.update.device_reconcile import (
    DeviceFirmwareReconciler,
    FirmwareImages,
    TufFirmwareImages,
    UpdateTimings,
)
from gateway.update.device_safety import DeviceSituation
from gateway.update.reconcile import Reconciler, UpdateAgent
from hemhub import __version__
from hemhub.contract import (
    AllowedDevice,
    CommandKind,
    CommandOutcome,
    CommandResult,
    DeviceHealth,
    DeviceProfile,
    HubAlarm,
    HubCommand,
    HubConfig,
    UpdateProgress,
)

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
#: How long the hub waits for the broker's PUBACK of a command's result at once (it
#: publishes it again on every connect until one comes).
RESULT_PUBACK_WAIT_S = 10.0
#: How often the update reconciler looks at the desired software (also woken by a
#: configuration and by each connection to the broker).
UPDATE_CHECK_S = 30.0


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

    def health(self, firmware_update: UpdateProgress | None = None) -> DeviceHealth:
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
            firmware_update=firmware_update,
        )


class HubGateway:
    def __init__(
        self,
        config: GatewayConfig,
        backends: BleakBackends | None = None,
        *,
        clock_synced: Callable[[], bool] = hub_clock_synced,
        update_agent: UpdateAgent | None = None,
        firmware_images: FirmwareImages | None = None,
        firmware_timings: UpdateTimings | None = None,
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
        #: Commands of the backend, each carried out once (gateway/commands.py).
        self.commands = CommandBook(config.data_dir / "commands.json", config.hub_id)
        #: Devices being wiped or forgotten: no session starts with them meanwhile.
        self._busy: set[str] = set()
        #: A command waiting for a device to advertise: the first sighting.
        self._sightings: dict[str, asyncio.Future[BLEDevice]] = {}
        self._command_tasks: set[asyncio.Task[object]] = set()
        self._stop: asyncio.Event | None = None
        #: Set once a wipe_hub command erased the hub (it then stops).
        self.wiped = False
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
            # The running slot's version (a hub without an update agent: this package's).
            software_version=(
                update_agent.running_version() if update_agent is not None else __version__
            ),
            status_extra=self._status_extra,
            on_backend_message=self._on_backend_message,
            on_connected=self._on_connected,
        )
        #: Drives the hub software towards the configuration's `software` (a rollout);
        #: None: the hub has no update agent (gateway/update), and ignores it.
        self.updater = (
            Reconciler(
                update_agent,
                config.data_dir / "update-state.json",
                on_progress=lambda _: self.publisher.publish_status(),
            )
            if update_agent is not None
            else None
        )
        self._update_wake = asyncio.Event()
        #: Drives the devices' firmware towards the configuration's `firmware`; None:
        #: the hub has no update repository, and updates no device.
        self.firmware = self._firmware_reconciler(firmware_images, firmware_timings)

    def _firmware_reconciler(
        self, images: FirmwareImages | None, timings: UpdateTimings | None
    ) -> DeviceFirmwareReconciler | None:
        config = self.config
        if images is None and config.update is not None:
            images = TufFirmwareImages(config.update, config.data_dir / "device-firmware")
        if images is None:
            return None
        firmware = DeviceFirmwareReconciler(
            images,
            config.data_dir / "device-firmware.json",
            backends=self.backends,
            zone=self._zone,
            slots=self._slots,
            on_progress=self.publisher.publish_status,
            on_finished=self._firmware_finished,
            timings=timings or UpdateTimings(connect_timeout=config.connect_timeout_s),
        )
        current = self.provisioning.current
        firmware.set_desired(current.firmware if current else None)
        for address, state in self.devices.items():
            state.firmware = firmware.confirmed_version(address)
        return firmware

    def _firmware_finished(self, address: str, outcome: FirmwareOutcome) -> None:
        state = self.devices.get(address)
        if state is not None:
            # The hub just talked to it; what it runs now (Device Information).
            state.last_seen = time.time()
            state.firmware = outcome.version_after or outcome.running_version or state.firmware

    def _claimed_for_firmware(self, device: BLEDevice, state: DeviceState) -> bool:
        """Whether the device's firmware update takes this advertisement (safe now)."""
        firmware = self.firmware
        if firmware is None or firmware.pending(state.allowed.address) is None:
            return False

        def situation(s: DeviceState) -> DeviceSituation:
            return DeviceSituation(
                address=s.allowed.address,
                kind=s.allowed.profile.value,
                # One hub serves one home: its devices are the resident's.
                resident=self.config.hub_id,
                battery_level=s.battery_level,
                measuring=s.allowed.address in self._sessions,
                update_pending=firmware.in_flight(s.allowed.address),
            )

        household = [situation(s) for s in self.devices.values()]
        # Every device on the list was prescribed: the resident depends on each kind.
        kinds = {s.allowed.profile.value for s in self.devices.values()}
        return firmware.claim(device, situation(state), household, kinds, bond=state.allowed.bond)

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then end sessions and flush what the broker acknowledges."""
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        self.publisher.start()
        unbonding = asyncio.create_task(self._unbond_pending(stop))
        confirming = asyncio.create_task(self._confirm_slot(stop))
        updating = asyncio.create_task(self._reconcile_updates(stop))
        for command in self.commands.unfinished():  # the hub stopped while running them
            self._start_command(command)
        try:
            await self._scan_until(stop)
        finally:
            unbonding.cancel()
            confirming.cancel()
            updating.cancel()
            await asyncio.gather(unbonding, confirming, updating, return_exceptions=True)
            if self.firmware is not None:
                await self.firmware.stop()
            for command_task in list(self._command_tasks):
                command_task.cancel()
            await asyncio.gather(*self._command_tasks, return_exceptions=True)
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

    def slot_checks(self) -> dict[str, bool]:
        """What a new software slot must show before it confirms itself."""
        return {
            "broker_connected": self.publisher.connected,
            "outbox_writable": self.outbox.writable(),
            "scanner_running": self.started.is_set() and self._adapter_state == "ok",
            "status_published": self.publisher.status_acknowledged(),
        }

    async def _confirm_slot(self, stop: asyncio.Event) -> None:
        """Confirm the slot on trial once healthy; when its time runs out, the slot state
        is reverted and the gateway stops (systemd restarts it in the previous slot)."""
        if self.config.slots_root is None:
            return
        outcome = await confirm_when_healthy(self.config.slots_root, self.slot_checks, stop)
        if outcome == "reverted":
            stop.set()
        elif outcome == "confirmed":
            self._update_wake.set()  # the reconciler records (and reports) it now

    async def _reconcile_updates(self, stop: asyncio.Event) -> None:
        """The update reconciler's passes: on a configuration, on each connection and
        every UPDATE_CHECK_S. Ready (a trial slot may confirm): `slot_checks` all hold."""
        if self.updater is None:
            return
        while not stop.is_set():
            self._update_wake.clear()
            current = self.provisioning.current
            # The same checks as the slot's own confirmation (one rule).
            ready = all(self.slot_checks().values())
            try:
                await self.updater.reconcile(current.software if current else None, ready=ready)
            except Exception:
                log.exception("hub %s: update pass failed", self.config.hub_id)
            # A new slot waiting only for the checks (its status acknowledged) looks again soon.
            soon = not ready and self.updater.awaiting_confirmation
            try:
                await asyncio.wait_for(
                    self._update_wake.wait(), timeout=1.0 if soon else UPDATE_CHECK_S
                )
            except TimeoutError:
                pass

    def session_running(self, address: str) -> bool:
        """A reading session with the device is under way."""
        return address.upper() in self._sessions

    def healthy(self) -> bool:
        """False when a part that runs outside the event loop is wedged (the publisher):
        the service then stops pinging the systemd watchdog, so systemd restarts it."""
        return self.publisher.healthy()

    def _outbox_full(self) -> bool:
        return self.outbox.size_bytes() >= self.config.max_outbox_bytes

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        address = device.address.upper()
        waiter = self._sightings.get(address)
        if waiter is not None and not waiter.done():
            waiter.set_result(device)  # a command waits for it (a wipe)
        if self.wiped or address in self._busy:
            return
        if self.firmware is not None and self.firmware.busy(address):
            return  # its firmware is being updated: no reading session meanwhile
        state = self.devices.get(address)
        if state is None:
            return  # never connect to, bond with or read a device not on the list
        state.last_seen, state.rssi = time.time(), adv.rssi
        if state.allowed.address in self._sessions:
            return
        if self._claimed_for_firmware(device, state):
            return
        if time.monotonic() < state.not_before:
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
        """Called on the MQTT network thread: hand configuration and commands to the
        event loop. A command is recorded durably before this returns (paho then
        acknowledges it), so one the hub accepted is carried out even after a crash."""
        if kind == "commands" and payload and self._loop is not None:
            self._on_command(payload)
            return
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
        if self.firmware is not None:
            self.firmware.set_desired(config.firmware)
        self._update_wake.set()
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

    # -- commands (docs/gateway.md, "Commands") -------------------------------------------

    def _on_command(self, payload: bytes) -> None:
        decision = self.commands.receive(payload)
        loop = self._loop
        assert loop is not None
        if isinstance(decision, Ignore):
            log.warning("hub %s ignores a command: %s", self.config.hub_id, decision.reason)
        elif isinstance(decision, Repeat):
            result = decision.result
            loop.call_soon_threadsafe(lambda: self._spawn(self._report(result)))
        elif isinstance(decision, Run):
            command = decision.command
            loop.call_soon_threadsafe(lambda: self._start_command(command))

    def _on_connected(self) -> None:
        """Called on the MQTT network thread after each connect: results not yet
        acknowledged by the broker go out again."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: self._spawn(self._report_unreported()))
            loop.call_soon_threadsafe(self._update_wake.set)  # a trial slot may confirm

    def _spawn(self, coroutine: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coroutine)
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    def _start_command(self, command: HubCommand) -> None:
        self._spawn(self.carry_out(command))

    async def carry_out(self, command: HubCommand) -> CommandResult:
        """Run a command once to its result, record it, and report it to the backend."""
        log.info("hub %s runs command %s: %s", self.config.hub_id, command.command_id, command.kind)
        try:
            if command.kind == CommandKind.WIPE_HUB:
                return await self._wipe_hub(command)
            result = await self._wipe_or_forget(command)
        except asyncio.CancelledError:
            raise  # stopping: the command stays unfinished and runs after the restart
        except Exception as exc:  # a command must never take the hub down
            log.exception("command %s failed", command.command_id)
            result = self.commands.finish(
                command, CommandOutcome.FAILED, f"{type(exc).__name__}: {exc}"
            )
        await self._report(result)
        return result

    async def _report(self, result: CommandResult) -> bool:
        """Publish a result and wait briefly for the PUBACK; True once acknowledged."""
        info = self.publisher.publish_result(result)
        try:
            await asyncio.to_thread(info.wait_for_publish, RESULT_PUBACK_WAIT_S)
        except (RuntimeError, ValueError):  # not queued: disconnected (sent on reconnect)
            return False
        if not info.is_published():
            return False
        self.commands.reported(result.command_id)
        return True

    async def _report_unreported(self) -> None:
        for result in self.commands.unreported():
            await self._report(result)

    async def _sighting(self, address: str, wait_s: float) -> BLEDevice | None:
        """The device's next advertisement, or None after `wait_s` seconds without one."""
        future = self._sightings.get(address)
        if future is None or future.done():
            future = self._sightings[address] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_s)
        except TimeoutError:
            return None
        finally:
            if self._sightings.get(address) is future:
                del self._sightings[address]

    async def _wipe_or_forget(self, command: HubCommand) -> CommandResult:
        address = command.address
        assert address is not None
        self._busy.add(address)
        try:
            task = self._sessions.pop(address, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            records_before: int | None = None
            if command.kind == CommandKind.FORGET_DEVICE:
                outcome, reason = CommandOutcome.WIPED, None
            else:
                profile = command.profile
                assert profile is not None
                if not needs_device(profile):
                    report = cannot_wipe(profile)
                else:
                    wait_s = self.config.device_wipe_wait_s
                    device = await self._sighting(address, wait_s)
                    if device is None:
                        return self.commands.finish(
                            command,
                            CommandOutcome.FAILED,
                            f"the device did not advertise within {wait_s:.0f} s: bring it"
                            " near the hub, wake it, and ask again",
                            bond_removed=False,
                        )
                    options = WipeOptions(connect_timeout=self.config.connect_timeout_s)
                    async with self._slots:
                        report = await wipe_device(
                            device, profile, backends=self.backends, options=options
                        )
                outcome, reason = CommandOutcome(report.outcome), report.reason
                records_before = report.records_before
            self.outbox.forget_device(address)  # its record numbers: a wiped log restarts
            bond_removed = await self._unbond(address)
            if not bond_removed:
                done = f"{outcome.value}: {reason}" if reason else outcome.value
                outcome = CommandOutcome.FAILED
                reason = f"the bond could not be removed ({done}); ask again"
            return self.commands.finish(
                command, outcome, reason, records_before=records_before, bond_removed=bond_removed
            )
        finally:
            self._busy.discard(address)

    async def _wipe_hub(self, command: HubCommand) -> CommandResult:
        """Erase the hub: deliver what the outbox holds (for `hub_wipe_drain_s`), stop
        every session, remove every bond it knows of, erase the outbox and the cached
        configuration, report, and only then erase the command memory and credentials
        and stop. A hub whose report is not acknowledged in time erases all the same
        (the backend revokes its broker credentials anyway)."""
        self.wiped = True  # no new session from here on
        for task in list(self._sessions.values()):
            task.cancel()
        await asyncio.gather(*self._sessions.values(), return_exceptions=True)
        drain_s = self.config.hub_wipe_drain_s
        for _attempt in range(int(drain_s * 5)):
            if not self.outbox.depth():
                break
            self.publisher.kick()
            await asyncio.sleep(0.2)
        secrets = [
            Path(p)
            for p in (self.config.mqtt_password_file, self.config.key_file, self.config.cert_file)
            if p is not None
        ]
        stuck = await asyncio.to_thread(_not_erasable, secrets)
        addresses = sorted(set(self.devices) | set(self.provisioning.pending_unbonds))
        kept = [a for a in addresses if not await self._unbond(a)]
        discarded = await asyncio.to_thread(self.outbox.erase)
        self.provisioning.erase()
        self.devices.clear()
        reason = (
            f"outbox erased ({discarded} undelivered reading(s) discarded),"
            f" {len(addresses) - len(kept)} bond(s) removed, cached configuration erased;"
            " command memory and credentials erased after this report"
        )
        if kept:
            reason = f"bonds with {', '.join(kept)} could not be removed; " + reason
        if stuck:
            reason = f"credentials {', '.join(stuck)} cannot be erased (read-only); " + reason
        outcome = CommandOutcome.FAILED if kept or stuck else CommandOutcome.WIPED
        result = self.commands.finish(command, outcome, reason, bond_removed=not kept)
        for _attempt in range(max(1, int(drain_s))):
            if await self._report(result):
                break
            await asyncio.sleep(1.0)
        self.commands.erase()
        await asyncio.to_thread(_erase_files, secrets)
        log.warning("hub %s wiped: %s", self.config.hub_id, reason)
        if self._stop is not None:
            self._stop.set()
        return result

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
            "devices": [
                s.health(self.firmware.progress(a) if self.firmware else None)
                for a, s in self.devices.items()
            ],
            "software_update": self.updater.progress if self.updater else None,
        }


def _not_erasable(paths: list[Path]) -> list[str]:
    """Files this process could not delete (their directory is read-only to it)."""
    return [str(p) for p in paths if p.exists() and not os.access(p.parent, os.W_OK)]


def _erase_files(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("hub wipe could not erase %s: %s", path, exc)


def _looks_like_adapter_fault(exc: BaseException) -> bool:
    """BlueZ's signs of a stuck adapter (as opposed to one absent device)."""
    text = str(exc)
    return any(sign in text for sign in ("InProgress", "org.bluez.Error.NotReady", "No adapter"))
