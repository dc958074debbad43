"""The device firmware reconciler's decisions without a radio: when it claims a device,
what it keeps on disk, when it gives up. The image source here refuses or is away (the
verified fetch and the radio are in test_device_firmware_reconcile.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bleak.backends.device import BLEDevice

from device_drivers.bleak_backends import BleakBackends
from gateway.update.device_reconcile import (
    DeviceFirmwareReconciler,
    DeviceUpdate,
    ImageUnavailable,
    UpdateTimings,
)
from gateway.update.device_safety import DeviceSituation
from hemhub.contract import DesiredFirmware, UpdateProgress, UpdateState
from tests.gateway.test_provisioning import eventually

CUFF = "C4:22:00:00:00:01"
OTHER_CUFF = "C4:22:00:00:00:02"
CAMPAIGN = "8e4f5061-7283-4d94-aea5-bfa09b8c7d63"


class ImagesAway:
    """An image source that refuses (final) or cannot be reached (tried again)."""

    def __init__(self, *, final: bool) -> None:
        self.final = final
        self.asked: list[str] = []

    def fetch(self, target: str) -> Path:
        self.asked.append(target)
        reason = "refused: not_found" if self.final else "refused: unreachable"
        raise ImageUnavailable(reason, final=self.final)


def reconciler(tmp_path: Path, images: ImagesAway, **timings: float) -> DeviceFirmwareReconciler:
    return DeviceFirmwareReconciler(
        images,
        tmp_path / "device-firmware.json",
        backends=BleakBackends(),
        zone=ZoneInfo("UTC"),
        slots=asyncio.Semaphore(1),
        timings=UpdateTimings(**timings),  # type: ignore[arg-type]
    )


def cuff(
    address: str = CUFF,
    battery: int | None = 80,
    *,
    measuring: bool = False,
    update_pending: bool = False,
) -> DeviceSituation:
    return DeviceSituation(
        address=address,
        kind="blood_pressure",
        resident="home",
        battery_level=battery,
        measuring=measuring,
        update_pending=update_pending,
    )


def desired(version: str) -> DesiredFirmware:
    return DesiredFirmware(
        address=CUFF, version=version, target=f"bpm-{version}.bin", campaign_id=CAMPAIGN
    )


async def settle(r: DeviceFirmwareReconciler) -> None:
    async def done() -> bool:
        return r.updating is None

    await eventually(done, 10)


async def test_an_update_waits_while_it_is_not_safe_and_says_why(tmp_path: Path) -> None:
    r = reconciler(tmp_path, ImagesAway(final=True))
    r.set_desired([desired("1.1.0")])
    device = BLEDevice(CUFF, None, None)
    assert not r.claim(device, cuff(battery=None), [], {"blood_pressure"})
    assert r.waiting[CUFF] == "battery level unknown"
    busy_other = cuff(OTHER_CUFF, update_pending=True)
    assert not r.claim(device, cuff(), [busy_other], {"blood_pressure"})
    assert r.waiting[CUFF] == "another blood_pressure device of the resident is being updated"
    assert not r.claim(device, cuff(measuring=True), [], {"blood_pressure"})
    assert r.waiting[CUFF] == "measurement in progress"
    assert r.progress(CUFF) is None


async def test_a_refused_image_fails_at_once_and_is_not_tried_again(tmp_path: Path) -> None:
    images = ImagesAway(final=True)
    r = reconciler(tmp_path, images)
    r.set_desired([desired("1.1.0")])
    device = BLEDevice(CUFF, None, None)
    assert r.claim(device, cuff(), [], {"blood_pressure"})
    assert r.busy(CUFF)
    await settle(r)
    progress = r.progress(CUFF)
    assert progress is not None and progress.state == UpdateState.FAILED
    assert progress.reason == "refused: not_found"
    assert r.pending(CUFF) is None
    assert not r.claim(device, cuff(), [], {"blood_pressure"})
    assert images.asked == ["bpm-1.1.0.bin"]


async def test_an_unreachable_repository_is_tried_again_then_given_up(tmp_path: Path) -> None:
    images = ImagesAway(final=False)
    r = reconciler(tmp_path, images, retry_start_s=0.0, max_attempts=3)
    r.set_desired([desired("1.1.0")])
    device = BLEDevice(CUFF, None, None)
    for attempt in (1, 2):
        assert r.claim(device, cuff(), [], {"blood_pressure"})
        await settle(r)
        progress = r.progress(CUFF)
        assert progress is not None and progress.state == UpdateState.DOWNLOADING
        assert progress.reason is not None
        assert progress.reason.startswith(f"attempt {attempt} failed (refused: unreachable)")
    assert r.claim(device, cuff(), [], {"blood_pressure"})
    await settle(r)
    progress = r.progress(CUFF)
    assert progress is not None and progress.state == UpdateState.FAILED
    assert progress.reason == "gave up after 3 attempts: refused: unreachable"
    assert len(images.asked) == 3


async def test_a_backoff_keeps_the_device_for_its_readings_meanwhile(tmp_path: Path) -> None:
    r = reconciler(tmp_path, ImagesAway(final=False), retry_start_s=3600.0)
    r.set_desired([desired("1.1.0")])
    device = BLEDevice(CUFF, None, None)
    assert r.claim(device, cuff(), [], {"blood_pressure"})
    await settle(r)
    # An hour to wait: the advertisements go to reading sessions.
    assert not r.claim(device, cuff(), [], {"blood_pressure"})
    saved = json.loads((tmp_path / "device-firmware.json").read_text())
    assert saved[CUFF]["attempts"] == 1 and saved[CUFF]["retry_at"] is not None
    # Kept across a restart.
    again = reconciler(tmp_path, ImagesAway(final=False), retry_start_s=3600.0)
    again.set_desired([desired("1.1.0")])
    assert not again.claim(device, cuff(), [], {"blood_pressure"})


async def test_an_update_replaced_by_a_rollback_does_not_block_the_device(
    tmp_path: Path,
) -> None:
    """1.1.0 was under way (in flight on disk) when HMC rolled the campaign back to 1.0.0:
    the rollback's update is not "a second update on top of one pending"."""
    stuck = DeviceUpdate(
        progress=UpdateProgress(
            campaign_id=CAMPAIGN,
            version="1.1.0",
            state=UpdateState.DOWNLOADING,
            percent=40,
            at=datetime.now(UTC),
        ),
        target="bpm-1.1.0.bin",
    )
    (tmp_path / "device-firmware.json").write_text(json.dumps({CUFF: stuck.to_json()}))
    images = ImagesAway(final=True)
    r = reconciler(tmp_path, images)
    assert r.in_flight(CUFF)
    r.set_desired([desired("1.0.0")])
    assert r.claim(BLEDevice(CUFF, None, None), cuff(), [], {"blood_pressure"})
    await settle(r)
    progress = r.progress(CUFF)
    assert progress is not None and (progress.version, progress.state) == ("1.0.0", "failed")
    assert images.asked == ["bpm-1.0.0.bin"]


def test_a_damaged_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "device-firmware.json").write_text('{"C4:22:00:00:00:01": {"progress": 1}')
    r = reconciler(tmp_path, ImagesAway(final=True))
    assert r.updates == {} and r.progress(CUFF) is None
