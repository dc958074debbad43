"""Building blocks of a device session over plain bleak, shared by the device drivers.

Rules from the field (see docs/notes on BLE): a fresh `BleakClient` per attempt (never
shared), connect timeouts of at least 10 s on real radios, retries with exponential
backoff, pairing only when the device asks for it (insufficient authentication or
encryption) or when the caller wants a bond, Device Information strings without NUL
padding, and the device clock written on every connection where the device allows it,
otherwise measured against the hub clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError, BleakGATTProtocolError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.current_time import (
    current_time_from_datetime,
    decode_current_time,
    encode_current_time,
)
from device_drivers.codecs.device_information import DIS_CHARACTERISTICS, decode_dis_string
from device_drivers.codecs.errors import DecodeError
from device_drivers.measurement import ClinicalMeasurement
from hemhub.contract import DeviceIdentity, MeasurementType

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DEVICE_INFORMATION_SERVICE = "0000180a-0000-1000-8000-00805f9b34fb"
CURRENT_TIME = "00002a2b-0000-1000-8000-00805f9b34fb"

#: ATT errors that mean "pair (or encrypt) first".
ATT_INSUFFICIENT_AUTHENTICATION = 0x05
ATT_INSUFFICIENT_ENCRYPTION_KEY_SIZE = 0x0C
ATT_INSUFFICIENT_ENCRYPTION = 0x0F
SECURITY_ERRORS = frozenset(
    {
        ATT_INSUFFICIENT_AUTHENTICATION,
        ATT_INSUFFICIENT_ENCRYPTION_KEY_SIZE,
        ATT_INSUFFICIENT_ENCRYPTION,
    }
)
_SECURITY_TEXT = ("insufficient authentication", "insufficient encryption")

_MAX_IDENTITY_TEXT = 128  # DeviceIdentity's ShortText


def utc_now() -> datetime:
    return datetime.now(UTC)


class DeviceUnreachableError(BleakError):
    """Every connection attempt failed (device off, out of range, or not advertising)."""

    def __init__(self, address: str, attempts: int, last: BaseException | None) -> None:
        reason = f"{type(last).__name__}: {last}" if last is not None else "no attempt made"
        super().__init__(
            f"could not connect to {address} after {attempts} attempt(s); last: {reason}"
        )
        self.address = address
        self.attempts = attempts
        self.last = last


@dataclass(frozen=True)
class ReceivedMeasurement:
    """One measurement as the hub received it from a device, decoded, with its context."""

    characteristic: str  # e.g. "2A35"
    measurement_type: MeasurementType
    raw: bytes
    measurement: ClinicalMeasurement
    #: Hub clock (aware UTC) when the value arrived.
    received_at: datetime
    identity: DeviceIdentity
    #: The hub wrote Current Time on this connection.
    clock_written: bool
    #: hub_now - device_now (s), from the Current Time read at connect; None if unknown.
    device_clock_offset_s: float | None


@dataclass
class SessionReport:
    """What one session with a device achieved."""

    identity: DeviceIdentity
    clock_written: bool = False
    #: hub_now - device_now in seconds, from Current Time read before any write; None if unknown.
    device_clock_offset_s: float | None = None
    received: int = 0
    #: Payloads that could not be decoded: "<raw hex>: <reason>".
    rejected: list[str] = field(default_factory=list)
    #: Why the session ended early (after a successful connect), None if it ran to its end.
    error: str | None = None
    paired: bool = False


def is_security_error(exc: BaseException) -> bool:
    """True if a GATT operation failed because the link is not paired/encrypted."""
    if isinstance(exc, BleakGATTProtocolError):
        return int(exc.code) in SECURITY_ERRORS
    if isinstance(exc, BleakError):
        text = str(exc).lower()
        return any(marker in text for marker in _SECURITY_TEXT)
    return False


async def connect_with_retry(
    device: BLEDevice,
    *,
    backends: BleakBackends,
    connect_timeout: float,
    attempts: int,
    backoff_s: float,
    pair: bool = False,
    disconnected_callback: Callable[[BleakClient], None] | None = None,
) -> BleakClient:
    """Connect with a fresh `BleakClient` per attempt; backoff doubles after each failure.

    Raises `DeviceUnreachableError` (a `BleakError`) when every attempt failed.
    """
    last: BaseException | None = None
    for attempt in range(1, max(1, attempts) + 1):
        client = BleakClient(
            device,
            disconnected_callback=disconnected_callback,
            timeout=connect_timeout,
            pair=pair,
            backend=backends.client,
        )
        try:
            await client.connect()
            return client
        except (BleakError, TimeoutError, OSError) as exc:
            last = exc
            logger.info(
                "connect %s: attempt %d/%d failed: %s", device.address, attempt, attempts, exc
            )
            try:
                await client.disconnect()
            except (BleakError, TimeoutError, OSError):
                pass
        if attempt < attempts:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    raise DeviceUnreachableError(device.address, max(1, attempts), last)


class SecuredLink:
    """Runs GATT operations; on an insufficient-security error, pairs once and retries."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.paired = False

    async def run(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await operation()
        except BleakError as exc:
            if self.paired or not is_security_error(exc):
                raise
            logger.info("%s asks for security (%s): pairing", self.client.address, exc)
            await self.client.pair()
            self.paired = True
            return await operation()


def _find(
    client: BleakClient, uuid: str, service: str | None = None
) -> BleakGATTCharacteristic | None:
    if service is not None:
        svc = client.services.get_service(service)
        return svc.get_characteristic(uuid) if svc is not None else None
    try:
        return client.services.get_characteristic(uuid)
    except BleakError:  # several with that UUID
        return None


async def read_identity(client: BleakClient, link: SecuredLink) -> DeviceIdentity:
    """The device's address plus its Device Information strings (NULs stripped)."""
    values: dict[str, str | None] = {}
    for short, name in DIS_CHARACTERISTICS.items():
        if name not in ("manufacturer", "model", "serial", "firmware"):
            continue
        characteristic = _find(
            client, f"0000{short.lower()}-0000-1000-8000-00805f9b34fb", DEVICE_INFORMATION_SERVICE
        )
        if characteristic is None or "read" not in characteristic.properties:
            continue
        try:
            raw = await link.run(partial(client.read_gatt_char, characteristic))
            text = decode_dis_string(short, bytes(raw))
        except (DecodeError, BleakGATTProtocolError) as exc:
            logger.warning("%s: DIS %s unreadable: %s", client.address, short, exc)
            continue
        values[name] = text[:_MAX_IDENTITY_TEXT] or None
    return DeviceIdentity(address=client.address.upper(), **values)


@dataclass(frozen=True)
class ClockSync:
    written: bool
    offset_s: float | None
    device_time: datetime | None


async def sync_clock(
    client: BleakClient, link: SecuredLink, now: Callable[[], datetime]
) -> ClockSync:
    """Read Current Time (offset = hub - device), then write the hub's local time.

    The offset is measured before the write: readings already stored on the device were
    stamped with that clock. A write refused with an ATT error leaves `written` False.
    """
    characteristic = _find(client, CURRENT_TIME)
    if characteristic is None:
        return ClockSync(False, None, None)
    offset: float | None = None
    device_time: datetime | None = None
    if "read" in characteristic.properties:
        try:
            raw = await link.run(lambda: client.read_gatt_char(characteristic))
            hub_local = now().astimezone().replace(tzinfo=None)
            current = decode_current_time(bytes(raw))
            if current.time is not None:
                device_time = current.time + timedelta(seconds=current.fractions256 / 256)
                offset = (hub_local - device_time).total_seconds()
        except (DecodeError, BleakGATTProtocolError) as exc:
            logger.warning("%s: Current Time unreadable: %s", client.address, exc)
    written = False
    if "write" in characteristic.properties:
        value = encode_current_time(current_time_from_datetime(now().astimezone()))
        try:
            await link.run(lambda: client.write_gatt_char(characteristic, value, response=True))
            written = True
        except BleakGATTProtocolError as exc:
            logger.info("%s: clock not writable: %s", client.address, exc)
    return ClockSync(written, offset, device_time)


async def disconnect_quietly(client: BleakClient) -> None:
    try:
        await client.disconnect()
    except (BleakError, TimeoutError, OSError) as exc:
        logger.debug("disconnect %s: %s", client.address, exc)


__all__ = [
    "SECURITY_ERRORS",
    "ClockSync",
    "DeviceUnreachableError",
    "SecuredLink",
    "SessionReport",
    "connect_with_retry",
    "disconnect_quietly",
    "is_security_error",
    "read_identity",
    "sync_clock",
    "utc_now",
]
