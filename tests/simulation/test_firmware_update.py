"""Device firmware updates over the simulated radio: smpclient (through the hub's bleak
backends) against the simulated SMP server and MCUboot of a simulated cuff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakScanner

from device_drivers.drivers.blood_pressure import ReceivedMeasurement, run_blood_pressure_session
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.firmware_images import (
    application_payload,
    generate_key,
    sign_image,
)
from device_drivers.simulation.home import _PERIPHERALS, SimulatedHome, SimulationScenario
from device_drivers.simulation.mcuboot import BootOutcome, SimulatedMCUboot
from device_drivers.simulation.radio import SimulatedRadio
from gateway.update.device_firmware import (
    FirmwareImage,
    FirmwareOutcome,
    FirmwareProgress,
    update_device_firmware,
)
from hemhub.contract import DeviceProfile

CUFF = "C4:20:00:00:00:21"
pytestmark = pytest.mark.timeout(60)


class Images:
    def __init__(self, directory: Path) -> None:
        self.key = generate_key(directory / "vendor.pem")
        self.other_key = generate_key(directory / "attacker.pem")
        self.v1 = sign_image(self.key, "1.0.0", application_payload("BPM-SIM", "1.0.0"))
        self.v2 = sign_image(self.key, "1.1.0", application_payload("BPM-SIM", "1.1.0", 30000))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return Images(tmp_path_factory.mktemp("firmware"))


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:21") as r:
        yield r


async def start_cuff(radio: SimulatedRadio, images: Images, **options: Any) -> SimulatedCuff:
    cuff = SimulatedCuff(
        radio,
        address=CUFF,
        serial="BP-7781-0021",
        seed=7,
        idle_disconnect_s=0.1,
        mcuboot=SimulatedMCUboot(images.key, images.v1),
        **options,
    )
    await cuff.start()
    await cuff.start_advertising()  # the resident pressed the button: reachable
    return cuff


async def update(
    radio: SimulatedRadio,
    image: bytes,
    reports: list[FirmwareProgress] | None = None,
    **options: Any,
) -> FirmwareOutcome:
    return await update_device_firmware(
        CUFF,
        FirmwareImage.from_bytes(image),
        backends=radio.bleak_backends(),
        progress=reports.append if reports is not None else None,
        connect_timeout=3.0,
        reboot_timeout=5.0,
        **options,
    )


async def reading_session(radio: SimulatedRadio, cuff: SimulatedCuff) -> list[ReceivedMeasurement]:
    received: list[ReceivedMeasurement] = []

    async def on_measurement(m: ReceivedMeasurement) -> None:
        received.append(m)

    backends = radio.bleak_backends()
    device = await BleakScanner.find_device_by_address(
        cuff.address, timeout=2.0, **backends.scanner_options()
    )
    assert device is not None
    report = await run_blood_pressure_session(
        device,
        backends=backends,
        on_measurement=on_measurement,
        connect_timeout=2.0,
        idle_timeout=2.0,
    )
    assert report.error is None
    return received


async def test_full_update_tested_reset_confirmed(radio: SimulatedRadio, images: Images) -> None:
    cuff = await start_cuff(radio, images)
    reports: list[FirmwareProgress] = []

    outcome = await update(radio, images.v2, reports)

    assert outcome.state == "confirmed", outcome.reason
    assert (outcome.version_before, outcome.version_after) == ("1.0.0", "1.1.0")
    assert outcome.running_version == "1.1.0" and outcome.upload_attempts == 1
    states = [r.state for r in reports]
    assert states[0] == "downloading" and states[-1] == "confirmed"
    assert states.index("installing") < states.index("confirming") < states.index("confirmed")
    percents = [r.percent or 0 for r in reports if r.state == "downloading"]
    assert percents == sorted(percents) and percents[-1] == 100
    mcuboot = cuff.mcuboot
    assert mcuboot is not None
    assert mcuboot.primary.confirmed and not mcuboot.testing
    assert mcuboot.boots == [BootOutcome.SWAPPED]
    assert cuff.firmware == "1.1.0"
    # Confirmed: a later reset keeps the new image.
    assert await cuff.reboot() is BootOutcome.UNCHANGED and cuff.firmware == "1.1.0"
    # Updating again to the running image only confirms (idempotent, nothing uploaded).
    again = await update(radio, images.v2)
    assert again.state == "confirmed" and again.upload_attempts == 0


async def test_drop_mid_transfer_resumes_at_offset(radio: SimulatedRadio, images: Images) -> None:
    cuff = await start_cuff(radio, images)
    assert cuff.smp is not None
    cuff.smp.drop_upload_at = 12000

    outcome = await update(radio, images.v2)

    assert outcome.state == "confirmed", outcome.reason
    assert outcome.upload_attempts == 2
    assert cuff.smp.resumed_at and cuff.smp.resumed_at[0] >= 12000
    assert outcome.resumed_from == cuff.smp.resumed_at
    assert cuff.firmware == "1.1.0"


async def test_corrupt_upload_fails_and_keeps_old_image(
    radio: SimulatedRadio, images: Images
) -> None:
    cuff = await start_cuff(radio, images)
    assert cuff.smp is not None and cuff.mcuboot is not None
    cuff.smp.corrupt_upload = True

    outcome = await update(radio, images.v2)

    assert outcome.state == "failed"
    assert outcome.reason is not None and "upload refused" in outcome.reason
    assert "SHA256" in outcome.reason
    assert cuff.mcuboot.secondary is None and cuff.mcuboot.boots == []
    assert cuff.firmware == "1.0.0"


async def test_low_battery_refuses_upload(radio: SimulatedRadio, images: Images) -> None:
    cuff = await start_cuff(radio, images, battery_level=10)
    assert cuff.smp is not None

    outcome = await update(radio, images.v2)

    assert outcome.state == "failed"
    assert outcome.reason == "upload refused: EBUSY: battery low"
    assert cuff.smp.refused_low_battery == 1 and cuff.firmware == "1.0.0"


async def test_tampered_image_refused_by_bootloader(radio: SimulatedRadio, images: Images) -> None:
    cuff = await start_cuff(radio, images)
    assert cuff.mcuboot is not None
    # Signed by someone else's key: a well-formed image the bootloader must refuse.
    foreign = sign_image(images.other_key, "1.1.0", application_payload("BPM-SIM", "evil", 9000))
    reports: list[FirmwareProgress] = []

    outcome = await update(radio, foreign, reports)

    assert outcome.state == "failed"
    assert outcome.reason == "the bootloader refused image 1.1.0 (signature or integrity)"
    assert cuff.mcuboot.boots == [BootOutcome.REJECTED]
    assert cuff.mcuboot.secondary is None and cuff.firmware == "1.0.0"
    assert reports[-1] == FirmwareProgress("failed", None, outcome.reason)


async def test_altered_image_body_refused_by_bootloader(
    radio: SimulatedRadio, images: Images
) -> None:
    """The vendor's image with one byte of its body changed after signing."""
    cuff = await start_cuff(radio, images)
    assert cuff.mcuboot is not None
    altered = bytearray(images.v2)
    altered[0x200 + 100] ^= 0x01
    # The hub reads version and hash only; its hash check is the device's bootloader.
    outcome = await update_device_firmware(
        CUFF,
        FirmwareImage(bytes(altered), "1.1.0", FirmwareImage.from_bytes(images.v2).hash),
        backends=radio.bleak_backends(),
        connect_timeout=3.0,
        reboot_timeout=5.0,
    )
    assert outcome.state == "failed" and cuff.mcuboot.boots == [BootOutcome.REJECTED]
    assert cuff.firmware == "1.0.0"


async def test_image_that_fails_to_boot_is_reverted_and_readings_go_on(
    radio: SimulatedRadio, images: Images
) -> None:
    cuff = await start_cuff(radio, images)
    assert cuff.mcuboot is not None
    cuff.mcuboot.fails_to_boot = True

    outcome = await update(radio, images.v2)

    assert outcome.state == "reverted"
    assert outcome.reason == "image 1.1.0 did not boot: the bootloader restored 1.0.0"
    assert outcome.running_version == "1.0.0" and outcome.version_after == "1.0.0"
    assert cuff.mcuboot.boots == [BootOutcome.SWAPPED, BootOutcome.REVERTED]
    assert cuff.mcuboot.primary.confirmed and cuff.firmware == "1.0.0"
    # The device still measures and the hub still gets its readings.
    await cuff.measure()
    received = await reading_session(radio, cuff)
    assert len(received) == 1


async def test_failed_health_check_leaves_image_unconfirmed_and_reverted(
    radio: SimulatedRadio, images: Images
) -> None:
    cuff = await start_cuff(radio, images)
    assert cuff.mcuboot is not None

    async def unhealthy() -> bool:
        return False

    outcome = await update(radio, images.v2, health_check=unhealthy)

    assert outcome.state == "reverted"
    assert cuff.mcuboot.boots == [BootOutcome.SWAPPED, BootOutcome.REVERTED]
    assert cuff.firmware == "1.0.0" and outcome.version_after == "1.0.0"


async def test_unconfirmed_image_reverts_at_next_reset(
    radio: SimulatedRadio, images: Images
) -> None:
    """MCUboot's rule itself: a test image not confirmed before a reset goes away."""
    cuff = await start_cuff(radio, images)
    mcuboot = cuff.mcuboot
    assert mcuboot is not None
    mcuboot.write_secondary(images.v2)
    mcuboot.mark_test(FirmwareImage.from_bytes(images.v2).hash)
    assert await cuff.reboot() is BootOutcome.SWAPPED and cuff.firmware == "1.1.0"
    assert await cuff.reboot() is BootOutcome.REVERTED and cuff.firmware == "1.0.0"
    await cuff.measure()
    assert len(await reading_session(radio, cuff)) == 1


@pytest.mark.parametrize(
    "profile", ["blood_pressure", "weight_scale", "pulse_oximeter", "glucose", "dispenser"]
)
async def test_every_simulated_profile_updates(
    radio: SimulatedRadio, images: Images, profile: str
) -> None:
    cls: Any = _PERIPHERALS[DeviceProfile(profile)]
    device = cls(
        radio,
        address="C4:20:00:00:00:31",
        serial="SER-0031",
        mcuboot=SimulatedMCUboot(images.key, images.v1),
    )
    await device.start()
    await device.start_advertising()
    outcome = await update_device_firmware(
        device.address,
        FirmwareImage.from_bytes(images.v2),
        backends=radio.bleak_backends(),
        connect_timeout=3.0,
        reboot_timeout=5.0,
    )
    assert outcome.state == "confirmed", outcome.reason
    assert (outcome.version_before, outcome.version_after) == ("1.0.0", "1.1.0")
    assert device.firmware == "1.1.0"


async def test_simulated_home_device_keeps_its_firmware_through_a_restart(
    tmp_path: Path,
) -> None:
    key_path = tmp_path / "vendor.pem"
    key = generate_key(key_path)
    v2 = sign_image(key, "1.2.0", application_payload("BPM-SIM-1", "1.2.0"))
    scenario = SimulationScenario.model_validate(
        {
            "devices": [
                {
                    "address": "C4:20:00:00:00:41",
                    "profile": "blood_pressure",
                    "serial": "BP-0041",
                    "first_after_s": 3600,
                    "firmware": {"signing_key": str(key_path), "version": "1.0.0"},
                }
            ]
        }
    )
    data_dir = tmp_path / "home"
    async with SimulatedRadio(address="F0:00:00:00:00:41") as radio:
        home = SimulatedHome(radio, scenario, data_dir)
        await home.start()
        cuff = home.devices["C4:20:00:00:00:41"]
        assert cuff.firmware == "1.0.0"
        await cuff.start_advertising()
        outcome = await update_device_firmware(
            cuff.address,
            FirmwareImage.from_bytes(v2),
            backends=radio.bleak_backends(),
            connect_timeout=3.0,
            reboot_timeout=5.0,
        )
        assert outcome.state == "confirmed", outcome.reason
        await home.stop()
    async with SimulatedRadio(address="F0:00:00:00:00:41") as radio:
        home = SimulatedHome(radio, scenario, data_dir)
        await home.start()
        cuff = home.devices["C4:20:00:00:00:41"]
        assert cuff.firmware == "1.2.0"
        assert cuff.mcuboot is not None and cuff.mcuboot.primary.confirmed
        assert cuff.mcuboot.secondary is not None
        assert cuff.mcuboot.secondary.info.version == "1.0.0"
        await home.stop()
