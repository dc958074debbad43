"""Blood-pressure driver over plain bleak: one session with a cuff (Blood Pressure Service 0x1810).

A session connects (retrying with backoff), reads Device Information, reads then writes
Current Time, subscribes to Blood Pressure Measurement 0x2A35 indications and hands every
reading to `on_measurement` in arrival order, until the cuff hangs up or stays silent for
`idle_timeout`. It pairs when the cuff asks for security (or when `bond=True`). It runs
unchanged against a real radio (`BleakBackends()`) or a `SimulatedRadio`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from device_drivers.bleak_backends import PLATFORM_BACKENDS, BleakBackends
from device_drivers.codecs.blood_pressure import decode_blood_pressure_measurement
from device_drivers.codecs.errors import DecodeError
from device_drivers.drivers.session import (
    ReceivedMeasurement,
    SecuredLink,
    SessionReport,
    connect_with_retry,
    disconnect_quietly,
    read_identity,
    sync_clock,
    utc_now,
)
from hemhub.contract import DeviceIdentity, MeasurementType

logger = logging.getLogger(__name__)

BLOOD_PRESSURE_SERVICE = "00001810-0000-1000-8000-00805f9b34fb"
BLOOD_PRESSURE_MEASUREMENT = "00002a35-0000-1000-8000-00805f9b34fb"


async def run_blood_pressure_session(
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
    """Run one session with a blood-pressure cuff; returns what it achieved.

    Raises `DeviceUnreachableError` (a `BleakError`) when all `attempts` to connect failed.
    Failures after connecting end the session with `SessionReport.error` set; a payload
    that does not decode is logged and listed in `rejected`. The client is always
    disconnected at the end. If `on_measurement` raises, the session stops there (the
    cuff keeps its remaining readings for the next connection) and `error` says why.
    """
    address = device.address.upper()
    report = SessionReport(identity=DeviceIdentity(address=address))
    queue: asyncio.Queue[tuple[bytes, datetime] | None] = asyncio.Queue()

    def on_disconnect(_client: BleakClient) -> None:
        queue.put_nowait(None)  # after any indication already queued: order is kept

    client = await connect_with_retry(
        device,
        backends=backends,
        connect_timeout=connect_timeout,
        attempts=attempts,
        backoff_s=retry_backoff_s,
        pair=bond,
        disconnected_callback=on_disconnect,
    )
    link = SecuredLink(client)
    try:
        report.identity = await read_identity(client, link)
        clock = await sync_clock(client, link, now)
        report.clock_written = clock.written
        report.device_clock_offset_s = clock.offset_s

        characteristic = client.services.get_characteristic(BLOOD_PRESSURE_MEASUREMENT)
        if characteristic is None:
            raise BleakError(f"{address} has no Blood Pressure Measurement (0x2A35)")

        def on_indication(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
            queue.put_nowait((bytes(data), now()))

        await link.run(lambda: client.start_notify(characteristic, on_indication))
        await _consume(queue, report, on_measurement, idle_timeout)
    except (BleakError, TimeoutError, OSError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        logger.warning("blood-pressure session with %s ended early: %s", address, exc)
    finally:
        report.paired = link.paired
        await disconnect_quietly(client)
    return report


async def _consume(
    queue: asyncio.Queue[tuple[bytes, datetime] | None],
    report: SessionReport,
    on_measurement: Callable[[ReceivedMeasurement], Awaitable[None]],
    idle_timeout: float,
) -> None:
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), idle_timeout)
        except TimeoutError:
            logger.debug(
                "%s: idle for %.3g s, ending session", report.identity.address, idle_timeout
            )
            return
        if item is None:
            return  # the cuff ended the session
        raw, received_at = item
        try:
            measurement = decode_blood_pressure_measurement(raw)
        except DecodeError as exc:
            logger.warning(
                "%s: rejected 2A35 payload %s: %s", report.identity.address, raw.hex(), exc
            )
            report.rejected.append(f"{raw.hex()}: {exc}")
            continue
        received = ReceivedMeasurement(
            characteristic="2A35",
            measurement_type=MeasurementType.BLOOD_PRESSURE,
            raw=raw,
            measurement=measurement,
            received_at=received_at,
            identity=report.identity,
            clock_written=report.clock_written,
            device_clock_offset_s=report.device_clock_offset_s,
        )
        try:
            await on_measurement(received)
        except Exception as exc:
            logger.exception("%s: on_measurement failed", report.identity.address)
            report.error = f"on_measurement failed: {type(exc).__name__}: {exc}"
            return
        report.received += 1


__all__ = ["ReceivedMeasurement", "run_blood_pressure_session"]  # re-exported for callers
