"""Building blocks of a device session over plain bleak, shared by the device drivers.

Rules from the field (see docs/notes on BLE): a fresh `BleakClient` per attempt (never
shared), connect timeouts of at least 10 s on real radios, retries with exponential
backoff, pairing only when the device asks for it (insufficient authentication or
encryption) or when the caller wants a bond, Device Information strings without NUL
padding, and the device clock written on every connection where the device allows it,
otherwise measured against the hub clock.

Per-model quirks (`device_drivers.quirks`) are looked up right after Device Information:
`start_session` pairs up front for BOND_REQUIRED and leaves the clock alone for
CLOCK_NOT_SETTABLE; `SessionRunner` fixes a payload's bytes before decoding.

`run_connected` is the skeleton of every session (connect with retries, `start_session`,
a profile's body, disconnect). `SessionRunner` is a whole session for any profile whose
measurements arrive as notifications or indications on known characteristics: a driver
declares its `MeasurementStream`s and its `run_*_session` is a `SessionRunner`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import TypeVar

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError, BleakGATTProtocolError

from device_drivers.bleak_backends import PLATFORM_BACKENDS, BleakBackends
from device_drivers.codecs.current_time import (
    current_time_from_datetime,
    decode_current_time,
    encode_current_time,
)
from device_drivers.codecs.device_information import (
    DIS_CHARACTERISTICS,
    SYSTEM_ID,
    SystemId,
    decode_dis_string,
    decode_system_id,
)
from device_drivers.codecs.errors import DecodeError
from device_drivers.measurement import ClinicalMeasurement
from device_drivers.quirks import Quirk, apply_byte_quirks, quirks_for
from hemhub.contract import DeviceEvent, DeviceIdentity, MeasurementType

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DEVICE_INFORMATION_SERVICE = "0000180a-0000-1000-8000-00805f9b34fb"
CURRENT_TIME = "00002a2b-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"

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

#: The zone device clocks are written and measured in (the hub's configured zone); None:
#: the system's local zone. A context variable, so that every driver honours the zone the
#: hub sets for a session's task, whatever the driver's own signature.
DEVICE_CLOCK_ZONE: ContextVar[tzinfo | None] = ContextVar("device_clock_zone", default=None)


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
    #: The model's quirks the driver applied (`raw` is always the bytes as received).
    quirks: frozenset[Quirk] = frozenset()
    #: The device's record number (glucose meters, dispensers), None where it has none.
    sequence: int | None = None
    #: What a device reported instead of values (medication robots).
    event: DeviceEvent | None = None
    #: The device clock (naive) as read at connect, before any write; None if unknown. A
    #: record stamped later than this was stamped by the clock the hub wrote.
    device_clock_at_connect: datetime | None = None


@dataclass
class SessionReport:
    """What one session with a device achieved."""

    identity: DeviceIdentity
    clock_written: bool = False
    #: hub_now - device_now in seconds, from Current Time read before any write; None if unknown.
    device_clock_offset_s: float | None = None
    #: The device clock (naive) that read returned; None if unknown.
    device_clock_at_connect: datetime | None = None
    received: int = 0
    #: Payloads that could not be decoded: "<raw hex>: <reason>".
    rejected: list[str] = field(default_factory=list)
    #: Why the session ended early (after a successful connect), None if it ran to its end.
    error: str | None = None
    #: Paired because the device answered an insufficient-security error.
    paired: bool = False
    #: The model's quirks (from Device Information) applied in this session.
    quirks: frozenset[Quirk] = frozenset()
    #: Pairing asked for before subscribing (BOND_REQUIRED model; a no-op when bonded).
    quirk_paired: bool = False
    #: Battery Level (%) read at connect; None if the device has none or it was unreadable.
    battery_level: int | None = None
    #: Values of rate-limited streams not delivered (more than one per `min_interval_s`).
    rate_limited: int = 0
    #: Every Device Information value read at connect (`identity` has four of them).
    device_information: DeviceInformation = field(default_factory=lambda: DeviceInformation())


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


@dataclass(frozen=True)
class DeviceInformation:
    """Every Device Information value a device offers; None: absent, empty or unreadable.

    The strings are manufacturer 2A29, model 2A24, serial 2A25, hardware revision 2A27,
    firmware revision 2A26 and software revision 2A28 (`DIS_CHARACTERISTICS`), cut to
    128 characters; `system_id` is System ID 2A23. The wire contract's `DeviceIdentity`
    carries four of them (`identity()`); all are in `SessionReport.device_information`.
    """

    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    hardware: str | None = None
    firmware: str | None = None
    software: str | None = None
    system_id: SystemId | None = None

    def identity(self, address: str) -> DeviceIdentity:
        return DeviceIdentity(
            address=address.upper(),
            manufacturer=self.manufacturer,
            model=self.model,
            serial=self.serial,
            firmware=self.firmware,
        )


def _dis_uuid(short: str) -> str:
    return f"0000{short.lower()}-0000-1000-8000-00805f9b34fb"


async def _read_dis(client: BleakClient, link: SecuredLink, short: str) -> bytes | None:
    """One Device Information value's bytes; None when absent, not readable or refused."""
    characteristic = _find(client, _dis_uuid(short), DEVICE_INFORMATION_SERVICE)
    if characteristic is None or "read" not in characteristic.properties:
        return None
    try:
        return bytes(await link.run(partial(client.read_gatt_char, characteristic)))
    except BleakGATTProtocolError as exc:
        logger.warning("%s: DIS %s unreadable: %s", client.address, short, exc)
        return None


async def read_device_information(client: BleakClient, link: SecuredLink) -> DeviceInformation:
    """Read every Device Information string the device offers, and its System ID if it
    has one; a missing or malformed one is left None (and logged), never an error."""
    values: dict[str, str | None] = {}
    for short, name in DIS_CHARACTERISTICS.items():
        raw = await _read_dis(client, link, short)
        if raw is None:
            continue
        try:
            text = decode_dis_string(short, raw)
        except DecodeError as exc:
            logger.warning("%s: DIS %s unreadable: %s", client.address, short, exc)
            continue
        values[name] = text[:_MAX_IDENTITY_TEXT] or None
    system_id: SystemId | None = None
    raw = await _read_dis(client, link, SYSTEM_ID)
    if raw is not None:
        try:
            system_id = decode_system_id(raw)
        except DecodeError as exc:
            logger.warning("%s: System ID unreadable: %s", client.address, exc)
    return DeviceInformation(**values, system_id=system_id)


async def read_identity(client: BleakClient, link: SecuredLink) -> DeviceIdentity:
    """The device's address plus its Device Information strings (NULs stripped)."""
    return (await read_device_information(client, link)).identity(client.address)


@dataclass(frozen=True)
class ClockSync:
    written: bool
    offset_s: float | None
    device_time: datetime | None


async def sync_clock(
    client: BleakClient,
    link: SecuredLink,
    now: Callable[[], datetime],
    *,
    write: bool = True,
    zone: tzinfo | None = None,
) -> ClockSync:
    """Read Current Time (offset = hub - device), then write the hub's time in `zone`.

    `zone` defaults to `DEVICE_CLOCK_ZONE` (set by the hub), else the system's local
    zone; the offset is measured in the same zone the clock is written in. The offset is
    measured before the write: readings already stored on the device were stamped with
    that clock. A write refused with an ATT error leaves `written` False; `write=False`
    (a CLOCK_NOT_SETTABLE model) only measures.
    """
    if zone is None:
        zone = DEVICE_CLOCK_ZONE.get()
    characteristic = _find(client, CURRENT_TIME)
    if characteristic is None:
        return ClockSync(False, None, None)
    offset: float | None = None
    device_time: datetime | None = None
    if "read" in characteristic.properties:
        try:
            raw = await link.run(lambda: client.read_gatt_char(characteristic))
            hub_local = now().astimezone(zone).replace(tzinfo=None)
            current = decode_current_time(bytes(raw))
            if current.time is not None:
                device_time = current.time + timedelta(seconds=current.fractions256 / 256)
                offset = (hub_local - device_time).total_seconds()
        except (DecodeError, BleakGATTProtocolError) as exc:
            logger.warning("%s: Current Time unreadable: %s", client.address, exc)
    written = False
    if write and "write" in characteristic.properties:
        value = encode_current_time(current_time_from_datetime(now().astimezone(zone)))
        try:
            await link.run(lambda: client.write_gatt_char(characteristic, value, response=True))
            written = True
        except BleakGATTProtocolError as exc:
            logger.info("%s: clock not writable: %s", client.address, exc)
    return ClockSync(written, offset, device_time)


async def read_battery_level(client: BleakClient, link: SecuredLink) -> int | None:
    """Battery Level 0x2A19 (%), None when absent, unreadable or out of 0-100."""
    characteristic = _find(client, BATTERY_LEVEL)
    if characteristic is None or "read" not in characteristic.properties:
        return None
    try:
        raw = await link.run(lambda: client.read_gatt_char(characteristic))
    except BleakGATTProtocolError as exc:
        logger.warning("%s: Battery Level unreadable: %s", client.address, exc)
        return None
    if len(raw) != 1 or raw[0] > 100:
        logger.warning("%s: invalid Battery Level %s", client.address, bytes(raw).hex())
        return None
    return int(raw[0])


async def start_session(
    client: BleakClient, link: SecuredLink, report: SessionReport, now: Callable[[], datetime]
) -> None:
    """What every driver does before subscribing, with the model's quirks applied.

    Reads Device Information, looks the model's quirks up, pairs at once for BOND_REQUIRED,
    reads (and where allowed writes) Current Time, reads the battery level; fills `report`.
    """
    report.device_information = await read_device_information(client, link)
    report.identity = report.device_information.identity(client.address)
    report.quirks = quirks_for(report.identity)
    if report.quirks:
        logger.info("%s: model quirks %s", client.address, sorted(report.quirks))
    if Quirk.BOND_REQUIRED in report.quirks:
        await client.pair()
        report.quirk_paired = True
    clock = await sync_clock(client, link, now, write=Quirk.CLOCK_NOT_SETTABLE not in report.quirks)
    report.clock_written = clock.written
    report.device_clock_offset_s = clock.offset_s
    report.device_clock_at_connect = clock.device_time
    report.battery_level = await read_battery_level(client, link)


@dataclass(frozen=True)
class MeasurementStream:
    """A characteristic whose notifications/indications carry measurements, and its codec."""

    #: 16-bit SIG UUID as the hub names characteristics, e.g. "2A35".
    characteristic: str
    measurement_type: MeasurementType
    decode: Callable[[bytes], ClinicalMeasurement]
    #: A device without it is not of this profile (the session fails); else it is skipped.
    required: bool = True
    #: Deliver at most one value per this many seconds (continuous streams); None: all.
    #: A window opens with its first value and lasts `min_interval_s`; the value it
    #: keeps (see `window_rank`) is delivered when the window ends, or when the session
    #: ends, whichever comes first. The others count in `SessionReport.rate_limited`.
    min_interval_s: float | None = None
    #: How bad a value is clinically, lower = worse: each window keeps its lowest-ranked
    #: value, on ties the latest (None: every value ranks the same, so the latest).
    window_rank: Callable[[ClinicalMeasurement], float] | None = None

    @property
    def uuid(self) -> str:
        return f"0000{self.characteristic.lower()}-0000-1000-8000-00805f9b34fb"


_QueueItem = tuple[MeasurementStream, bytes, datetime]


class _RateWindow:
    """The rate limit of one stream (`MeasurementStream.min_interval_s`): of each window
    it queues one value, the lowest-ranked (ties: the latest), when the window ends
    (a timer) or at `flush()` (end of session). Undecodable values are queued at once
    (the consumer rejects and lists them)."""

    def __init__(
        self,
        stream: MeasurementStream,
        interval_s: float,
        queue: asyncio.Queue[_QueueItem | None],
        report: SessionReport,
    ) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.queue = queue
        self.report = report
        self._held: _QueueItem | None = None
        self._held_rank = 0.0
        self._window_end: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self._held is not None

    def _rank(self, raw: bytes) -> float | None:
        stream = self.stream
        try:
            measurement = stream.decode(
                apply_byte_quirks(stream.characteristic, raw, self.report.quirks)
            )
        except DecodeError:
            return None
        return stream.window_rank(measurement) if stream.window_rank is not None else 0.0

    def offer(self, item: _QueueItem) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._window_end is not None and now >= self._window_end:
            self.flush()  # the timer is late: close the old window first
        rank = self._rank(item[1])
        if rank is None:
            self.queue.put_nowait(item)
            return
        if self._window_end is None:
            self._window_end = now + self.interval_s
            self._timer = loop.call_later(self.interval_s, self.flush)
        if self._held is None:
            self._held, self._held_rank = item, rank
            return
        self.report.rate_limited += 1
        if rank <= self._held_rank:  # as bad or worse, and later
            self._held, self._held_rank = item, rank

    def flush(self) -> None:
        """Queue the value the window kept and close the window."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._window_end = None
        held, self._held = self._held, None
        if held is not None:
            self.queue.put_nowait(held)


async def run_connected(
    device: BLEDevice,
    report: SessionReport,
    body: Callable[[BleakClient, SecuredLink], Awaitable[None]],
    *,
    backends: BleakBackends,
    now: Callable[[], datetime],
    connect_timeout: float,
    attempts: int,
    bond: bool,
    retry_backoff_s: float,
    disconnected_callback: Callable[[BleakClient], None] | None = None,
    kind: str = "device",
) -> None:
    """The skeleton of every session: connect, `start_session`, `body`, disconnect.

    Connects with retries (`DeviceUnreachableError` when every attempt fails), runs
    `start_session` (Device Information, model quirks, Current Time, battery) and then
    `body(client, link)`; always disconnects. BLE errors after connecting end the session
    with `report.error` set (unless already set) instead of raising.
    """
    client = await connect_with_retry(
        device,
        backends=backends,
        connect_timeout=connect_timeout,
        attempts=attempts,
        backoff_s=retry_backoff_s,
        pair=bond,
        disconnected_callback=disconnected_callback,
    )
    link = SecuredLink(client)
    try:
        await start_session(client, link, report, now)
        await body(client, link)
    except (BleakError, TimeoutError, OSError) as exc:
        if report.error is None:
            report.error = f"{type(exc).__name__}: {exc}"
        logger.warning("%s session with %s ended early: %s", kind, report.identity.address, exc)
    finally:
        report.paired = link.paired
        await disconnect_quietly(client)


class SessionRunner:
    """A driver's `run_*_session` for a profile whose measurements are notified/indicated.

    Calling it runs one session: connect, `start_session`, subscribe to `streams`, hand
    every value to `on_measurement` in arrival order until the device hangs up or stays
    silent for `idle_timeout`. Raises `DeviceUnreachableError` (a `BleakError`) when all
    `attempts` to connect failed. Failures after connecting end the session with
    `SessionReport.error` set; a payload that does not decode is logged and listed in
    `rejected`. The client is always disconnected at the end. If `on_measurement` raises,
    the session stops there (the device keeps what it did not send) and `error` says why.
    """

    def __init__(self, profile: str, streams: Sequence[MeasurementStream]) -> None:
        self.profile = profile
        self.streams = tuple(streams)

    def __repr__(self) -> str:
        names = ", ".join(s.characteristic for s in self.streams)
        return f"SessionRunner({self.profile!r}, streams=[{names}])"

    async def __call__(
        self,
        device: BLEDevice,
        *,
        backends: BleakBackends = PLATFORM_BACKENDS,
        on_measurement: Callable[[ReceivedMeasurement], Awaitable[None]],
        now: Callable[[], datetime] = utc_now,
        connect_timeout: float = 15.0,
        idle_timeout: float = 5.0,
        attempts: int = 3,
        bond: bool = False,
        retry_backoff_s: float = 1.0,
    ) -> SessionReport:
        report = SessionReport(identity=DeviceIdentity(address=device.address.upper()))
        queue: asyncio.Queue[_QueueItem | None] = asyncio.Queue()
        windows: list[_RateWindow] = []

        def on_disconnect(_client: BleakClient) -> None:
            for window in windows:
                window.flush()  # the end of the session ends every window
            queue.put_nowait(None)  # after any value already queued: order is kept

        async def body(client: BleakClient, link: SecuredLink) -> None:
            for stream in self.streams:
                window = await _subscribe(client, link, stream, queue, report, now)
                if window is not None:
                    windows.append(window)
            await _consume(queue, report, on_measurement, idle_timeout)
            if report.error is None and any(w.pending for w in windows):
                # Ended by silence: what the open windows kept is still delivered.
                for window in windows:
                    window.flush()
                queue.put_nowait(None)
                await _consume(queue, report, on_measurement, idle_timeout)

        try:
            await run_connected(
                device,
                report,
                body,
                backends=backends,
                now=now,
                connect_timeout=connect_timeout,
                attempts=attempts,
                bond=bond,
                retry_backoff_s=retry_backoff_s,
                disconnected_callback=on_disconnect,
                kind=self.profile,
            )
        finally:
            for window in windows:
                window.flush()  # cancels its timer; nobody consumes the queue any more
        return report


async def _subscribe(
    client: BleakClient,
    link: SecuredLink,
    stream: MeasurementStream,
    queue: asyncio.Queue[_QueueItem | None],
    report: SessionReport,
    now: Callable[[], datetime],
) -> _RateWindow | None:
    """Subscribe to `stream`; returns its rate window when it is rate-limited."""
    characteristic = _find(client, stream.uuid)
    if characteristic is None or not {"notify", "indicate"} & set(characteristic.properties):
        if stream.required:
            raise BleakError(f"{client.address} has no {stream.characteristic} to subscribe to")
        logger.debug("%s: no %s, not subscribed", client.address, stream.characteristic)
        return None
    window = (
        _RateWindow(stream, stream.min_interval_s, queue, report)
        if stream.min_interval_s is not None
        else None
    )

    def on_value(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
        item = (stream, bytes(data), now())
        if window is not None:
            window.offer(item)
        else:
            queue.put_nowait(item)

    await link.run(lambda: client.start_notify(characteristic, on_value))
    return window


async def _consume(
    queue: asyncio.Queue[_QueueItem | None],
    report: SessionReport,
    on_measurement: Callable[[ReceivedMeasurement], Awaitable[None]],
    idle_timeout: float,
) -> None:
    address = report.identity.address
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), idle_timeout)
        except TimeoutError:
            logger.debug("%s: idle for %.3g s, ending session", address, idle_timeout)
            return
        if item is None:
            return  # the device ended the session
        stream, raw, received_at = item
        try:
            measurement = stream.decode(
                apply_byte_quirks(stream.characteristic, raw, report.quirks)
            )
        except DecodeError as exc:
            logger.warning(
                "%s: rejected %s payload %s: %s", address, stream.characteristic, raw.hex(), exc
            )
            report.rejected.append(f"{raw.hex()}: {exc}")
            continue
        received = ReceivedMeasurement(
            characteristic=stream.characteristic,
            measurement_type=stream.measurement_type,
            raw=raw,
            measurement=measurement,
            received_at=received_at,
            identity=report.identity,
            clock_written=report.clock_written,
            device_clock_offset_s=report.device_clock_offset_s,
            quirks=report.quirks,
            device_clock_at_connect=report.device_clock_at_connect,
        )
        try:
            await on_measurement(received)
        except Exception as exc:
            logger.exception("%s: on_measurement failed", address)
            report.error = f"on_measurement failed: {type(exc).__name__}: {exc}"
            return
        report.received += 1


async def disconnect_quietly(client: BleakClient) -> None:
    try:
        await client.disconnect()
    except (BleakError, TimeoutError, OSError) as exc:
        logger.debug("disconnect %s: %s", client.address, exc)


__all__ = [
    "DEVICE_CLOCK_ZONE",
    "SECURITY_ERRORS",
    "ClockSync",
    "DeviceInformation",
    "DeviceUnreachableError",
    "MeasurementStream",
    "ReceivedMeasurement",
    "SecuredLink",
    "SessionReport",
    "SessionRunner",
    "connect_with_retry",
    "disconnect_quietly",
    "is_security_error",
    "read_battery_level",
    "read_device_information",
    "read_identity",
    "run_connected",
    "start_session",
    "sync_clock",
    "utc_now",
]
