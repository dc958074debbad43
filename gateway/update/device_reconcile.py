"""The hub's device firmware reconciler: the retained configuration's `firmware` (a rollout
campaign's desired image per device) against what each device runs.

The hub calls `claim` at every advertisement of an allowed device. When the device has a
desired image it does not run yet, no other device of the hub is being updated, no
session is running with it and `device_safety.safe_to_update` says yes (battery known and
above the floor, no dose of a dispenser due, the resident keeps a working device of each
kind), the reconciler takes the device away from the reading sessions and, in a task of
its own:

1. downloading: fetches the signed image through the update repository (`FirmwareImages`:
   TUF-verified, gateway/update/fetch.py) and reads its version and hash;
2. runs `device_firmware.update_device_firmware` (upload, test, reset, confirm), whose
   progress (downloading with percent, installing, confirming) goes to the hub status
   as `DeviceHealth.firmware_update`;
3. confirmed / reverted (MCUboot restored the previous image) / failed (the bootloader
   refused it, the repository refused it): final for this campaign and version, never
   tried again (HMC decides: roll back, or a new campaign); a transient failure (the
   link, a device that went away, a refusal on a busy device, an unreachable repository)
   is tried again at the device's next advertisement after a backoff, up to
   `max_attempts`, and only then reported failed.

Reading sessions with the device stop while it updates and resume after it. Whatever it
held when the update started stays in its memory (MCUboot swaps the application, not the
stored readings) and is read by the session after the update.

Where each update stands is written atomically to a file before each step, so a hub
restarted mid-update (its own update, a crash, a power cut) resumes it at the device's
next advertisement: `update_device_firmware` is idempotent (an image already running is
only confirmed, one already in the secondary slot not uploaded again, a partial upload
resumes at the device's offset).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as dtime
from pathlib import Path
from typing import Any, Protocol

from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from pydantic import ValidationError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.dispenser import DoseSchedule
from device_drivers.drivers.dispenser import update_schedule
from gateway.config import UpdateSettings
from gateway.failpoints import failpoint
from gateway.provisioning import write_atomic
from gateway.update.device_firmware import (
    FirmwareImage,
    FirmwareOutcome,
    FirmwareProgress,
    update_device_firmware,
)
from gateway.update.device_safety import (
    DEFAULT_POLICY,
    DISPENSER,
    DeviceSituation,
    SafetyPolicy,
    safe_to_update,
)
from gateway.update.fetch import UpdateRefused, fetch_verified
from gateway.update.reconcile import progress_towards
from hemhub.contract import DesiredFirmware, UpdateProgress, UpdateState

log = logging.getLogger(__name__)

#: States of an update that is under way (resumed after a restart).
IN_FLIGHT = frozenset({UpdateState.DOWNLOADING, UpdateState.INSTALLING, UpdateState.CONFIRMING})
#: States of an update whose upload is done (the image is marked for test or runs).
PAST_UPLOAD = frozenset({UpdateState.INSTALLING, UpdateState.CONFIRMING})
#: States after which the hub does not try the same campaign's version again.
FINAL = frozenset({UpdateState.CONFIRMED, UpdateState.FAILED, UpdateState.REVERTED})


class ImageUnavailable(Exception):
    """The image could not be had; `final`: it never will be (a refusal), else try later."""

    def __init__(self, reason: str, *, final: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final


class FirmwareImages(Protocol):
    """Where the hub gets a device image from (blocking: run in a thread)."""

    def fetch(self, target: str) -> Path:
        """The verified image file of `target`; raise ImageUnavailable otherwise."""


class TufFirmwareImages:
    """Device images from the hub's update repository (`update` in hub.toml), verified by
    TUF's client like the hub's own bundles (`fetch_verified`), with trusted metadata of
    their own (seeded from the image's trusted root.json) so that the software agent and
    this never write the same files at once."""

    def __init__(self, settings: UpdateSettings, work_dir: Path) -> None:
        self.settings = settings
        self.metadata_dir = work_dir / "metadata"
        self.images_dir = work_dir / "images"

    def fetch(self, target: str) -> Path:
        root = self.metadata_dir / "root.json"
        if not root.exists() and self.settings.trusted_root.is_file():
            write_atomic(root, self.settings.trusted_root.read_bytes())
        try:
            # No installed_version: going back to an older image is what a campaign's
            # rollback asks for; the signed metadata still stops rollback and freeze.
            return fetch_verified(
                self.settings.repository_url,
                self.metadata_dir,
                target,
                self.images_dir,
                targets_url=self.settings.targets_url,
            )
        except UpdateRefused as exc:
            raise ImageUnavailable(
                f"refused: {exc.reason}: {exc.message}", final=exc.reason != "unreachable"
            ) from exc


@dataclass
class DeviceUpdate:
    """One device's update towards its desired firmware, as kept on disk."""

    progress: UpdateProgress
    target: str
    #: Attempts that ended in a transient failure (the next one waits retry_at).
    attempts: int = 0
    retry_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "progress": json.loads(self.progress.model_dump_json(exclude_none=True)),
            "target": self.target,
            "attempts": self.attempts,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DeviceUpdate:
        retry_at = value.get("retry_at")
        return cls(
            progress=UpdateProgress.model_validate_json(json.dumps(value["progress"])),
            target=str(value["target"]),
            attempts=int(value.get("attempts", 0)),
            retry_at=datetime.fromisoformat(retry_at) if retry_at else None,
        )


@dataclass(frozen=True)
class UpdateTimings:
    """Timeouts and the retry backoff of the device updates."""

    connect_timeout: float = 15.0
    reboot_timeout: float = 60.0
    retry_start_s: float = 60.0
    retry_max_s: float = 3600.0
    max_attempts: int = 5


def _now() -> datetime:
    return datetime.now(UTC)


def next_dose(schedule: DoseSchedule, now: datetime, zone: tzinfo) -> datetime | None:
    """The dispenser's next dose that may still be waiting: the first scheduled time not
    earlier than `late_after_minutes` ago (a dose due a moment ago may not be taken yet)."""
    local = now.astimezone(zone)
    since = now - timedelta(minutes=schedule.late_after_minutes)
    times: list[datetime] = []
    for day in (local.date() - timedelta(days=1), local.date(), local.date() + timedelta(days=1)):
        times.extend(_at(day, d.at, zone) for d in schedule.doses)
    upcoming = sorted(t for t in times if t >= since)
    return upcoming[0] if upcoming else None


def _at(day: date, at: dtime, zone: tzinfo) -> datetime:
    return datetime.combine(day, at).replace(tzinfo=zone)


class DeviceFirmwareReconciler:
    """One hub's device firmware updates; `progress(address)` is what its status reports."""

    def __init__(
        self,
        images: FirmwareImages,
        state_path: Path,
        *,
        backends: BleakBackends,
        zone: tzinfo,
        slots: asyncio.Semaphore,
        on_progress: Callable[[], None] | None = None,
        on_finished: Callable[[str, FirmwareOutcome], None] | None = None,
        policy: SafetyPolicy = DEFAULT_POLICY,
        timings: UpdateTimings = UpdateTimings(),
    ) -> None:
        self.images = images
        self.state_path = state_path
        self.backends = backends
        self.zone = zone
        self.slots = slots
        self.on_progress = on_progress
        self.on_finished = on_finished
        self.policy = policy
        self.timings = timings
        self.updates: dict[str, DeviceUpdate] = self._load()
        self.desired: dict[str, DesiredFirmware] = {}
        #: The device being updated now (one at a time: the adapter's slots are few).
        self.updating: str | None = None
        self._task: asyncio.Task[None] | None = None
        #: Why a device with an update due is not updated now (`safe_to_update`'s reason,
        #: a dose due), and until when a dispenser is left alone (its dose passed).
        self.waiting: dict[str, str] = {}
        self._hold_until: dict[str, datetime] = {}

    # -- state on disk -------------------------------------------------------------------

    def _load(self) -> dict[str, DeviceUpdate]:
        try:
            raw = json.loads(self.state_path.read_bytes())
            return {a: DeviceUpdate.from_json(v) for a, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("ignoring damaged device firmware state %s: %s", self.state_path, exc)
            return {}

    def _save(self) -> None:
        payload = {a: u.to_json() for a, u in sorted(self.updates.items())}
        write_atomic(self.state_path, json.dumps(payload).encode())

    def _set(
        self,
        address: str,
        desired: DesiredFirmware,
        state: UpdateState,
        *,
        percent: int | None = None,
        reason: str | None = None,
    ) -> None:
        current = self.updates.get(address)
        same = current is not None and self._same(current, desired)
        update = DeviceUpdate(
            progress=progress_towards(desired, state, percent=percent, reason=reason),
            target=desired.target,
            attempts=current.attempts if same and current else 0,
            retry_at=current.retry_at if same and current else None,
        )
        self.updates[address] = update
        self._save()
        if state in IN_FLIGHT and (state != UpdateState.DOWNLOADING or (percent or 0) > 0):
            failpoint(f"device_firmware.{state.value}")  # a kill test's step (mid-upload)
        if self.on_progress is not None:
            self.on_progress()

    @staticmethod
    def _same(update: DeviceUpdate, desired: DesiredFirmware) -> bool:
        p = update.progress
        return p.campaign_id == desired.campaign_id and p.version == desired.version

    # -- what the hub asks -----------------------------------------------------------------

    def set_desired(self, firmware: Sequence[DesiredFirmware] | None) -> None:
        """The configuration's desired firmware (None or empty: none)."""
        self.desired = {f.address: f for f in firmware or []}

    def progress(self, address: str) -> UpdateProgress | None:
        update = self.updates.get(address.upper())
        return update.progress if update is not None else None

    def confirmed_version(self, address: str) -> str | None:
        """The version the device was last confirmed to run by an update (the hub knows it
        before its first session after a restart)."""
        p = self.progress(address)
        return p.version if p is not None and p.state == UpdateState.CONFIRMED else None

    def busy(self, address: str) -> bool:
        """An update has the device: no reading session with it."""
        return self.updating == address.upper()

    def pending(self, address: str) -> DesiredFirmware | None:
        """The desired firmware of the device if an update of it is still to be done."""
        desired = self.desired.get(address.upper())
        if desired is None:
            return None
        update = self.updates.get(desired.address)
        if update is not None and self._same(update, desired):
            if update.progress.state in FINAL:
                return None
        return desired

    def in_flight(self, address: str) -> bool:
        """An update of the device started and neither confirmed, failed nor reverted."""
        update = self.updates.get(address.upper())
        return update is not None and update.progress.state in IN_FLIGHT

    def claim(
        self,
        device: BLEDevice,
        situation: DeviceSituation,
        household: Sequence[DeviceSituation],
        depends_on: Collection[str],
        *,
        bond: bool = False,
    ) -> bool:
        """At an advertisement: start the device's update if one is due and safe; True
        when it did (the hub then starts no reading session with it). `bond`: the device
        is read over an encrypted link (its dose schedule, a dispenser's)."""
        address = device.address.upper()
        desired = self.pending(address)
        if desired is None or self.updating is not None:
            return False
        update = self.updates.get(address)
        now = _now()
        resuming = update is not None and self._same(update, desired)
        if resuming and update is not None and update.retry_at and now < update.retry_at:
            return False
        if now < self._hold_until.get(address, now):
            return False
        # The device's own unfinished update is this one, resumed, or one that the desired
        # firmware replaced (a rollback, a new campaign): the hub runs one update of a
        # device at a time, so none is pending under this one (device_safety's last rule
        # is about a second update on top of one; read literally here it would keep a
        # replaced update's device from ever being updated again).
        situation = replace(situation, update_pending=False)
        ok, reason = safe_to_update(
            situation, now=now, household=household, depends_on=depends_on, policy=self.policy
        )
        if resuming and update is not None and update.progress.state in PAST_UPLOAD:
            # The image is on the device (swapped in, or marked for it): finishing is what
            # leaves it in a known state; it was judged safe when it started.
            ok = not situation.measuring
        if not ok:
            self._wait(address, desired, reason)
            return False
        self.waiting.pop(address, None)
        self.updating = address
        self._task = asyncio.get_running_loop().create_task(
            self._run(device, desired, situation.kind, bond)
        )
        return True

    def _wait(self, address: str, desired: DesiredFirmware, reason: str) -> None:
        if self.waiting.get(address) != reason:
            log.info("firmware %s for %s waits: %s", desired.version, address, reason)
        self.waiting[address] = reason

    async def stop(self) -> None:
        """Cancel an update under way (the hub stops); its state on disk resumes it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.updating = None

    # -- one update --------------------------------------------------------------------------

    async def _run(
        self, device: BLEDevice, desired: DesiredFirmware, kind: str, bond: bool
    ) -> None:
        address = desired.address
        try:
            async with self.slots:
                await self._update(device, desired, kind, bond)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an update must never take the hub down
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Stopping, and a library turned the cancellation into its own error
                # (smpclient's transport): the state on disk resumes the update.
                raise asyncio.CancelledError from exc
            log.exception("firmware update of %s failed", address)
            self._retry_later(desired, f"{type(exc).__name__}: {exc}")
        finally:
            if self.updating == address:
                self.updating = None

    async def _update(
        self, device: BLEDevice, desired: DesiredFirmware, kind: str, bond: bool
    ) -> None:
        address = desired.address
        update = self.updates.get(address)
        state = update.progress.state if update and self._same(update, desired) else None
        if kind == DISPENSER:
            due = await self._dose_due(device, bond)
            if due is not None:
                # Its next dose must pass first (a dispenser advertises all the time:
                # no connection to read its schedule at each advertisement meanwhile).
                reason, self._hold_until[address] = due
                self._wait(address, desired, reason)
                return
        if state not in IN_FLIGHT:
            self._set(address, desired, UpdateState.DOWNLOADING, percent=0)
        try:
            path = await asyncio.to_thread(self.images.fetch, desired.target)
            image = await asyncio.to_thread(FirmwareImage.from_file, path)
        except ImageUnavailable as exc:
            if exc.final:
                self._finish(desired, UpdateState.FAILED, exc.reason)
            else:
                self._retry_later(desired, exc.reason)
            return
        except ValueError as exc:  # not an MCUboot image
            self._finish(desired, UpdateState.FAILED, f"invalid image: {exc}")
            return
        if image.version != desired.version:
            self._finish(
                desired,
                UpdateState.FAILED,
                f"invalid image: {desired.target} is version {image.version},"
                f" not {desired.version}",
            )
            return
        last = [-10]

        def report(p: FirmwareProgress) -> None:
            if p.state in ("failed", "reverted", "confirmed"):
                return  # decided below from the outcome
            if p.state == "downloading":
                percent = p.percent or 0
                if percent < last[0] + 10 and percent != 100:
                    return  # every 10 % at most
                last[0] = percent
            self._set(address, desired, UpdateState(p.state), percent=p.percent)

        outcome = await update_device_firmware(
            address,
            image,
            backends=self.backends,
            progress=report,
            connect_timeout=self.timings.connect_timeout,
            reboot_timeout=self.timings.reboot_timeout,
        )
        if self.on_finished is not None:
            self.on_finished(address, outcome)
        if outcome.state == "confirmed":
            self._finish(desired, UpdateState.CONFIRMED, None)
        elif outcome.state == "reverted" or _final_failure(outcome):
            self._finish(desired, UpdateState(outcome.state), outcome.reason or outcome.state)
        else:
            self._retry_later(desired, outcome.reason or "failed")

    async def _dose_due(self, device: BLEDevice, bond: bool) -> tuple[str, datetime] | None:
        """Why a dispenser must not be updated now (a dose due, or a schedule it could not
        read) and until when, else None."""
        now = _now()
        try:
            schedule = await update_schedule(
                device,
                backends=self.backends,
                connect_timeout=self.timings.connect_timeout,
                attempts=1,
                bond=bond,
            )
        except (BleakError, TimeoutError, ValueError) as exc:
            retry = now + timedelta(seconds=self.timings.retry_start_s)
            return f"dose schedule unreadable: {exc}", retry
        at = next_dose(schedule, now, self.zone)
        if at is not None and at <= now + self.policy.dose_window:
            return f"dose due at {at.isoformat()}", at + timedelta(
                minutes=schedule.late_after_minutes
            )
        return None

    def _finish(self, desired: DesiredFirmware, state: UpdateState, reason: str | None) -> None:
        self._set(desired.address, desired, state, reason=reason)
        log.log(
            logging.INFO if state == UpdateState.CONFIRMED else logging.WARNING,
            "firmware %s of %s: %s%s",
            desired.version,
            desired.address,
            state.value,
            f" ({reason})" if reason else "",
        )

    def _retry_later(self, desired: DesiredFirmware, reason: str) -> None:
        address = desired.address
        update = self.updates.get(address)
        attempts = (update.attempts if update and self._same(update, desired) else 0) + 1
        if attempts >= self.timings.max_attempts:
            self._finish(
                desired, UpdateState.FAILED, f"gave up after {attempts} attempts: {reason}"
            )
            return
        wait = min(self.timings.retry_max_s, self.timings.retry_start_s * 2 ** (attempts - 1))
        retry_at = _now() + timedelta(seconds=wait)
        state = update.progress.state if update and self._same(update, desired) else None
        self._set(
            address,
            desired,
            state if state in IN_FLIGHT else UpdateState.DOWNLOADING,
            reason=f"attempt {attempts} failed ({reason}); tried again after {wait:.0f} s",
        )
        saved = self.updates[address]
        saved.attempts, saved.retry_at = attempts, retry_at
        self._save()
        log.warning(
            "firmware %s of %s: retry in %.0f s: %s", desired.version, address, wait, reason
        )


def _final_failure(outcome: FirmwareOutcome) -> bool:
    """A failure that another attempt would not change: the bootloader refused the image
    (signature or integrity). The rest (a link that dropped, a device not back, a busy
    device, a corrupted transfer) may pass."""
    return (outcome.reason or "").startswith("the bootloader refused")


__all__ = [
    "DeviceFirmwareReconciler",
    "DeviceUpdate",
    "FirmwareImages",
    "ImageUnavailable",
    "TufFirmwareImages",
    "UpdateTimings",
    "next_dose",
]
