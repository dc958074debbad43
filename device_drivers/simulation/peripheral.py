"""Shared base of simulated BLE peripherals on a `SimulatedRadio`.

A `SimulatedPeripheral` is a bumble `Device` with its own controller on the radio's link
and its own random static address. It serves what every health device of ours serves:
- Device Information 0x180A: manufacturer 2A29, model 2A24, serial 2A25, hardware 2A27,
  firmware 2A26, software 2A28 (optionally NUL-padded to fixed buffers, as many devices do);
- Current Time 0x1805 / 2A2B: read and notify, write (the fault switch
  `clock_writable=False` answers every write with ATT error 0x80, like devices whose clock
  cannot be set);
- Battery 0x180F / 2A19: read and notify.
The device clock is the host's naive local time plus `device_clock_offset`; a successful
Current Time write sets it. `power_off()` takes the device off the air (out of range or
battery out): connections drop, it stops advertising, and connects time out.
Subclasses add their services (`extra_services`) and session behaviour (`on_connected`,
`on_disconnected`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

from bumble import att, core, gatt, hci
from bumble.core import AdvertisingData
from bumble.device import Connection, Device

from device_drivers.codecs.current_time import (
    AdjustReason,
    current_time_from_datetime,
    decode_current_time,
    encode_current_time,
)
from device_drivers.codecs.errors import DecodeError
from device_drivers.simulation.radio import SimulatedRadio, parse_address

logger = logging.getLogger(__name__)

#: ATT application error the Current Time Service uses for "Data field ignored".
ATT_APP_ERROR_DATA_FIELD_IGNORED = 0x80
#: ATT "Value Not Allowed" (Core Spec Supplement), for an invalid Current Time value.
ATT_VALUE_NOT_ALLOWED = 0x13

_AD_FLAGS = 0x01
_AD_COMPLETE_16 = 0x03
_AD_SHORT_NAME = 0x08
_AD_COMPLETE_NAME = 0x09
_LE_GENERAL_DISCOVERABLE_NO_BR_EDR = 0x06
_MAX_LEGACY_AD = 31
_DIS_BUFFER = 20  # bytes of the fixed string buffers of NUL-padding devices


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
        battery_level: int = 90,
        clock_writable: bool = True,
        device_clock_offset: timedelta = timedelta(0),
        advertised_services: Sequence[int] = (),
        advertising_interval_ms: float = 20.0,
        nul_padded_strings: bool = True,
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
        self.battery_level = battery_level
        self.clock_writable = clock_writable
        self._clock_offset = device_clock_offset
        self.advertised_services = tuple(advertised_services)
        self.advertising_interval_ms = advertising_interval_ms
        self.nul_padded_strings = nul_padded_strings

        self._device: Device | None = None
        self._powered = False
        self._wants_advertising = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: list[Connection] = []
        #: Pairings completed with a central (new bonds).
        self.pairing_count = 0
        #: Links that became encrypted (by pairing or from a bond).
        self.encryption_count = 0
        #: Successful Current Time writes.
        self.clock_write_count = 0
        self._time_characteristic: gatt.Characteristic[bytes] | None = None
        self._battery_characteristic: gatt.Characteristic[bytes] | None = None

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

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._device is not None:
            return
        device = self.radio.create_device(self.name, self._address)
        self._device = device
        services = self._standard_services() + self.extra_services()
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
        if not self._powered:
            return
        self._powered = False
        device = self.device
        await device.stop_advertising()
        for connection in list(self.connections):
            await self._disconnect(
                connection,
                hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR,
            )
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
            await self._device.stop_advertising()

    async def _advertise_now(self) -> None:
        if not self._powered or self.connections:
            return
        await self.device.start_advertising(
            advertising_data=self.advertising_data(),
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )

    # --- connections ------------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        self.connections.append(connection)

        def on_disconnection(reason: int) -> None:
            if connection in self.connections:
                self.connections.remove(connection)
            self.on_disconnected(connection, reason)
            if self._wants_advertising and self._powered:
                self.spawn(self._advertise_now())

        def on_encryption_change(*_args: object) -> None:
            if connection.is_encrypted:
                self.encryption_count += 1

        def on_pairing(*_args: object) -> None:
            self.pairing_count += 1

        connection.on(Connection.EVENT_DISCONNECTION, on_disconnection)
        connection.on(Connection.EVENT_CONNECTION_ENCRYPTION_CHANGE, on_encryption_change)
        connection.on(Connection.EVENT_PAIRING, on_pairing)
        self.on_connected(connection)

    def on_connected(self, connection: Connection) -> None:
        """Hook: a central connected."""

    def on_disconnected(self, connection: Connection, reason: int) -> None:
        """Hook: a connection ended."""

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
        dis = gatt.Service(
            _uuid16(0x180A),
            [
                gatt.Characteristic(
                    _uuid16(uuid), read, gatt.Characteristic.READABLE, self._dis_value(text)
                )
                for uuid, text in strings
                if text is not None
            ],
        )
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
        written = current.time + timedelta(seconds=current.fractions256 / 256)
        self._clock_offset = written - datetime.now()
        self.clock_write_count += 1
        logger.debug("%s: clock set to %s", self.name, written)


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
    "SimulatedPeripheral",
]
