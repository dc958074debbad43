"""Device firmware campaigns end to end: the real broker and database, the real ingest
worker and hub link, the API's campaign runner (`api.campaign_runner.run_campaigns`),
and real hub gateways on simulated homes whose cuffs have MCUboot and an SMP server on
the simulated radio. The images are published in a TUF repository served over HTTP and
reach the hubs verified; the campaign's desired firmware reaches them in their retained
configuration; the gate reads what ingest stored from their statuses and readings."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.campaign_runner import run_campaigns
from api.db import create_pool
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.home import (
    SimulatedDevice,
    SimulatedFirmware,
    SimulatedHome,
    SimulationScenario,
)
from device_drivers.simulation.mcuboot import BootOutcome
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig, UpdateSettings
from gateway.hub import HubGateway
from gateway.update.device_reconcile import UpdateTimings
from hemhub.contract import DeviceProfile, topic_config, topic_readings, topic_status
from ingest import campaigns, hub_fleet, inventory, registry
from ingest.fleet_common import Actor
from ingest.hub_link import HubLink
from ingest.worker import IngestWorker
from tests.factories import unique_hub_id
from tests.firmware_helpers import DeviceImages, device_images
from tests.gateway.test_provisioning import publish_retained
from tests.mqtt_helpers import clear_retained_status
from tests.ota_helpers import http_server

pytestmark = pytest.mark.timeout(300)

TENANT = "hmc-devfw"
HMC = Actor(subject="hmc-technician", tenant=TENANT)
MODEL = SimulatedCuff.MODEL
HOMES = 3
FAST = UpdateTimings(connect_timeout=10.0, reboot_timeout=15.0, retry_start_s=1.0)


@dataclass
class Home:
    hub: str
    address: str
    patient: uuid.UUID
    data_dir: Path
    radio: SimulatedRadio | None = None
    home: SimulatedHome | None = None
    gateway: HubGateway | None = None

    @property
    def cuff(self) -> SimulatedCuff:
        assert self.home is not None
        device = self.home.devices[self.address]
        assert isinstance(device, SimulatedCuff)
        return device


@dataclass
class Fleet:
    homes: list[Home]
    images: DeviceImages
    product: uuid.UUID
    database_url: str

    def stored(self) -> dict[str, int]:
        """Readings stored per device address."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT upper(d.address), count(*) FROM readings r"
                " JOIN devices d ON d.id = r.device_id GROUP BY 1"
            ).fetchall()
        return {address: n for address, n in rows}

    def home_of(self, hub: str) -> Home:
        return next(h for h in self.homes if h.hub == hub)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.5)


@pytest.fixture
def fleet_setup(
    database_url: str, mqtt_url: str, hub_link: HubLink, tmp_path: Path
) -> Iterator[Fleet]:
    """HOMES residents, each with a placed hub and an assigned cuff (MCUboot 1.0.0);
    an ingest worker stores their readings and statuses."""
    images = device_images(tmp_path / "vendor")
    hubs = sorted(unique_hub_id(f"dfw{i}") for i in range(HOMES))
    addresses = [f"C4:3F:00:00:00:{i + 1:02X}" for i in range(HOMES)]

    async def register() -> tuple[list[Home], uuid.UUID]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            registry.ensure_tenant(conn, TENANT, "HMC")
            patients = [registry.create_patient(conn, TENANT, f"r{i}") for i in range(HOMES)]
        homes = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            product = await inventory.create_product(
                conn,
                HMC,
                kind="blood_pressure",
                manufacturer=SimulatedCuff.MANUFACTURER,
                model=MODEL,
            )
            now = datetime.now(UTC)
            for i, (hub, address, patient) in enumerate(
                zip(hubs, addresses, patients, strict=True)
            ):
                await hub_fleet.register_hub(conn, HMC, hub)
                await hub_fleet.place_hub(conn, HMC, hub, patient_id=patient, started_at=now)
                device = await inventory.register_device(
                    conn,
                    HMC,
                    product_id=product["id"],
                    serial=f"DFW-BP-{i}",
                    address=address,
                    firmware="1.0.0",
                )
                await inventory.assign_device(
                    conn, HMC, device["id"], patient_id=patient, hub_id=hub, started_at=now
                )
                homes.append(Home(hub, address, patient, tmp_path / hub))
        return homes, product["id"]

    homes, product = asyncio.run(register())
    worker = IngestWorker(
        database_url,
        mqtt_url,
        client_id=f"ingest-{hubs[0]}",
        topics=tuple(t for h in hubs for t in (topic_readings(h), topic_status(h))),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(10), "ingest worker did not subscribe"
    try:
        yield Fleet(homes, images, product, database_url)
    finally:
        worker.stop()
        thread.join(timeout=20)
        for hub in hubs:
            publish_retained(mqtt_url, topic_config(hub), b"")
            clear_retained_status(mqtt_url, hub)


@pytest.fixture
async def fleet(fleet_setup: Fleet, mqtt_url: str) -> AsyncIterator[Fleet]:
    """The homes running: each resident uses the cuff every 2-3 s; each hub gateway
    (status every second) gets its devices and the update repository's address."""
    images = fleet_setup.images
    stop = asyncio.Event()
    tasks = []
    with http_server(images.signed.repo.path) as url:
        root = images.trusted_root(fleet_setup.homes[0].data_dir.parent / "image-root")
        try:
            for i, home in enumerate(fleet_setup.homes):
                home.radio = await SimulatedRadio().__aenter__()
                scenario = SimulationScenario(
                    devices=[
                        SimulatedDevice(
                            address=home.address,
                            profile=DeviceProfile.BLOOD_PRESSURE,
                            serial=f"DFW-BP-{i}",
                            seed=i,
                            first_after_s=0.5,
                            every_s=2.0,
                            firmware=SimulatedFirmware(signing_key=images.key_file),
                        )
                    ]
                )
                home.home = SimulatedHome(home.radio, scenario, home.data_dir / "home")
                await home.home.start()
                config = GatewayConfig(
                    hub_id=home.hub,
                    mqtt_url=mqtt_url,
                    data_dir=home.data_dir / "hub",
                    status_interval_s=1.0,
                    slots_root=home.data_dir / "slots",  # none on trial
                    update=UpdateSettings(repository_url=url, trusted_root=root),
                )
                home.gateway = HubGateway(
                    config, home.radio.bleak_backends(), firmware_timings=FAST
                )
                tasks.append(asyncio.create_task(home.gateway.run(stop)))
            yield fleet_setup
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for home in fleet_setup.homes:
                if home.home is not None:
                    await home.home.stop()
                if home.radio is not None:
                    await home.radio.__aexit__(None, None, None)


async def readings_flow(fleet: Fleet, more_than: dict[str, int], within_s: float = 60) -> None:
    """Every device has more readings stored than in `more_than`."""

    async def grew() -> bool:
        now = await asyncio.to_thread(fleet.stored)
        return all(now.get(h.address, 0) > more_than.get(h.address, 0) for h in fleet.homes)

    await eventually(grew, f"readings of every device beyond {more_than}", within_s)


@dataclass
class Run:
    campaign: dict[str, Any]
    targets: list[dict[str, Any]]
    events: list[dict[str, Any]]
    stored_at_start: dict[str, int]


async def run_campaign(
    fleet: Fleet,
    *,
    until: set[str],
    waves: list[int],
    window: tuple[datetime, datetime] | None = None,
    before_start: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    while_running: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    then_rollback: bool = False,
    **options: Any,
) -> Run:
    """Publish B, register it, create and start a campaign to the cuffs, and let the
    API's campaign runner drive it until its state is in `until` (then, with
    `then_rollback`, roll it back until it is rolled_back)."""
    target = fleet.images.publish(MODEL, "1.1.0")
    await readings_flow(fleet, {})  # every hub online, every cuff read (battery known)
    pool = create_pool(fleet.database_url, max_size=2)
    await pool.open()
    stop = asyncio.Event()
    runner = asyncio.create_task(run_campaigns(pool, 0.5, stop))
    try:
        async with pool.connection() as conn:
            artifact = await campaigns.register_artifact(
                conn,
                HMC,
                kind="device_firmware",
                version="1.1.0",
                target=target,
                product_id=fleet.product,
            )
            campaign = await campaigns.create_campaign(
                conn,
                HMC,
                name="cuff firmware 1.1.0",
                artifact_id=artifact["id"],
                waves=waves,
                max_parallel=1,
                confirm_timeout_s=240,
                margin_failed_sessions=2,
                margin_error_readings=0,
                window=(window[0].time(), window[1].time()) if window else None,
                **options,
            )
            assert campaign["targets"] == HOMES and campaign["kind"] == "device_firmware"
            if before_start is not None:
                await before_start(campaign)
            stored_at_start = await asyncio.to_thread(fleet.stored)
            await campaigns.start(conn, HMC, campaign["id"])
            cid = campaign["id"]

            async def settled() -> bool:
                if while_running is not None:
                    await while_running(campaign)
                state = (await campaigns.get_campaign(conn, TENANT, cid))["state"]
                return state in until

            await eventually(settled, f"campaign {until}", 200)
            if then_rollback:
                await campaigns.rollback(conn, HMC, cid, "calls from homes")

                async def rolled_back() -> bool:
                    state = (await campaigns.get_campaign(conn, TENANT, cid))["state"]
                    return bool(state == "rolled_back")

                await eventually(rolled_back, "campaign rolled back", 200)
            return Run(
                await campaigns.get_campaign(conn, TENANT, cid),
                await campaigns.campaign_targets(conn, TENANT, cid),
                await campaigns.campaign_events(conn, TENANT, cid),
                stored_at_start,
            )
    finally:
        stop.set()
        await runner
        await pool.close()


async def test_a_device_firmware_campaign_brings_every_cuff_from_a_to_b(fleet: Fleet) -> None:
    run = await run_campaign(fleet, until={"completed"}, waves=[1, 50, 100])
    assert {t["state"] for t in run.targets} == {"confirmed"}
    assert {t["running"] for t in run.targets} == {"1.1.0"}
    assert all(t["progress"]["state"] == "confirmed" for t in run.targets)
    kinds = [e["kind"] for e in run.events]
    assert kinds[:3] == ["created", "started", "issued"] and kinds[-1] == "completed"
    assert kinds.count("wave_advanced") == 2
    for home in fleet.homes:
        mcuboot = home.cuff.mcuboot
        assert mcuboot is not None and mcuboot.primary.confirmed
        assert home.cuff.firmware == "1.1.0" and mcuboot.boots == [BootOutcome.SWAPPED]
    # Readings went on during the campaign and go on after it, from every cuff.
    await readings_flow(fleet, run.stored_at_start)
    await readings_flow(fleet, await asyncio.to_thread(fleet.stored))


async def test_an_image_that_fails_to_boot_is_reverted_and_pauses_the_campaign(
    fleet: Fleet,
) -> None:
    for home in fleet.homes:
        assert home.cuff.mcuboot is not None
        home.cuff.mcuboot.fails_to_boot = True  # whichever cuff gets B first
    run = await run_campaign(fleet, until={"paused"}, waves=[1, 100])
    canary = [t for t in run.targets if t["wave"] == 0]
    assert len(canary) == 1
    hub, address = canary[0]["hub_id"], canary[0]["address"]
    assert run.campaign["paused_reason"] == (
        f"hub {hub} device {address}: reverted: image 1.1.0 did not boot:"
        " the bootloader restored 1.0.0"
    )
    assert canary[0]["state"] == "failed" and canary[0]["running"] == "1.0.0"
    assert canary[0]["progress"]["state"] == "reverted"
    reverted = fleet.home_of(hub).cuff
    assert reverted.firmware == "1.0.0"
    assert reverted.mcuboot is not None and reverted.mcuboot.boots[-1] == BootOutcome.REVERTED
    # Nobody else got B; the readings of every cuff, the reverted one's too, go on.
    assert {t["state"] for t in run.targets if t["wave"] > 0} == {"pending"}
    for home in fleet.homes:
        if home.hub != hub:
            assert home.cuff.firmware == "1.0.0" and home.cuff.mcuboot is not None
            assert home.cuff.mcuboot.boots == []
    await readings_flow(fleet, run.stored_at_start)
    await readings_flow(fleet, await asyncio.to_thread(fleet.stored))
    assert [e["kind"] for e in run.events][-1] == "paused"


async def test_a_cuff_that_goes_silent_after_its_update_pauses_the_campaign(
    fleet: Fleet,
) -> None:
    now = datetime.now(UTC)
    window = (now - timedelta(hours=1), now + timedelta(hours=1))
    canary: dict[str, str] = {}

    async def later_waves_out_of_their_window(campaign: dict[str, Any]) -> None:
        """Only the canary's home is inside the night window: the other homes are 12
        hours ahead, so the campaign stays at the next wave with the canary in its gate."""
        async with await psycopg.AsyncConnection.connect(
            fleet.database_url, autocommit=True
        ) as conn:
            targets = await campaigns.campaign_targets(conn, TENANT, campaign["id"])
            for t in targets:
                if t["wave"] == 0:
                    canary.update(hub=t["hub_id"], address=t["address"])
                else:
                    await campaigns.set_hub_time_zone(conn, HMC, t["hub_id"], "Etc/GMT-12")

    async def canary_goes_silent(campaign: dict[str, Any]) -> None:
        home = fleet.home_of(canary["hub"])
        reconciler = home.gateway.firmware if home.gateway else None
        progress = reconciler.progress(canary["address"]) if reconciler else None
        # Once its hub has finished with it (confirmed), not while the hub still reads it.
        if progress is not None and progress.state == "confirmed" and home.cuff.powered:
            await home.cuff.power_off()  # say, the new image drains the battery

    run = await run_campaign(
        fleet,
        until={"paused"},
        waves=[1, 100],
        window=window,
        time_zone="UTC",
        silence_window_s=10,
        before_start=later_waves_out_of_their_window,
        while_running=canary_goes_silent,
    )
    reason = run.campaign["paused_reason"]
    assert reason.startswith(f"hub {canary['hub']} device {canary['address']}: silent for ")
    assert reason.endswith("s after the update (window 10 s)")
    by_key = {(t["hub_id"], t["address"]): t for t in run.targets}
    assert by_key[(canary["hub"], canary["address"])]["state"] == "confirmed"
    kinds = [e["kind"] for e in run.events]
    assert "wave_advanced" in kinds and kinds[-1] == "paused"
    assert {t["state"] for t in run.targets if t["wave"] > 0} == {"pending"}
    assert run.campaign["silence_window_s"] == 10


async def test_a_rollback_brings_every_cuff_back_to_its_previous_image(fleet: Fleet) -> None:
    # The way back is the previous version's image, published and registered as well.
    previous = fleet.images.publish(MODEL, "1.0.0")
    async with await psycopg.AsyncConnection.connect(fleet.database_url, autocommit=True) as conn:
        await campaigns.register_artifact(
            conn,
            HMC,
            kind="device_firmware",
            version="1.0.0",
            target=previous,
            product_id=fleet.product,
        )
    run = await run_campaign(fleet, until={"completed"}, waves=[50, 100], then_rollback=True)
    assert run.campaign["state"] == "rolled_back"
    assert {t["state"] for t in run.targets} == {"restored"}
    assert {t["running"] for t in run.targets} == {"1.0.0"}
    for home in fleet.homes:
        mcuboot = home.cuff.mcuboot
        assert home.cuff.firmware == "1.0.0" and mcuboot is not None
        assert mcuboot.primary.confirmed
        assert mcuboot.boots == [BootOutcome.SWAPPED, BootOutcome.SWAPPED]
    assert [e["kind"] for e in run.events][-2:] == ["rollback", "rolled_back"]
    await readings_flow(fleet, await asyncio.to_thread(fleet.stored))
