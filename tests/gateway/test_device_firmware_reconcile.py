"""The real hub gateway acting on the desired device firmware of its retained
configuration: the image comes verified from a TUF repository over HTTP, goes to a
simulated cuff (SMP and MCUboot on the simulated radio) when it is safe, the progress is
in the hub status, reading sessions stop during the update and resume after it, a
transient refusal is retried after a backoff, and a hub restarted mid-update resumes it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.mcuboot import BootOutcome, SimulatedMCUboot
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from gateway.update.device_firmware import FirmwareOutcome
from gateway.update.device_reconcile import UpdateTimings
from hemhub.contract import (
    AllowedDevice,
    DesiredFirmware,
    DeviceProfile,
    HubConfig,
    topic_config,
    topic_status,
)
from tests.factories import unique_hub_id
from tests.firmware_helpers import DeviceImages, device_images
from tests.gateway.test_hub_update import StatusWatcher
from tests.gateway.test_provisioning import eventually, publish_retained
from tests.ota_helpers import http_server

CUFF = "C4:21:00:00:00:31"
CAMPAIGN = "6c2d3e4f-5061-4b72-8c83-9d8e7f6a5b41"
MODEL = "BPM-SIM-1"
pytestmark = pytest.mark.timeout(120)

FAST = UpdateTimings(connect_timeout=10.0, reboot_timeout=10.0, retry_start_s=0.5)


@dataclass
class Home:
    hub: str
    images: DeviceImages
    url: str
    radio: SimulatedRadio
    cuff: SimulatedCuff
    watcher: StatusWatcher
    tmp: Path
    mqtt_url: str

    def ask(self, version: str, target: str) -> None:
        config = HubConfig(
            hub_id=self.hub,
            version=1,
            issued_at=datetime.now(UTC),
            devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE)],
            firmware=[
                DesiredFirmware(address=CUFF, version=version, target=target, campaign_id=CAMPAIGN)
            ],
        )
        publish_retained(self.mqtt_url, topic_config(self.hub), config.model_dump_json().encode())

    def gateway(self) -> HubGateway:
        config = GatewayConfig(
            hub_id=self.hub,
            mqtt_url=self.mqtt_url,
            data_dir=self.tmp / "hub",
            devices=[],
            update_repository_url=self.url,
            update_trusted_root=self.images.trusted_root(self.tmp / "image-root"),
        )
        return HubGateway(config, self.radio.bleak_backends(), firmware_timings=FAST)

    def firmware_states(self) -> list[str]:
        return [
            d.firmware_update.state
            for s in self.watcher.seen
            for d in s.devices
            if d.address == CUFF and d.firmware_update is not None
        ]


@pytest.fixture
def images(tmp_path: Path) -> DeviceImages:
    return device_images(tmp_path / "vendor")


@pytest.fixture
def repo_url(images: DeviceImages) -> Iterator[str]:
    with http_server(images.signed.repo.path) as url:
        yield url


@pytest.fixture
async def home(
    tmp_path: Path, mqtt_url: str, images: DeviceImages, repo_url: str
) -> AsyncIterator[Home]:
    hub = unique_hub_id("dfw")
    watcher = StatusWatcher(mqtt_url, hub)
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(
                radio,
                address=CUFF,
                serial="DFW-1",
                seed=5,
                mcuboot=SimulatedMCUboot(images.key, images.image(MODEL, "1.0.0")),
            )
            await cuff.start()
            yield Home(hub, images, repo_url, radio, cuff, watcher, tmp_path, mqtt_url)
    finally:
        watcher.close()
        publish_retained(mqtt_url, topic_config(hub), b"")
        publish_retained(mqtt_url, topic_status(hub), b"")


async def configured(gateway: HubGateway) -> None:
    async def desired() -> bool:
        return gateway.firmware is not None and CUFF in gateway.firmware.desired

    await eventually(desired, 30)


async def read(gateway: HubGateway, count: int) -> None:
    """Until the hub has `count` readings of the cuff and the session ended (the cuff
    went back to sleep: its next reading makes it advertise again)."""

    async def readings() -> bool:
        return CUFF in gateway.devices and gateway.devices[CUFF].readings >= count

    await eventually(readings, 30)

    async def asleep() -> bool:
        return not gateway.session_running(CUFF)

    await eventually(asleep, 30)


async def settled(gateway: HubGateway, state: str) -> None:
    async def reached() -> bool:
        p = gateway.firmware.progress(CUFF) if gateway.firmware else None
        return p is not None and p.state == state and not gateway.firmware.busy(CUFF)  # type: ignore[union-attr]

    await eventually(reached, 60)


async def test_the_hub_updates_its_cuff_and_the_readings_go_on(home: Home) -> None:
    target = home.images.publish(MODEL, "1.1.0")
    home.ask("1.1.0", target)
    gateway = home.gateway()
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await configured(gateway)
        # The first session tells the hub the battery level: only then is an update safe.
        await home.cuff.measure()
        await read(gateway, 1)
        assert gateway.firmware is not None and gateway.firmware.progress(CUFF) is None
        # The next advertisement (a new reading waits on the cuff) goes to the update;
        # the reading is delivered by the session after it.
        await home.cuff.measure()
        await settled(gateway, "confirmed")
        assert home.cuff.firmware == "1.1.0"
        mcuboot = home.cuff.mcuboot
        assert mcuboot is not None and mcuboot.primary.confirmed
        assert mcuboot.boots == [BootOutcome.SWAPPED]
        await read(gateway, 2)
        await home.cuff.measure()
        await read(gateway, 3)
        assert gateway.devices[CUFF].firmware == "1.1.0"

        async def reported() -> bool:
            return "confirmed" in home.firmware_states()

        await eventually(reported)
    finally:
        stop.set()
        await task
    states = home.firmware_states()
    # Statuses are coalesced: a quick step may be reported only by the ones after it.
    assert states[-1] == "confirmed" and set(states) <= {
        "downloading",
        "installing",
        "confirming",
        "confirmed",
    }
    last = [s for s in home.watcher.seen if s.online][-1]
    cuff = next(d for d in last.devices if d.address == CUFF)
    assert cuff.firmware == "1.1.0" and cuff.firmware_update is not None
    assert (cuff.firmware_update.version, cuff.firmware_update.campaign_id) == ("1.1.0", CAMPAIGN)
    # The progress is kept on disk for the next start.
    saved = json.loads((home.tmp / "hub" / "device-firmware.json").read_text())
    assert saved[CUFF]["progress"]["state"] == "confirmed"


async def test_an_upload_the_cuff_refuses_is_tried_again_after_a_backoff(home: Home) -> None:
    target = home.images.publish(MODEL, "1.1.0")
    home.ask("1.1.0", target)
    gateway = home.gateway()
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await configured(gateway)
        await home.cuff.measure()
        await read(gateway, 1)
        # The hub saw 90 %; the battery runs down before the next use: the cuff refuses.
        home.cuff.battery_level = 10
        await home.cuff.measure()

        async def refused() -> bool:
            p = gateway.firmware.progress(CUFF) if gateway.firmware else None
            return p is not None and p.reason is not None and "attempt 1 failed" in p.reason

        await eventually(refused, 30)
        progress = gateway.firmware.progress(CUFF) if gateway.firmware else None
        assert progress is not None and progress.state == "downloading"
        assert progress.reason is not None and "battery low" in progress.reason
        assert home.cuff.firmware == "1.0.0"
        # Not final: the reading session read the low battery, so the hub now waits (unsafe)
        await read(gateway, 2)
        assert gateway.devices[CUFF].battery_level == 10
        await home.cuff.set_battery_level(80)
        await home.cuff.measure()  # the session reads 80 %
        await read(gateway, 3)
        await home.cuff.measure()  # the next advertisement: safe, past the backoff
        await settled(gateway, "confirmed")
        assert home.cuff.firmware == "1.1.0"
        await read(gateway, 4)
    finally:
        stop.set()
        await task


async def test_a_hub_restarted_mid_update_resumes_and_confirms(home: Home) -> None:
    target = home.images.publish(MODEL, "1.1.0")
    home.ask("1.1.0", target)
    first = home.gateway()
    assert first.firmware is not None
    reconciler = first.firmware
    report = reconciler.on_progress

    def kill_at_confirming() -> None:
        if report is not None:
            report()
        p = reconciler.progress(CUFF)
        if p is not None and p.state == "confirming":
            # Killed while the cuff reboots into the new image, before the hub confirms it.
            asyncio.get_running_loop().create_task(reconciler.stop())

    reconciler.on_progress = kill_at_confirming
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    try:
        await configured(first)
        await home.cuff.measure()
        await read(first, 1)
        await home.cuff.measure()

        async def stopped_confirming() -> bool:
            p = reconciler.progress(CUFF)
            return p is not None and p.state == "confirming" and not reconciler.busy(CUFF)

        await eventually(stopped_confirming, 60)
    finally:
        stop.set()
        await task
    mcuboot = home.cuff.mcuboot
    assert mcuboot is not None and mcuboot.testing and home.cuff.firmware == "1.1.0"

    outcomes: list[FirmwareOutcome] = []
    second = home.gateway()
    assert second.firmware is not None
    assert second.firmware.progress(CUFF) is not None
    finished = second.firmware.on_finished

    def record(address: str, outcome: FirmwareOutcome) -> None:
        outcomes.append(outcome)
        if finished is not None:
            finished(address, outcome)

    second.firmware.on_finished = record
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    try:
        await home.cuff.start_advertising()  # still awake after its reboot
        await settled(second, "confirmed")
    finally:
        stop.set()
        await task
    # Resumed: the image already ran, so the hub only confirmed it (nothing uploaded).
    assert [(o.state, o.upload_attempts) for o in outcomes] == [("confirmed", 0)]
    assert mcuboot.primary.confirmed and not mcuboot.testing
    assert mcuboot.boots == [BootOutcome.SWAPPED]
