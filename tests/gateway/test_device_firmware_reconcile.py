"""The real hub gateway acting on the desired device firmware of its retained
configuration: the image comes verified from a TUF repository over HTTP, goes to a
simulated cuff (SMP and MCUboot on the simulated radio) when it is safe, the progress is
in the hub status, reading sessions stop during the update and resume after it, a
transient refusal is retried after a backoff, and a hub restarted mid-update resumes it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device_drivers.codecs.dispenser import DoseSchedule, ScheduledDose
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.dispenser import SimulatedDispenser
from device_drivers.simulation.firmware_images import generate_key
from device_drivers.simulation.mcuboot import BootOutcome, SimulatedMCUboot
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig, UpdateSettings
from gateway.hub import HubGateway
from gateway.update.device_firmware import FirmwareOutcome
from gateway.update.device_reconcile import UpdateTimings, next_dose
from hemhub.contract import (
    AllowedDevice,
    DesiredFirmware,
    DeviceProfile,
    HubConfig,
    UpdateProgress,
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
            # No slot on trial there: the hub runs no software update here.
            slots_root=self.tmp / "slots",
            update=UpdateSettings(
                repository_url=self.url,
                trusted_root=self.images.trusted_root(self.tmp / "image-root"),
            ),
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


@asynccontextmanager
async def running(gateway: HubGateway, address: str = CUFF) -> AsyncIterator[HubGateway]:
    """The gateway running, with the configuration's desired firmware of `address`."""
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await configured(gateway, address)
        yield gateway
    finally:
        stop.set()
        await task


async def configured(gateway: HubGateway, address: str) -> None:
    async def desired() -> bool:
        return gateway.firmware is not None and address in gateway.firmware.desired

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
    async with running(home.gateway()) as gateway:
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
    async with running(home.gateway()) as gateway:
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


@pytest.mark.parametrize("step", ["downloading", "installing", "confirming"])
async def test_a_hub_stopped_at_each_step_resumes_the_update(home: Home, step: str) -> None:
    """The hub is stopped at a step (its update task cancelled at once, as a kill would
    leave it): the next start picks up from the state on disk without starting over."""
    target = home.images.publish(MODEL, "1.1.0")
    home.ask("1.1.0", target)
    first = home.gateway()
    reconciler = first.firmware
    assert reconciler is not None
    report = reconciler.on_progress
    stop = asyncio.Event()

    def kill_at_step() -> None:
        if report is not None:
            report()
        p = reconciler.progress(CUFF)
        if p is not None and p.state == step and (step != "downloading" or (p.percent or 0) > 0):
            stop.set()
            asyncio.get_running_loop().create_task(reconciler.stop())

    reconciler.on_progress = kill_at_step
    task = asyncio.create_task(first.run(stop))
    try:
        await configured(first, CUFF)
        await home.cuff.measure()
        await read(first, 1)
        await home.cuff.measure()
        await asyncio.wait_for(stop.wait(), 60)
    finally:
        stop.set()
        await task
    stopped = reconciler.progress(CUFF)
    assert stopped is not None and stopped.state == step
    mcuboot, smp = home.cuff.mcuboot, home.cuff.smp
    assert mcuboot is not None and smp is not None
    assert home.cuff.firmware == ("1.1.0" if step == "confirming" else "1.0.0")

    outcomes: list[FirmwareOutcome] = []
    second = home.gateway()
    assert second.firmware is not None and second.firmware.progress(CUFF) == stopped
    finished = second.firmware.on_finished

    def record(address: str, outcome: FirmwareOutcome) -> None:
        outcomes.append(outcome)
        if finished is not None:
            finished(address, outcome)

    second.firmware.on_finished = record
    async with running(second):
        if step == "downloading":
            # Not past the upload: safe_to_update again, so the battery first (a session).
            await read(second, 1)
            await home.cuff.measure()
        await settled(second, "confirmed")
    assert [o.state for o in outcomes] == ["confirmed"]
    if step == "downloading":
        # The upload went on from where the cuff had got to, not from the start.
        assert outcomes[0].upload_attempts == 1 and smp.resumed_at and smp.resumed_at[0] > 0
    else:
        assert outcomes[0].upload_attempts == 0  # nothing uploaded again
    assert mcuboot.primary.confirmed and not mcuboot.testing
    assert mcuboot.boots == [BootOutcome.SWAPPED] and home.cuff.firmware == "1.1.0"


async def update_at_the_second_use(home: Home, gateway: HubGateway, ends: str) -> UpdateProgress:
    """The first use tells the hub the battery; the second use's advertisement goes to
    the update, which ends `ends`; its progress."""
    await home.cuff.measure()
    await read(gateway, 1)
    await home.cuff.measure()
    await settled(gateway, ends)
    progress = gateway.firmware.progress(CUFF) if gateway.firmware else None
    assert progress is not None
    return progress


async def test_an_image_altered_on_the_server_is_refused_and_never_reaches_the_cuff(
    home: Home,
) -> None:
    target = home.images.publish(MODEL, "1.1.0")
    stored = next((home.images.signed.repo.path / "targets").glob(f"*.{target}"))
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF  # a mirror (or an attacker) serves other bytes than were signed
    stored.write_bytes(bytes(data))
    home.ask("1.1.0", target)
    async with running(home.gateway()) as gateway:
        progress = await update_at_the_second_use(home, gateway, "failed")
        assert progress.reason is not None and progress.reason.startswith("refused: altered")
        assert home.cuff.mcuboot is not None and home.cuff.mcuboot.secondary is None
        # Final: not tried again; the readings go on.
        await read(gateway, 2)
        await home.cuff.measure()
        await read(gateway, 3)
        assert gateway.firmware is not None and gateway.firmware.pending(CUFF) is None
    assert home.cuff.firmware == "1.0.0"


async def test_an_image_signed_with_another_key_is_refused_by_the_bootloader(
    home: Home, tmp_path: Path
) -> None:
    foreign = generate_key(tmp_path / "attacker.pem")
    target = home.images.publish(
        MODEL, "1.1.0", data=home.images.image(MODEL, "1.1.0", key=foreign)
    )
    home.ask("1.1.0", target)
    async with running(home.gateway()) as gateway:
        progress = await update_at_the_second_use(home, gateway, "failed")
        assert progress.reason == "the bootloader refused image 1.1.0 (signature or integrity)"
        await read(gateway, 2)
    assert home.cuff.firmware == "1.0.0"
    assert home.cuff.mcuboot is not None and home.cuff.mcuboot.primary.confirmed


def test_the_next_dose_is_the_first_not_past_its_late_time() -> None:
    schedule = DoseSchedule(
        late_after_minutes=30,
        missed_after_minutes=90,
        doses=(
            ScheduledDose(dose_id=1, at=dtime(8, 0)),
            ScheduledDose(dose_id=2, at=dtime(21, 30)),
        ),
    )
    zone = ZoneInfo("Europe/Stockholm")
    at = datetime(2026, 12, 6, 8, 20, tzinfo=zone)  # the 08:00 dose may not be taken yet
    assert next_dose(schedule, at, zone) == datetime(2026, 12, 6, 8, 0, tzinfo=zone)
    at = datetime(2026, 12, 6, 8, 31, tzinfo=zone)
    assert next_dose(schedule, at, zone) == datetime(2026, 12, 6, 21, 30, tzinfo=zone)
    at = datetime(2026, 12, 6, 23, 0, tzinfo=zone)  # tomorrow morning's
    assert next_dose(schedule, at, zone) == datetime(2026, 12, 7, 8, 0, tzinfo=zone)
    empty = DoseSchedule(late_after_minutes=30, missed_after_minutes=90, doses=())
    assert next_dose(empty, at, zone) is None


DISPENSER = "C4:21:00:00:00:32"


@pytest.mark.parametrize("dose_in_minutes", [30, 300])
async def test_a_dispenser_is_updated_only_when_no_dose_is_due_within_the_hour(
    tmp_path: Path,
    mqtt_url: str,
    images: DeviceImages,
    repo_url: str,
    dose_in_minutes: int,
) -> None:
    hub = unique_hub_id("dfd")
    model = SimulatedDispenser.MODEL
    target = images.publish(model, "3.1.0")
    due = (datetime.now(UTC) + timedelta(minutes=dose_in_minutes)).replace(second=0, microsecond=0)
    schedule = DoseSchedule(
        late_after_minutes=30,
        missed_after_minutes=90,
        doses=(ScheduledDose(dose_id=1, at=due.time().replace(tzinfo=None)),),
    )
    config = HubConfig(
        hub_id=hub,
        version=1,
        issued_at=datetime.now(UTC),
        devices=[AllowedDevice(address=DISPENSER, profile=DeviceProfile.DISPENSER, bond=True)],
        firmware=[
            DesiredFirmware(address=DISPENSER, version="3.1.0", target=target, campaign_id=CAMPAIGN)
        ],
    )
    publish_retained(mqtt_url, topic_config(hub), config.model_dump_json().encode())
    try:
        async with SimulatedRadio() as radio:
            dispenser = SimulatedDispenser(
                radio,
                address=DISPENSER,
                serial="DFD-1",
                schedule=schedule,
                mcuboot=SimulatedMCUboot(images.key, images.image(model, "3.0.1")),
            )
            await dispenser.start()
            await dispenser.start_advertising()  # mains powered: always on the air
            gateway = HubGateway(
                GatewayConfig(
                    hub_id=hub,
                    mqtt_url=mqtt_url,
                    data_dir=tmp_path / "hub",
                    timezone="UTC",  # the dispenser's schedule is in UTC here
                    slots_root=tmp_path / "slots",
                    update=UpdateSettings(
                        repository_url=repo_url,
                        trusted_root=images.trusted_root(tmp_path / "image-root"),
                    ),
                ),
                radio.bleak_backends(),
                firmware_timings=FAST,
            )
            async with running(gateway, DISPENSER):
                reconciler = gateway.firmware
                assert reconciler is not None
                if dose_in_minutes == 30:

                    async def waits() -> bool:
                        return reconciler.waiting.get(DISPENSER, "").startswith("dose due at")

                    await eventually(waits, 30)
                    assert reconciler.progress(DISPENSER) is None
                    # Left alone until the dose passed; its sessions go on meanwhile.
                    readings = gateway.devices[DISPENSER].readings
                    await dispenser.run_dose(1, "taken")

                    async def read_on() -> bool:
                        return gateway.devices[DISPENSER].readings > readings

                    await eventually(read_on, 30)
                    assert reconciler.progress(DISPENSER) is None
                    assert dispenser.firmware == "3.0.1"
                else:

                    async def confirmed() -> bool:
                        p = reconciler.progress(DISPENSER)
                        return p is not None and p.state == "confirmed"

                    await eventually(confirmed, 60)
                    assert dispenser.firmware == "3.1.0"
    finally:
        publish_retained(mqtt_url, topic_config(hub), b"")
        publish_retained(mqtt_url, topic_status(hub), b"")
