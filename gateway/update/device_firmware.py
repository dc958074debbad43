"""Update one BLE device's firmware through the hub: MCUmgr/SMP with smpclient over bleak.

`update_device_firmware(address, image, backends=...)` runs the whole MCUboot update:

1. connect (smpclient's BLE transport on the hub's bleak backends), read the firmware
   revision from Device Information and the image list;
2. "downloading": upload the signed image to the secondary slot with smpclient's
   `upload`, reporting percent; a dropped link reconnects and uploads again, and the
   device resumes at the offset it reached (SMP's upload resumption by image hash);
3. "installing": mark the image for test and reset the device;
4. "confirming": reconnect, read the image list: the new image running → `confirm` (an
   optional health check first) and read the firmware revision again → "confirmed";
   the old image running with the new one in the secondary slot → the new image did not
   boot and MCUboot reverted it → "reverted"; the secondary slot empty → the bootloader
   refused the image (signature or integrity) → "failed".

Every step is safe to repeat: an image already running is only confirmed, one already in
the secondary slot is not uploaded again, so the hub picks up where it was after its own
restart. The states are the shared update progress states (rollout carries them in the
hub status as `DeviceHealth.firmware_update`). Whether an update may start at all is
`device_safety.safe_to_update`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bleak.exc import BleakError
from smp import error as smperror
from smp import image_management as smpimg
from smpclient import SMPClient
from smpclient.exceptions import SMPClientException, SMPUploadError
from smpclient.generics import error, success
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import ResetWrite
from smpclient.transport import SMPTransportDisconnected

from device_drivers.bleak_backends import PLATFORM_BACKENDS, BleakBackends
from device_drivers.drivers.session import SecuredLink, read_device_information
from device_drivers.mcuboot_image import inspect_image
from device_drivers.smp_transport import BackendSMPBLETransport
from gateway.update.device_safety import DeviceSituation, SafetyPolicy, safe_to_update

logger = logging.getLogger(__name__)

ProgressState = Literal[
    "downloading", "installing", "confirming", "confirmed", "failed", "reverted"
]

#: What a broken link or a silent device raises at any step (then: reconnect, retry).
_LINK_ERRORS = (SMPTransportDisconnected, BleakError, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class FirmwareProgress:
    """One progress report: state, percent while downloading, reason when it went wrong."""

    state: ProgressState
    percent: int | None = None
    reason: str | None = None


ProgressCallback = Callable[[FirmwareProgress], None]


@dataclass(frozen=True)
class FirmwareImage:
    """A signed MCUboot image: its bytes, version and MCUboot hash (the image list's)."""

    data: bytes
    version: str
    hash: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> FirmwareImage:
        """Read version and hash from the image's header and TLVs (imgtool).

        The signature is checked by the device's bootloader against its own key; the hub
        only refuses what is not an MCUboot image at all.
        """
        info = inspect_image(data, None)
        if not info.valid:
            raise ValueError(f"not a valid MCUboot image: {info.reason}")
        return cls(bytes(data), info.version, info.hash)

    @classmethod
    def from_file(cls, path: Path) -> FirmwareImage:
        return cls.from_bytes(path.read_bytes())


@dataclass
class FirmwareOutcome:
    """How an update ended (`state` is "confirmed", "failed" or "reverted")."""

    address: str
    state: ProgressState
    target_version: str
    reason: str | None = None
    #: Firmware revision (Device Information 2A26) before and after.
    version_before: str | None = None
    version_after: str | None = None
    #: The version running according to the image list at the end.
    running_version: str | None = None
    #: Upload attempts (1 unless the link dropped) and the offsets resumed from.
    upload_attempts: int = 0
    resumed_from: list[int] = field(default_factory=list)


class _Failed(Exception):
    def __init__(self, state: ProgressState, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


def _refusal(response: object) -> str:
    """A device's error answer as a short reason."""
    if isinstance(response, smperror.ErrorV1):
        reason = f"{response.rc.name}"
        return f"{reason}: {response.rsn}" if response.rsn else reason
    if isinstance(response, smperror.ErrorV2):
        return f"{getattr(response.err.rc, 'name', response.err.rc)}"
    return str(response)


class _Session:
    """One device's SMP connection, reconnected on demand."""

    def __init__(
        self, address: str, backends: BleakBackends, connect_timeout: float, timeout: float
    ) -> None:
        self.address = address
        self.backends = backends
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.transport: BackendSMPBLETransport | None = None
        self.client: SMPClient | None = None

    async def connect(self) -> SMPClient:
        if self.client is not None:
            return self.client
        transport = BackendSMPBLETransport(self.backends)
        client = SMPClient(transport, self.address, timeout_s=self.timeout)
        await client.connect(self.connect_timeout)
        self.transport, self.client = transport, client
        return client

    async def connect_within(self, seconds: float) -> SMPClient:
        """Connect, retrying until `seconds` passed (the device is rebooting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                return await self.connect()
            except (*_LINK_ERRORS, SMPClientException) as exc:
                await self.close()
                if loop.time() >= deadline:
                    raise _Failed("failed", f"device not back after reset: {exc}") from exc
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        client, self.client, self.transport = self.client, None, None
        if client is None:
            return
        try:
            await client.disconnect()
        except Exception as exc:  # already gone (reset, drop): nothing to clean up
            logger.debug("%s: disconnect: %s", self.address, exc)

    async def firmware_revision(self) -> str | None:
        transport = self.transport
        if transport is None:
            return None
        client = transport.client
        info = await read_device_information(client, SecuredLink(client))
        return info.firmware

    async def images(self) -> list[smpimg.ImageState]:
        client = await self.connect()
        response = await client.request(ImageStatesRead())
        if not success(response):
            raise _Failed("failed", f"image list refused: {_refusal(response)}")
        return list(response.images)


async def update_device_firmware(
    address: str,
    image: FirmwareImage | Path,
    *,
    backends: BleakBackends = PLATFORM_BACKENDS,
    progress: ProgressCallback | None = None,
    health_check: Callable[[], Awaitable[bool]] | None = None,
    connect_timeout: float = 10.0,
    request_timeout: float = 5.0,
    upload_attempts: int = 3,
    reboot_timeout: float = 30.0,
) -> FirmwareOutcome:
    """Update the device at `address` to `image`; see the module docstring.

    Args:
        address: the device's Bluetooth address.
        image: the signed image (or its file).
        backends: the hub's bleak backends (the real radio or a simulated one).
        progress: called with every state change and upload percent.
        health_check: awaited once the new image runs and before it is confirmed; False
            leaves the image unconfirmed and resets the device, so MCUboot reverts it.
        upload_attempts: uploads tried (each resuming the last) before giving up.
        reboot_timeout: seconds the device may take to come back after a reset.
    """
    target = image if isinstance(image, FirmwareImage) else FirmwareImage.from_file(image)
    outcome = FirmwareOutcome(
        address=address.upper(), state="failed", target_version=target.version
    )

    def report(state: ProgressState, percent: int | None = None, reason: str | None = None) -> None:
        if progress is not None:
            progress(FirmwareProgress(state, percent, reason))

    session = _Session(address, backends, connect_timeout, request_timeout)
    try:
        await _run(session, target, outcome, report, health_check, upload_attempts, reboot_timeout)
    except _Failed as exc:
        outcome.state, outcome.reason = exc.state, exc.reason
    except (*_LINK_ERRORS, SMPClientException) as exc:
        outcome.state, outcome.reason = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        await session.close()
    if outcome.state != "confirmed":
        report(outcome.state, reason=outcome.reason)
    logger.info(
        "%s: firmware %s -> %s: %s%s",
        outcome.address,
        outcome.version_before,
        target.version,
        outcome.state,
        f" ({outcome.reason})" if outcome.reason else "",
    )
    return outcome


async def _run(
    session: _Session,
    target: FirmwareImage,
    outcome: FirmwareOutcome,
    report: Callable[..., None],
    health_check: Callable[[], Awaitable[bool]] | None,
    upload_attempts: int,
    reboot_timeout: float,
) -> None:
    await session.connect()
    outcome.version_before = await session.firmware_revision()
    images = await session.images()
    active = next((i for i in images if i.active), None)
    if active is not None and active.hash == target.hash:
        # Already running (the hub restarted after the reset): confirm only.
        report("confirming")
        await _confirm(session, target, outcome, report, health_check)
        return
    staged = next((i for i in images if i.slot == 1 and i.hash == target.hash), None)
    if staged is None:
        await _upload(session, target, outcome, report, upload_attempts)

    report("installing")
    client = await session.connect()
    response = await client.request(ImageStatesWrite(hash=target.hash))
    if not success(response):
        raise _Failed("failed", f"test mark refused: {_refusal(response)}")
    await _reset(session)

    report("confirming")
    await session.connect_within(reboot_timeout)
    await _confirm(session, target, outcome, report, health_check, reboot_timeout)


async def _upload(
    session: _Session,
    target: FirmwareImage,
    outcome: FirmwareOutcome,
    report: Callable[..., None],
    attempts: int,
) -> None:
    size = len(target.data)
    last_percent = -1
    for attempt in range(1, attempts + 1):
        outcome.upload_attempts = attempt
        try:
            client = await session.connect_within(10.0) if attempt > 1 else await session.connect()
            first = True
            async for offset in client.upload(target.data):
                if first and attempt > 1:
                    outcome.resumed_from.append(offset)
                first = False
                percent = offset * 100 // size
                if percent != last_percent:
                    last_percent = percent
                    report("downloading", percent)
            return
        except SMPUploadError as exc:
            reason = exc.args[0] if exc.args else exc
            raise _Failed("failed", f"upload refused: {_refusal(reason)}") from exc
        except _LINK_ERRORS as exc:
            logger.info("%s: upload interrupted (%s), attempt %d", session.address, exc, attempt)
            await session.close()
            if attempt == attempts:
                raise _Failed("failed", f"upload interrupted {attempts} times: {exc}") from exc


async def _reset(session: _Session) -> None:
    client = await session.connect()
    try:
        response = await client.request(ResetWrite())
        if error(response):
            raise _Failed("failed", f"reset refused: {_refusal(response)}")
    except _LINK_ERRORS:
        pass  # the device may drop the link before its answer arrives
    await session.close()
    await asyncio.sleep(0.2)  # let it go off the air before reconnecting


async def _confirm(
    session: _Session,
    target: FirmwareImage,
    outcome: FirmwareOutcome,
    report: Callable[..., None],
    health_check: Callable[[], Awaitable[bool]] | None,
    reboot_timeout: float = 30.0,
) -> None:
    images = await session.images()
    active = next((i for i in images if i.active), None)
    outcome.running_version = active.version if active is not None else None
    if active is None or active.hash != target.hash:
        staged = any(i.slot == 1 and i.hash == target.hash for i in images)
        outcome.version_after = await session.firmware_revision()
        if staged:
            raise _Failed(
                "reverted",
                f"image {target.version} did not boot: the bootloader restored "
                f"{outcome.running_version}",
            )
        raise _Failed(
            "failed", f"the bootloader refused image {target.version} (signature or integrity)"
        )
    if not active.confirmed:
        if health_check is not None and not await health_check():
            await _reset(session)  # unconfirmed: MCUboot reverts it at this reset
            await session.connect_within(reboot_timeout)
            images = await session.images()
            running = next((i for i in images if i.active), None)
            outcome.running_version = running.version if running is not None else None
            outcome.version_after = await session.firmware_revision()
            raise _Failed("reverted", f"image {target.version} failed the health check")
        client = await session.connect()
        response = await client.request(ImageStatesWrite(hash=target.hash, confirm=True))
        if not success(response):
            raise _Failed("failed", f"confirm refused: {_refusal(response)}")
    outcome.version_after = await session.firmware_revision()
    outcome.state = "confirmed"
    report("confirmed", 100)


__all__ = [
    "DeviceSituation",
    "FirmwareImage",
    "FirmwareOutcome",
    "FirmwareProgress",
    "ProgressCallback",
    "ProgressState",
    "SafetyPolicy",
    "safe_to_update",
    "update_device_firmware",
]
