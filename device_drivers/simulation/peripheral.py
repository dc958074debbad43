"""Shared base of simulated BLE peripherals on a `SimulatedRadio`.

A `SimulatedPeripheral` is a bumble `Device` with its own controller on the radio's link
and its own random static address. It serves what every health device of ours serves:
- Device Information 0x180A: manufacturer 2A29, model 2A24, serial 2A25, hardware 2A27,
  firmware 2A26, software 2A28 (optionally NUL-padded to fixed buffers, as many devices do;
  hardware and software only when given), System ID 2A23 when `system_id` is given;
- Current Time 0x1805 / 2A2B: read and notify, write (the fault switch
  `clock_writable=False` answers every write with ATT error 0x80, like devices whose clock
  cannot be set);
- Battery 0x180F / 2A19: read and notify.
The device clock is the host's naive local time plus `device_clock_offset`; a successful
Current Time write sets it. `power_off()` takes the device off the air (out of range or
battery out): connections drop, it stops advertising, and connects time out.
Subclasses add their services (`extra_services`) and session behaviour (`on_connected`,
`on_disconnected`).

Fault switches every simulated peripheral has:
- `clock_writable=False`: Current Time writes fail with ATT error 0x80;
- `clock_unset=True`: the clock starts at `UNSET_CLOCK_START` (2000-01-01, as after a
  battery change) until a Current Time write sets it (`clock_is_set`);
- `clock_write_ignored=True`: writes are acknowledged and ignored (a quirky model);
- `device_clock_offset`: the clock runs ahead or behind;
- `inject_error_readings(n)`: the next n readings are the profile's error reading (every
  value NaN / "unsuccessful"), each subclass encodes its own;
- `disconnect_mid_transfer=k`: a session drops the link after k stored records were
  confirmed while more are waiting (the rest stay for the next connection);
- `set_battery_level(level)`: readable and notified to subscribers (`battery_low` below
  `LOW_BATTERY_LEVEL`);
- `set_in_range(False)` / `power_off()`: off the air, connects time out.

With `mcuboot` (a `SimulatedMCUboot`), the device also serves MCUmgr's SMP service
(8D53DC1D-...) with a `SimulatedSMPServer` (`smp`, whose fault switches are
`corrupt_upload` and `drop_upload_at`; a low battery refuses uploads; `mcuboot.fails_to_boot`
makes the next new image crash at boot). An SMP reset reboots the device through the
bootloader (`reboot()`): links drop, the firmware revision 2A26 becomes the running image's
version, and the device advertises again.

`StoredRecordsPeripheral` adds what cuffs, scales and oximeters share: a backlog of
readings indicated on one characteristic to a central that subscribes, with
`bond_required`, `silent_until_bonded` and `replay_backlog`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bumble import att, core, gatt, hci, utils
from bumble.core import AdvertisingData
from bumble.device import Connection, Device

from device_drivers.codecs.current_time import (
    AdjustReason,
    current_time_from_datetime,
    decode_current_time,
    encode_current_time,
)
from device_drivers.codecs.errors import DecodeError
from device_drivers.simulation.mcuboot import BootOutcome, SimulatedMCUboot
from device_drivers.simulation.radio import SimulatedRadio, parse_address
from device_drivers.simulation.smp_server import SimulatedSMPServer, SMPFrameAssembler, SMPReply

logger = logging.getLogger(__name__)

#: ATT application error the Current Time Service uses for "Data field ignored".
ATT_APP_ERROR_DATA_FIELD_IGNORED = 0x80
#: ATT "Value Not Allowed" (Core Spec Supplement), for an invalid Current Time value.
ATT_VALUE_NOT_ALLOWED = 0x13
#: Where an unset device clock starts (the default date of many devices after a reset).
UNSET_CLOCK_START = datetime(2000, 1, 1)
#: Battery level (%) below which a device counts as low on battery.
LOW_BATTERY_LEVEL = 20

_AD_FLAGS = 0x01
_AD_COMPLETE_16 = 0x03
_AD_SHORT_NAME = 0x08
_AD_COMPLETE_NAME = 0x09
_LE_GENERAL_DISCOVERABLE_NO_BR_EDR = 0x06
_MAX_LEGACY_AD = 31
_DIS_BUFFER = 20  # bytes of the fixed string buffers of NUL-padding devices
#: MCUmgr's SMP GATT service and its write-without-response + notify characteristic.
SMP_SERVICE_UUID = core.UUID("8D53DC1D-1DB7-4CD3-868B-8A527460AA84")
SMP_CHARACTERISTIC_UUID = core.UUID("DA2E7828-FBCE-4E01-AE9E-261174997C48")


def _uuid16(value: int) -> core.UUID:
    return core.UUID.from_16_bits(value)


class SimulatedPeripheral:
    """A simulated peripheral; call `await start()` after the radio is started."""

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        name: str,
        manufacturer: str,
        model: str,
        serial: str,
        firmware: str,
        hardware: str | None = None,
        software: str | None = None,
        system_id: bytes | None = None,
        battery_level: int = 90,
        clock_writable: bool = True,
        device_clock_offset: timedelta = timedelta(0),
        clock_unset: bool = False,
        clock_write_ignored: bool = False,
        disconnect_mid_transfer: int | None = None,
        advertised_services: Sequence[int] = (),
        advertising_interval_ms: float = 20.0,
        nul_padded_strings: bool = True,
        mcuboot: SimulatedMCUboot | None = None,
    ) -> None:
        self.radio = radio
        self._address = parse_address(address)
        if not self._address.is_static:
            raise ValueError(f"{address!r} is not a random static address (first byte C0-FF)")
        self.name = name
        self.manufacturer = manufacturer
        self.model = model
        self.serial = serial
        self.firmware = firmware
        self.hardware = hardware
        self.software = software
        #: System ID 2A23 (8 bytes) served in Device Information; None: not offered.
        self.system_id = system_id
        self.battery_level = battery_level
        self.clock_writable = clock_writable
        self.clock_write_ignored = clock_write_ignored
        self._clock_offset = device_clock_offset
        #: False while the clock runs from its reset default (until a write sets it).
        self.clock_is_set = not clock_unset
        if clock_unset:
            self._clock_offset = UNSET_CLOCK_START - datetime.now()
        #: Drop the link after this many records confirmed in one session (None: never).
        self.disconnect_mid_transfer = disconnect_mid_transfer
        #: Links dropped by `disconnect_mid_transfer`.
        self.mid_transfer_disconnects = 0
        self._error_readings_pending = 0
        self.advertised_services = tuple(advertised_services)
        self.advertising_interval_ms = advertising_interval_ms
        self.nul_padded_strings = nul_padded_strings

        self._device: Device | None = None
        self._powered = False
        self._wants_advertising = False
        self._advertising_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: list[Connection] = []
        #: Pairings completed with a central (new bonds).
        self.pairing_count = 0
        #: Links that became encrypted (by pairing or from a bond).
        self.encryption_count = 0
        #: Successful Current Time writes.
        self.clock_write_count = 0
        #: Current Time writes acknowledged and ignored (`clock_write_ignored`).
        self.clock_writes_ignored = 0
        self._connection_tasks: dict[Connection, set[asyncio.Task[None]]] = {}
        #: Called when what the device keeps through a power cut changed (its clock here;
        #: a record log in `RacpPeripheral`): the simulated home saves it.
        self.on_memory_changed: Callable[[], None] | None = None
        self._time_characteristic: gatt.Characteristic[bytes] | None = None
        self._battery_characteristic: gatt.Characteristic[bytes] | None = None
        #: The bootloader and SMP server (None: the device has no MCUmgr service).
        self.mcuboot = mcuboot
        self.smp: SimulatedSMPServer | None = None
        if mcuboot is not None:
            self.firmware = mcuboot.running_version
            self.smp = SimulatedSMPServer(
                mcuboot,
                battery_level=lambda: self.battery_level,
                low_battery_level=LOW_BATTERY_LEVEL,
            )
        self._smp_characteristic: gatt.Characteristic[bytes] | None = None
        self._smp_assemblers: dict[Connection, SMPFrameAssembler] = {}
        self._smp_lock = asyncio.Lock()
        #: Reboots through the bootloader (SMP resets).
        self.reboot_count = 0

    # --- identity and clock -----------------------------------------------------------

    @property
    def address(self) -> str:
        return self._address.to_string(False)

    @property
    def device(self) -> Device:
        if self._device is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._device

    def device_now(self) -> datetime:
        """The device's own clock: naive local time plus its offset."""
        return datetime.now() + self._clock_offset

    @property
    def clock_offset(self) -> timedelta:
        """Device clock minus host local time."""
        return self._clock_offset

    def memory_changed(self) -> None:
        """Tell the simulated home that the device's memory changed (see `on_memory_changed`)."""
        if self.on_memory_changed is not None:
            self.on_memory_changed()

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._device is not None:
            return
        device = self.radio.create_device(self.name, self._address)
        self._device = device
        services = self._standard_services() + self.extra_services() + self._smp_services()
        _enforce_permissions(services)
        device.add_services(services)
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        await device.power_on()
        self._powered = True
        self.radio.register_peripheral(self)

    async def stop(self) -> None:
        if self._device is None:
            return
        await self.power_off()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.device.power_off()

    @property
    def powered(self) -> bool:
        return self._powered

    async def power_off(self) -> None:
        """Take the device off the air: drop links, stop advertising, leave the link."""
        await self._leave_air(
            hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR
        )

    async def set_in_range(self, in_range: bool) -> None:
        """Out of range (links drop, connects time out) or back in range.

        Stored readings, bonds and the clock are kept, as they are when a resident walks
        out of the hub's range with a device.
        """
        if in_range:
            await self.power_on()
        else:
            await self._leave_air(hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)

    async def _leave_air(self, reason: int) -> None:
        if not self._powered:
            return
        self._powered = False
        device = self.device
        await self._stop_advertising_now()
        for connection in list(self.connections):
            await self._disconnect(connection, reason)
        self.radio.set_in_range(device, False)

    async def power_on(self) -> None:
        """Back in range / battery in; resumes advertising if it was advertising."""
        if self._powered:
            return
        self.radio.set_in_range(self.device, True)
        self._powered = True
        if self._wants_advertising:
            await self._advertise_now()

    # --- advertising ------------------------------------------------------------------

    async def discover(self, within_s: float = 2.0) -> BLEDevice:
        """The `BLEDevice` a bleak scanner on this radio sees for this peripheral.

        For tests and demos: it scans with bleak (the radio's backend) until the device
        advertises; `BleakError` if it does not within `within_s` seconds.
        """
        device = await BleakScanner.find_device_by_address(
            self.address, timeout=within_s, **self.radio.bleak_backends().scanner_options()
        )
        if device is None:
            raise BleakError(f"{self.name} ({self.address}) not seen advertising")
        return device

    def advertising_data(self) -> bytes:
        uuids = b"".join(int(u).to_bytes(2, "little") for u in self.advertised_services)
        structures: list[tuple[int, bytes]] = [
            (_AD_FLAGS, bytes([_LE_GENERAL_DISCOVERABLE_NO_BR_EDR]))
        ]
        if uuids:
            structures.append((_AD_COMPLETE_16, uuids))
        used = sum(2 + len(data) for _, data in structures)
        name = self.name.encode("utf-8")
        room = _MAX_LEGACY_AD - used - 2
        if len(name) <= room:
            structures.append((_AD_COMPLETE_NAME, name))
        elif room > 0:
            structures.append((_AD_SHORT_NAME, name[:room]))
        return bytes(AdvertisingData(structures))

    @property
    def is_advertising(self) -> bool:
        return self._device is not None and bool(self._device.is_advertising)

    async def start_advertising(self) -> None:
        """Advertise (connectable) until a central connects; again after each disconnection."""
        self._wants_advertising = True
        await self._advertise_now()

    async def stop_advertising(self) -> None:
        self._wants_advertising = False
        if self._device is not None:
            await self._stop_advertising_now()

    async def _advertise_now(self) -> None:
        # bumble breaks (KeyError in its advertising sets) when a stop overlaps a start.
        async with self._advertising_lock:
            if not self._powered or self.connections:
                return
            await self.device.start_advertising(
                advertising_data=self.advertising_data(),
                advertising_interval_min=self.advertising_interval_ms,
                advertising_interval_max=self.advertising_interval_ms,
            )

    async def _stop_advertising_now(self) -> None:
        async with self._advertising_lock:
            await self.device.stop_advertising()

    # --- connections ------------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        self.connections.append(connection)

        def on_disconnection(reason: int) -> None:
            if connection in self.connections:
                self.connections.remove(connection)
            for task in self._connection_tasks.pop(connection, set()):
                task.cancel()
            self.on_disconnected(connection, reason)
            if self._wants_advertising and self._powered:
                self.spawn(self._advertise_now())

        def on_encryption_change(*_args: object) -> None:
            if connection.is_encrypted:
                self.encryption_count += 1
                self.on_encrypted(connection)

        def on_pairing(*_args: object) -> None:
            self.pairing_count += 1

        connection.on(Connection.EVENT_DISCONNECTION, on_disconnection)
        connection.on(Connection.EVENT_CONNECTION_ENCRYPTION_CHANGE, on_encryption_change)
        connection.on(Connection.EVENT_PAIRING, on_pairing)
        self.on_connected(connection)

    def on_connected(self, connection: Connection) -> None:
        """Hook: a central connected."""

    def on_disconnected(self, connection: Connection, reason: int) -> None:
        """Hook: a connection ended (its `spawn_for` tasks are already cancelled)."""

    def on_encrypted(self, connection: Connection) -> None:
        """Hook: a link became encrypted (paired, or re-encrypted from a bond)."""

    async def disconnect_all(self) -> None:
        for connection in list(self.connections):
            await self._disconnect(connection)

    async def _disconnect(
        self,
        connection: Connection,
        reason: int = hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR,
    ) -> None:
        try:
            await connection.disconnect(reason)
        except (core.BaseBumbleError, hci.HCI_Error) as exc:
            logger.debug("%s: disconnect: %s", self.name, exc)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a background task owned by this peripheral (cancelled by `stop()`)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def spawn_for(
        self, connection: Connection, coroutine: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """A background task that lives as long as the connection (cancelled when it drops)."""
        task = self.spawn(coroutine)
        tasks = self._connection_tasks.setdefault(connection, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    # --- fault switches ---------------------------------------------------------------

    def inject_error_readings(self, count: int = 1) -> None:
        """The next `count` readings are the device's error reading (all values NaN)."""
        if count < 0:
            raise ValueError("count must not be negative")
        self._error_readings_pending += count

    @property
    def error_readings_pending(self) -> int:
        return self._error_readings_pending

    def take_error_reading(self) -> bool:
        """For subclasses taking a reading: True if this one must be an error reading."""
        if self._error_readings_pending <= 0:
            return False
        self._error_readings_pending -= 1
        return True

    def interrupts_transfer(self, sent_in_session: int, remaining: int) -> bool:
        """For subclasses sending stored records: drop the link now (mid-transfer)?"""
        limit = self.disconnect_mid_transfer
        return limit is not None and remaining > 0 and sent_in_session >= limit

    @property
    def battery_low(self) -> bool:
        return self.battery_level < LOW_BATTERY_LEVEL

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: background task failed", self.name, exc_info=task.exception())

    # --- services ---------------------------------------------------------------------

    def extra_services(self) -> list[gatt.Service]:
        """Hook: the device's own services (added after the standard ones)."""
        return []

    def _dis_value(self, text: str) -> bytes:
        raw = text.encode("utf-8")
        if self.nul_padded_strings and len(raw) < _DIS_BUFFER:
            raw = raw.ljust(_DIS_BUFFER, b"\x00")
        return raw

    def _standard_services(self) -> list[gatt.Service]:
        read = gatt.Characteristic.Properties.READ
        strings = [
            (0x2A29, self.manufacturer),
            (0x2A24, self.model),
            (0x2A25, self.serial),
            (0x2A27, self.hardware),
            (0x2A26, self.firmware),
            (0x2A28, self.software),
        ]
        dis_characteristics: list[gatt.Characteristic[bytes]] = [
            gatt.Characteristic(
                _uuid16(uuid), read, gatt.Characteristic.READABLE, self._dis_value(text)
            )
            for uuid, text in strings
            if text is not None and uuid != 0x2A26
        ]
        # The firmware revision follows the running image (it changes with an update).
        dis_characteristics.insert(
            3 + (self.hardware is not None),
            gatt.Characteristic(
                _uuid16(0x2A26),
                read,
                gatt.Characteristic.READABLE,
                gatt.CharacteristicValue(read=lambda _c: self._dis_value(self.firmware)),
            ),
        )
        if self.system_id is not None:
            dis_characteristics.append(
                gatt.Characteristic(
                    _uuid16(0x2A23), read, gatt.Characteristic.READABLE, bytes(self.system_id)
                )
            )
        dis = gatt.Service(_uuid16(0x180A), dis_characteristics)
        time_characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            _uuid16(0x2A2B),
            read | gatt.Characteristic.Properties.NOTIFY | gatt.Characteristic.Properties.WRITE,
            gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(read=self._read_time, write=self._write_time),
        )
        self._time_characteristic = time_characteristic
        cts = gatt.Service(_uuid16(0x1805), [time_characteristic])
        battery_characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            _uuid16(0x2A19),
            read | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=lambda _c: bytes([self.battery_level & 0xFF])),
        )
        self._battery_characteristic = battery_characteristic
        battery = gatt.Service(_uuid16(0x180F), [battery_characteristic])
        return [dis, cts, battery]

    async def set_battery_level(self, level: int) -> None:
        """Change the battery level and notify subscribed centrals."""
        self.battery_level = max(0, min(100, level))
        if self._device is not None and self._battery_characteristic is not None:
            await self._device.notify_subscribers(self._battery_characteristic)

    # --- MCUmgr SMP ----------------------------------------------------------------------

    def _smp_services(self) -> list[gatt.Service]:
        if self.smp is None:
            return []
        characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            SMP_CHARACTERISTIC_UUID,
            gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE
            | gatt.Characteristic.Properties.WRITE
            | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(write=self._smp_write),
        )
        self._smp_characteristic = characteristic
        return [gatt.Service(SMP_SERVICE_UUID, [characteristic])]

    def _smp_write(self, connection: Connection, value: bytes) -> None:
        smp = self.smp
        assert smp is not None
        assembler = self._smp_assemblers.get(connection)
        if assembler is None:
            assembler = self._smp_assemblers[connection] = SMPFrameAssembler(smp.buffer_size)
            connection.on(
                Connection.EVENT_DISCONNECTION,
                lambda _reason: self._smp_assemblers.pop(connection, None),
            )
        for frame in assembler.feed(bytes(value)):
            self.spawn_for(connection, self._smp_answer(connection, frame))

    async def _smp_answer(self, connection: Connection, frame: bytes) -> None:
        smp, characteristic = self.smp, self._smp_characteristic
        assert smp is not None and characteristic is not None
        async with self._smp_lock:  # one request at a time, answers in order
            reply: SMPReply = smp.handle(frame)
            if reply.drop_link:
                await self._disconnect(connection)
                return
            size = max(connection.att_mtu - 3, 20)
            for answer in reply.frames:
                for start in range(0, len(answer), size):
                    await self.device.notify_subscriber(
                        connection, characteristic, answer[start : start + size]
                    )
            if reply.reset:
                self.spawn(self._reboot_after_answer())

    async def _reboot_after_answer(self) -> None:
        await asyncio.sleep(0.05)  # the answer to the reset request leaves first
        await self.reboot()

    async def reboot(self) -> BootOutcome:
        """Reset through the bootloader: off the air, boot (swap, revert or reject), back
        on the air advertising. Returns what the bootloader did."""
        mcuboot = self.mcuboot
        if mcuboot is None or self.smp is None:
            raise RuntimeError(f"{self.name} has no bootloader")
        await self._leave_air(hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR)
        outcome = mcuboot.reset()
        self.smp.reboot()
        self.firmware = mcuboot.running_version
        self.reboot_count += 1
        logger.info("%s rebooted (%s), running %s", self.name, outcome.value, self.firmware)
        await self.power_on()
        await self.start_advertising()
        return outcome

    def _read_time(self, _connection: Connection) -> bytes:
        now = self.device_now()
        return encode_current_time(current_time_from_datetime(now, AdjustReason()))

    def _write_time(self, _connection: Connection, value: bytes) -> None:
        if not self.clock_writable:
            raise att.ATT_Error(ATT_APP_ERROR_DATA_FIELD_IGNORED)
        try:
            current = decode_current_time(bytes(value))
        except DecodeError as exc:
            raise att.ATT_Error(ATT_VALUE_NOT_ALLOWED) from exc
        if current.time is None:
            raise att.ATT_Error(ATT_VALUE_NOT_ALLOWED)
        if self.clock_write_ignored:
            self.clock_writes_ignored += 1
            return
        written = current.time + timedelta(seconds=current.fractions256 / 256)
        self._clock_offset = written - datetime.now()
        self.clock_is_set = True
        self.clock_write_count += 1
        self.memory_changed()
        logger.debug("%s: clock set to %s", self.name, written)


@dataclass
class StoredMeasurement:
    """One reading in a device's memory."""

    raw: bytes
    record: dict[str, Any]
    delivered: bool = False


#: Encodes a reading taken at a device-clock time: (payload, values for the record).
ReadingEncoder = Callable[[datetime], tuple[bytes, dict[str, Any]]]


class StoredRecordsPeripheral(SimulatedPeripheral):
    """A device that keeps its readings and indicates them on one characteristic.

    Like a home cuff or scale: a reading is stored in `backlog` and makes the device
    advertise. When a central connects and enables indications on `MEASUREMENT`, the device
    indicates every stored, not yet delivered reading in order, each after the previous one
    was confirmed, then hangs up after `idle_disconnect_s` with nothing to send.

    Args (besides `SimulatedPeripheral`'s):
        bond_required: the measurement CCCD requires an encrypted link (ATT error 0x0F
            until the central pairs).
        silent_until_bonded: the CCCD write succeeds but nothing is indicated until the
            link is encrypted (no ATT error tells the central to pair).
        replay_backlog: every connection re-sends the whole backlog, byte for byte.
        on_produced: called with a JSON-serialisable record for every reading taken.
        idle_disconnect_s: the device ends a session after this long without anything
            to send.
    """

    #: The profile's service and its indicated measurement characteristic (16-bit UUIDs).
    SERVICE: ClassVar[int]
    MEASUREMENT: ClassVar[int]
    #: Device Information defaults of the simulated model (overridable per instance).
    MANUFACTURER: ClassVar[str] = "Hemhub Simulated Devices"
    MODEL: ClassVar[str]
    FIRMWARE: ClassVar[str] = "1.0.0"
    HARDWARE: ClassVar[str | None] = None
    #: The advertised name is "<NAME_PREFIX> <last 4 of serial>" unless `name` is given.
    NAME_PREFIX: ClassVar[str]
    #: The scenarios a subclass accepts (`check_scenario`).
    SCENARIOS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        serial: str,
        name: str | None = None,
        bond_required: bool = False,
        silent_until_bonded: bool = False,
        replay_backlog: bool = False,
        on_produced: Callable[[dict[str, Any]], None] | None = None,
        idle_disconnect_s: float = 0.3,
        **options: Any,
    ) -> None:
        options.setdefault("advertised_services", (self.SERVICE,))
        options.setdefault("manufacturer", self.MANUFACTURER)
        options.setdefault("model", self.MODEL)
        options.setdefault("firmware", self.FIRMWARE)
        options.setdefault("hardware", self.HARDWARE)
        super().__init__(
            radio,
            address=address,
            serial=serial,
            name=name or f"{self.NAME_PREFIX} {serial[-4:]}",
            **options,
        )
        self.bond_required = bond_required
        self.silent_until_bonded = silent_until_bonded
        self.replay_backlog = replay_backlog
        self.on_produced = on_produced
        self.idle_disconnect_s = idle_disconnect_s
        self.backlog: list[StoredMeasurement] = []
        self._wake = asyncio.Event()
        self._sessions: dict[Connection, asyncio.Task[None]] = {}
        self._measurement_characteristic: gatt.Characteristic[bytes] | None = None
        #: Indications confirmed by a central (a replayed reading counts again).
        self.indications_confirmed = 0

    @classmethod
    def check_scenario(cls, scenario: str) -> None:
        if scenario not in cls.SCENARIOS:
            known = ", ".join(cls.SCENARIOS)
            raise ValueError(f"unknown scenario {scenario!r}; one of {known}")

    @property
    def characteristic_name(self) -> str:
        """The measurement characteristic as the hub names it, e.g. "2A35"."""
        return f"{self.MEASUREMENT:04X}"

    # --- GATT -------------------------------------------------------------------------

    def service_characteristics(self) -> list[gatt.Characteristic[bytes]]:
        """Hook: the profile service's other characteristics (feature, continuous…)."""
        return []

    def protected_cccd(self, characteristic: gatt.Characteristic[bytes]) -> None:
        """Give a characteristic its own CCCD, encrypted when `bond_required`."""
        permissions = gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE
        if self.bond_required:
            permissions |= (
                gatt.Characteristic.READ_REQUIRES_ENCRYPTION
                | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION
            )
        # Our own CCCD (the server adds a plain one otherwise) to set its permissions.
        characteristic.descriptors = [
            gatt.Descriptor(
                gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                permissions,
                self.device.gatt_server.make_descriptor_value(characteristic),
            )
        ]

    def extra_services(self) -> list[gatt.Service]:
        measurement: gatt.Characteristic[bytes] = gatt.Characteristic(
            _uuid16(self.MEASUREMENT),
            gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.Permissions(0),  # indicate only: reads answer 0x02
            b"",
        )
        self.protected_cccd(measurement)
        measurement.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        self._measurement_characteristic = measurement
        return [gatt.Service(_uuid16(self.SERVICE), [measurement, *self.service_characteristics()])]

    # --- readings ---------------------------------------------------------------------

    def encode_error_reading(self, timestamp: datetime) -> bytes:
        """Hook: the profile's error reading (every value NaN) taken at `timestamp`."""
        raise NotImplementedError

    async def produce(
        self, encode: ReadingEncoder, *, at: datetime | None = None
    ) -> dict[str, Any]:
        """Take a reading at device time `at` (default: now on the device clock).

        An injected error reading replaces it (`inject_error_readings`). The reading is
        stored, reported to `on_produced` and makes the device advertise; returns the record.
        """
        timestamp = (at if at is not None else self.device_now()).replace(microsecond=0)
        error = self.take_error_reading()
        raw, values = (self.encode_error_reading(timestamp), {}) if error else encode(timestamp)
        record: dict[str, Any] = {
            "address": self.address,
            "serial": self.serial,
            "characteristic": self.characteristic_name,
            "raw_hex": raw.hex(),
            "error": error,
            **values,
            "device_time": timestamp.isoformat(),
            "produced_at": datetime.now(UTC).isoformat(),
        }
        await self._store(StoredMeasurement(raw=raw, record=record))
        if self.on_produced is not None:
            self.on_produced(dict(record))
        return record

    async def store_raw(self, raw: bytes) -> None:
        """Fault injection: store an arbitrary (e.g. malformed) payload as a reading.

        It is not reported to `on_produced`: it is not a measurement.
        """
        await self._store(StoredMeasurement(raw=bytes(raw), record={"raw_hex": bytes(raw).hex()}))

    async def _store(self, stored: StoredMeasurement) -> None:
        """Keep a reading; a session in progress sends it, otherwise the device advertises."""
        self.backlog.append(stored)
        self._wake.set()
        await self.start_advertising()  # no-op while connected or powered off

    @property
    def undelivered(self) -> list[StoredMeasurement]:
        return [m for m in self.backlog if not m.delivered]

    # --- sessions ---------------------------------------------------------------------

    def _on_subscription(self, bearer: object, _notify: bool, indicate: bool) -> None:
        connection = (
            bearer if isinstance(bearer, Connection) else getattr(bearer, "connection", None)
        )
        if not isinstance(connection, Connection) or not indicate:
            return
        if connection in self._sessions:
            return
        self._sessions[connection] = self.spawn_for(connection, self._session(connection))

    def on_encrypted(self, connection: Connection) -> None:
        self._wake.set()  # a `silent_until_bonded` device may now send

    def subscribed(self, connection: Connection, characteristic: gatt.Characteristic[Any]) -> int:
        """The CCCD value the central wrote for `characteristic` (1 notify, 2 indicate)."""
        cccd = self.device.gatt_server.subscribers.get(connection, {}).get(characteristic.handle)
        return int.from_bytes(cccd[:2], "little") if cccd is not None and len(cccd) == 2 else 0

    def may_send(self, connection: Connection) -> bool:
        """Whether the device sends on this link (`silent_until_bonded` wants encryption)."""
        return not self.silent_until_bonded or connection.is_encrypted

    async def _session(self, connection: Connection) -> None:
        """Indicate the backlog in order, then hang up after an idle time."""
        characteristic = self._measurement_characteristic
        assert characteristic is not None
        cursor = 0
        if not self.replay_backlog:
            cursor = next(
                (i for i, m in enumerate(self.backlog) if not m.delivered), len(self.backlog)
            )
        sent = 0
        try:
            while connection in self.connections:
                if cursor < len(self.backlog) and self.may_send(connection):
                    if not self.subscribed(connection, characteristic) & 0x02:
                        break  # the central unsubscribed: nothing would be sent
                    stored = self.backlog[cursor]
                    # Returns once the central confirmed the indication.
                    await utils.cancel_on_event(
                        connection,
                        Connection.EVENT_DISCONNECTION,
                        self.device.indicate_subscriber(connection, characteristic, stored.raw),
                    )
                    stored.delivered = True
                    self.indications_confirmed += 1
                    cursor += 1
                    sent += 1
                    if self.interrupts_transfer(sent, len(self.backlog) - cursor):
                        self.mid_transfer_disconnects += 1
                        logger.debug("%s: dropping the link mid-transfer", self.name)
                        await self._disconnect(connection)
                        return
                    continue
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_disconnect_s)
                except TimeoutError:
                    break
            if cursor >= len(self.backlog):
                self._wants_advertising = False  # all sent: the device goes back to sleep
            if connection in self.connections:
                await self._disconnect(connection)
        except asyncio.CancelledError:
            return  # the link dropped (or the device stopped) mid-session
        finally:
            if self._sessions.get(connection) is asyncio.current_task():
                del self._sessions[connection]


def _deny(error_code: int) -> Callable[..., Any]:
    def deny(*_args: object) -> Any:
        raise att.ATT_Error(error_code)

    return deny


def _enforce_permissions(services: Sequence[gatt.Service]) -> None:
    """Make READABLE / WRITEABLE binding.

    bumble's GATT server checks only the encryption/authentication permission bits ("TODO:
    check permissions"): a write to a read-only characteristic would overwrite it. Real
    devices answer ATT errors 0x02 (read not permitted) and 0x03 (write not permitted).
    """
    attributes: list[att.Attribute[Any]] = []
    for service in services:
        for characteristic in service.characteristics:
            attributes.append(characteristic)
            attributes.extend(characteristic.descriptors)
    for attribute in attributes:
        readable = bool(attribute.permissions & att.Attribute.READABLE)
        writeable = bool(attribute.permissions & att.Attribute.WRITEABLE)
        if readable and writeable:
            continue
        value = attribute.value
        if isinstance(value, att.AttributeValue):
            read, write = value._read, value._write
        elif isinstance(value, att.AttributeValueV2):
            continue  # bearer-aware values (the server's CCCDs) decide themselves
        else:
            constant = value if value is not None else b""

            def read(_connection: object, constant: Any = constant) -> Any:
                return constant

            write = None
        attribute.value = att.AttributeValue(
            read=read if readable and read is not None else _deny(att.ErrorCode.READ_NOT_PERMITTED),
            write=write
            if writeable and write is not None
            else _deny(att.ErrorCode.WRITE_NOT_PERMITTED),
        )


__all__ = [
    "ATT_APP_ERROR_DATA_FIELD_IGNORED",
    "ATT_VALUE_NOT_ALLOWED",
    "LOW_BATTERY_LEVEL",
    "UNSET_CLOCK_START",
    "ReadingEncoder",
    "SimulatedPeripheral",
    "StoredMeasurement",
    "StoredRecordsPeripheral",
]
