"""Erasing what a device stores, where its profile allows, and proving it (issue 13).

One procedure per profile (docs/devices.md, "Data reset"):

- glucose: RACP "delete stored records, all" (`02 01`), then "report number of stored
  records" must answer 0 (a meter that acknowledges deletes and ignores them fails);
- dispenser: the Dispenser Control Point's data reset (`01 57 49 50 45`,
  docs/dispenser-gatt.md); the device erases its log, schedule and bonds and drops the
  link; the hub removes its own bond, connects again and reads Dispenser Status, whose
  `last_sequence` must be 0;
- pulse oximeter: a RACP delete all, where the oximeter keeps spot-checks behind a RACP;
  else unsupported;
- weight scale: unsupported, saying whether the scale offers a User Data Service (hemhub
  registers no UDS user, so it holds no consent code to delete user data with);
- blood pressure: unsupported without connecting (the Blood Pressure Service has no
  delete).

Removing the hub's own bond afterwards is the caller's (the gateway's unbonding, which
retries). Connection failures and refusals are `failed`, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.dispenser import (
    DISPENSER_EVENT_UUID,
    DISPENSER_RACP_UUID,
    DISPENSER_SEQUENCE_SIZE,
    DISPENSER_STATUS_UUID,
    decode_dispenser_status,
)
from device_drivers.codecs.dispenser_control import (
    DISPENSER_CONTROL_POINT_UUID,
    DispenserControlResponse,
    decode_control_response,
    encode_data_reset,
)
from device_drivers.codecs.errors import DecodeError, EncodeError
from device_drivers.drivers.racp import RECORD_ACCESS_CONTROL_POINT, RacpProcedure
from device_drivers.drivers.session import (
    SecuredLink,
    connect_with_retry,
    disconnect_quietly,
)
from hemhub.contract import DeviceProfile

logger = logging.getLogger(__name__)

Outcome = Literal["wiped", "unsupported", "failed"]

GLUCOSE_MEASUREMENT = "00002a18-0000-1000-8000-00805f9b34fb"
PLX_SPOT_CHECK = "00002a5e-0000-1000-8000-00805f9b34fb"
USER_CONTROL_POINT = "00002a9f-0000-1000-8000-00805f9b34fb"

#: Why a profile cannot be wiped at all (the hub does not connect for these).
NO_DELETE: dict[DeviceProfile, str] = {
    DeviceProfile.BLOOD_PRESSURE: (
        "the Blood Pressure Service defines no way to delete stored measurements: clear the"
        " cuff's memory on the cuff itself (its menu or a factory reset)"
    ),
}


@dataclass(frozen=True)
class WipeReport:
    outcome: Outcome
    reason: str | None = None
    #: Records the device held before the wipe, where it says.
    records_before: int | None = None


@dataclass(frozen=True)
class WipeOptions:
    connect_timeout: float = 15.0
    attempts: int = 3
    retry_backoff_s: float = 1.0
    #: Longest wait for any answer of the device (RACP, control point).
    idle_timeout: float = 10.0


def _characteristic(client: BleakClient, uuid: str) -> BleakGATTCharacteristic | None:
    try:
        return client.services.get_characteristic(uuid)
    except BleakError:  # several with that UUID
        return None


async def _racp_delete_all(racp: RacpProcedure, what: str) -> WipeReport:
    before = await racp.count()
    await racp.delete_all()
    after = await racp.count()
    if after != 0:
        return WipeReport(
            "failed",
            f"the {what} acknowledged 'delete all stored records' but still holds {after} of"
            f" {before} record(s)",
            before,
        )
    return WipeReport("wiped", f"{before} stored record(s) deleted (RACP delete all)", before)


async def _connect(
    device: BLEDevice, backends: BleakBackends, options: WipeOptions, on_lost: Callable[..., None]
) -> BleakClient:
    return await connect_with_retry(
        device,
        backends=backends,
        connect_timeout=options.connect_timeout,
        attempts=options.attempts,
        backoff_s=options.retry_backoff_s,
        disconnected_callback=on_lost,
    )


async def _with_racp(
    device: BLEDevice,
    backends: BleakBackends,
    options: WipeOptions,
    *,
    record_uuid: str,
    control_point_uuid: str = RECORD_ACCESS_CONTROL_POINT,
    sequence_size: int = 2,
    body: Callable[[BleakClient, SecuredLink, RacpProcedure], Awaitable[WipeReport]],
    missing: Callable[[BleakClient], WipeReport | None] = lambda _c: None,
) -> WipeReport:
    racp = RacpProcedure(
        record_uuid=record_uuid,
        control_point_uuid=control_point_uuid,
        timeout=options.idle_timeout,
        sequence_size=sequence_size,
    )
    client = await _connect(device, backends, options, racp.connection_lost)
    link = SecuredLink(client)
    try:
        unsupported = missing(client)
        if unsupported is not None:
            return unsupported
        await racp.enable(client, link)
        return await body(client, link, racp)
    finally:
        await disconnect_quietly(client)


async def _wipe_glucose(
    device: BLEDevice, backends: BleakBackends, options: WipeOptions
) -> WipeReport:
    async def body(_c: BleakClient, _l: SecuredLink, racp: RacpProcedure) -> WipeReport:
        return await _racp_delete_all(racp, "meter")

    return await _with_racp(device, backends, options, record_uuid=GLUCOSE_MEASUREMENT, body=body)


async def _wipe_oximeter(
    device: BLEDevice, backends: BleakBackends, options: WipeOptions
) -> WipeReport:
    def missing(client: BleakClient) -> WipeReport | None:
        if _characteristic(client, RECORD_ACCESS_CONTROL_POINT) is None:
            return WipeReport(
                "unsupported",
                "the oximeter offers no Record Access Control Point (0x2A52): it keeps no"
                " stored spot-checks the hub could delete; clear its memory on the device",
            )
        if _characteristic(client, PLX_SPOT_CHECK) is None:
            return WipeReport(
                "unsupported", "the oximeter has a RACP but no Spot-Check Measurement (0x2A5E)"
            )
        return None

    async def body(_c: BleakClient, _l: SecuredLink, racp: RacpProcedure) -> WipeReport:
        return await _racp_delete_all(racp, "oximeter")

    return await _with_racp(
        device, backends, options, record_uuid=PLX_SPOT_CHECK, body=body, missing=missing
    )


async def _wipe_scale(
    device: BLEDevice, backends: BleakBackends, options: WipeOptions
) -> WipeReport:
    client = await _connect(device, backends, options, lambda _c: None)
    try:
        if _characteristic(client, USER_CONTROL_POINT) is None:
            return WipeReport(
                "unsupported",
                "the scale offers no User Data Service (0x181C) to delete user data with:"
                " clear its users on the scale itself",
            )
        return WipeReport(
            "unsupported",
            "the scale offers a User Data Service, but deleting user data needs the user's"
            " consent code and hemhub registers no UDS user on scales: clear its users on"
            " the scale itself",
        )
    finally:
        await disconnect_quietly(client)


async def _control_response(
    client: BleakClient,
    link: SecuredLink,
    control: BleakGATTCharacteristic,
    wait_s: float,
) -> DispenserControlResponse:
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    def on_answer(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
        answers.put_nowait(bytes(data))

    await link.run(lambda: client.start_notify(control, on_answer))
    request = encode_data_reset()
    await link.run(lambda: client.write_gatt_char(control, request, response=True))
    try:
        raw = await asyncio.wait_for(answers.get(), wait_s)
    except TimeoutError:
        raise BleakError(f"no answer to the data reset within {wait_s:.0f} s") from None
    return decode_control_response(raw)


async def _wipe_dispenser(
    device: BLEDevice, backends: BleakBackends, options: WipeOptions
) -> WipeReport:
    def missing(client: BleakClient) -> WipeReport | None:
        if _characteristic(client, DISPENSER_CONTROL_POINT_UUID) is None:
            return WipeReport(
                "unsupported",
                "the dispenser offers no Dispenser Control Point (…0006): it cannot be"
                " reset over the air; reset it on the device (docs/dispenser-gatt.md)",
            )
        return None

    async def body(client: BleakClient, link: SecuredLink, racp: RacpProcedure) -> WipeReport:
        before = await racp.count()
        control = _characteristic(client, DISPENSER_CONTROL_POINT_UUID)
        assert control is not None
        answer = await _control_response(client, link, control, options.idle_timeout)
        if not answer.ok:
            return WipeReport(
                "failed", f"the dispenser refused the data reset: {answer.result.name}", before
            )
        return WipeReport("wiped", f"data reset: {before} logged event(s) erased", before)

    report = await _with_racp(
        device,
        backends,
        options,
        record_uuid=DISPENSER_EVENT_UUID,
        control_point_uuid=DISPENSER_RACP_UUID,
        sequence_size=DISPENSER_SEQUENCE_SIZE,
        body=body,
        missing=missing,
    )
    if report.outcome != "wiped":
        return report
    # Proof: the device forgot its bonds with its log, so the hub's bond is stale. Drop
    # it, connect without one and read the status (readable unencrypted while the device
    # has no bond, docs/dispenser-gatt.md): its log must be empty.
    await BleakClient(device.address, backend=backends.client).unpair()
    client = await _connect(device, backends, options, lambda _c: None)
    try:
        status = decode_dispenser_status(bytes(await client.read_gatt_char(DISPENSER_STATUS_UUID)))
    finally:
        await disconnect_quietly(client)
    if status.last_sequence != 0:
        return WipeReport(
            "failed",
            f"the dispenser acknowledged the data reset but reports last sequence"
            f" {status.last_sequence}",
            report.records_before,
        )
    return report


_WIPES: dict[
    DeviceProfile, Callable[[BLEDevice, BleakBackends, WipeOptions], Awaitable[WipeReport]]
] = {
    DeviceProfile.GLUCOSE: _wipe_glucose,
    DeviceProfile.DISPENSER: _wipe_dispenser,
    DeviceProfile.PULSE_OXIMETER: _wipe_oximeter,
    DeviceProfile.WEIGHT_SCALE: _wipe_scale,
}


def needs_device(profile: DeviceProfile) -> bool:
    """Whether wiping a device of this profile talks to it (else: unsupported at once)."""
    return profile in _WIPES


def cannot_wipe(profile: DeviceProfile) -> WipeReport:
    """The answer for a profile with no delete at all (`needs_device` False)."""
    return WipeReport("unsupported", NO_DELETE.get(profile, f"no wipe for {profile} devices"))


async def wipe_device(
    device: BLEDevice,
    profile: DeviceProfile,
    *,
    backends: BleakBackends,
    options: WipeOptions | None = None,
) -> WipeReport:
    """Erase what `device` stores by its profile's procedure, and check it is gone."""
    wipe = _WIPES.get(profile)
    if wipe is None:
        return cannot_wipe(profile)
    try:
        return await wipe(device, backends, options or WipeOptions())
    except (BleakError, TimeoutError, OSError, DecodeError, EncodeError) as exc:
        logger.warning("wiping %s (%s) failed: %s", device.address, profile, exc)
        return WipeReport("failed", f"{type(exc).__name__}: {exc}"[:512])


__all__ = [
    "NO_DELETE",
    "WipeOptions",
    "WipeReport",
    "cannot_wipe",
    "needs_device",
    "wipe_device",
]
