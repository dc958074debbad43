"""Device wipes (device_drivers/drivers/wipe.py) against simulated devices: what each
profile can erase is really erased, and proven; what it cannot is said, with why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice

from device_drivers.codecs.dispenser import decode_dose_schedule
from device_drivers.codecs.dispenser_control import (
    DISPENSER_CONTROL_POINT_UUID,
    DispenserControlResult,
    decode_control_response,
)
from device_drivers.drivers.wipe import WipeOptions, cannot_wipe, needs_device, wipe_device
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.dispenser import SimulatedDispenser
from device_drivers.simulation.glucose_meter import SimulatedGlucoseMeter
from device_drivers.simulation.memory import DeviceMemory
from device_drivers.simulation.oximeter import SimulatedOximeter
from device_drivers.simulation.radio import SimulatedRadio
from device_drivers.simulation.scale import SimulatedScale
from hemhub.contract import DeviceProfile

pytestmark = pytest.mark.timeout(60)
OPTIONS = WipeOptions(connect_timeout=2.0, attempts=2, retry_backoff_s=0.1, idle_timeout=2.0)


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:61") as r:
        yield r


async def _find(radio: SimulatedRadio, address: str) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(
        address, timeout=3.0, **radio.bleak_backends().scanner_options()
    )
    assert device is not None
    return device


def _with_memory(
    peripheral: SimulatedGlucoseMeter | SimulatedDispenser, path: Path
) -> DeviceMemory:
    """Wired as the simulated home wires a device to its memory file."""
    memory = DeviceMemory(path)
    memory.attach(peripheral)
    peripheral.on_produced = lambda record: memory.remember(record["raw_hex"])
    return memory


async def test_a_glucose_meter_is_emptied_by_racp_delete_all(
    radio: SimulatedRadio, tmp_path: Path
) -> None:
    meter = SimulatedGlucoseMeter(
        radio, address="C4:61:00:00:00:01", serial="GLM-W1", seed=1, bond_required=True
    )
    memory = _with_memory(meter, tmp_path / "meter.json")
    await meter.start()
    for _ in range(3):
        await meter.measure()
    assert len(DeviceMemory(memory.path).raws) == 3

    report = await wipe_device(
        await _find(radio, meter.address),
        DeviceProfile.GLUCOSE,
        backends=radio.bleak_backends(),
        options=OPTIONS,
    )

    assert (report.outcome, report.records_before) == ("wiped", 3)
    assert bytes.fromhex("0201") in meter.racp_requests
    assert meter.records == []
    # Gone from its flash too: nothing of the resident is left in the memory file.
    saved = DeviceMemory(memory.path)
    assert saved.raws == [] and saved.device is not None and saved.device["records"] == []
    # The wipe paired (the meter wants a bond); removing it is the hub's next step.
    assert await radio.is_bonded(meter.address)


async def test_a_meter_that_ignores_deletes_fails_the_wipe_saying_so(
    radio: SimulatedRadio,
) -> None:
    meter = SimulatedGlucoseMeter(
        radio, address="C4:61:00:00:00:02", serial="GLM-W2", seed=2, replay=True
    )
    await meter.start()
    await meter.measure()
    await meter.measure()

    report = await wipe_device(
        await _find(radio, meter.address),
        DeviceProfile.GLUCOSE,
        backends=radio.bleak_backends(),
        options=OPTIONS,
    )

    assert report.outcome == "failed"
    assert report.reason == (
        "the meter acknowledged 'delete all stored records' but still holds 2 of 2 record(s)"
    )
    assert len(meter.records) == 2


async def test_a_dispenser_is_reset_through_its_control_point(
    radio: SimulatedRadio, tmp_path: Path
) -> None:
    robot = SimulatedDispenser(radio, address="C4:61:00:00:00:03", serial="MD-W3", seed=3)
    memory = _with_memory(robot, tmp_path / "robot.json")
    await robot.start()
    played = await robot.run_day()
    assert len(robot.records) == len(played) > 0

    report = await wipe_device(
        await _find(radio, robot.address),
        DeviceProfile.DISPENSER,
        backends=radio.bleak_backends(),
        options=OPTIONS,
    )

    assert (report.outcome, report.records_before) == ("wiped", len(played))
    assert robot.control_requests == [bytes.fromhex("0157495045")]
    assert (robot.records, robot.data_resets, robot.status.last_sequence) == ([], 1, 0)
    assert robot.schedule.doses == ()
    keystore = robot.device.keystore
    assert keystore is not None and await keystore.get_all() == []  # its bonds are gone
    # The hub dropped its stale bond to prove the reset without one.
    assert not await radio.is_bonded(robot.address)
    saved = DeviceMemory(memory.path)
    assert saved.raws == [] and saved.device is not None and saved.device["records"] == []
    assert decode_dose_schedule(bytes.fromhex(saved.device["schedule_hex"])).doses == ()


async def test_a_wrong_data_reset_is_refused_by_the_dispenser(radio: SimulatedRadio) -> None:
    robot = SimulatedDispenser(radio, address="C4:61:00:00:00:04", serial="MD-W4", seed=4)
    await robot.start()
    await robot.run_dose(1, "taken")
    answers: list[bytes] = []
    async with BleakClient(
        await _find(radio, robot.address), backend=radio.bleak_backends().client, pair=True
    ) as client:
        await client.start_notify(DISPENSER_CONTROL_POINT_UUID, lambda _s, d: answers.append(d))
        await client.write_gatt_char(DISPENSER_CONTROL_POINT_UUID, b"\x01WIPX", response=True)
        for _ in range(50):
            if answers:
                break
            await asyncio.sleep(0.05)
    assert decode_control_response(bytes(answers[0])).result is (
        DispenserControlResult.INVALID_OPERAND
    )
    assert robot.data_resets == 0 and len(robot.records) == 3


async def test_profiles_without_a_delete_are_unsupported_saying_why(
    radio: SimulatedRadio,
) -> None:
    assert not needs_device(DeviceProfile.BLOOD_PRESSURE)
    cuff = cannot_wipe(DeviceProfile.BLOOD_PRESSURE)
    assert cuff.outcome == "unsupported"
    assert "Blood Pressure Service defines no way to delete" in (cuff.reason or "")

    scale = SimulatedScale(radio, address="C4:61:00:00:00:05", serial="WS-W5", seed=5)
    oximeter = SimulatedOximeter(radio, address="C4:61:00:00:00:06", serial="OX-W6", seed=6)
    for device in (scale, oximeter):
        await device.start()
        await device.measure()
    backends = radio.bleak_backends()
    on_scale = await wipe_device(
        await _find(radio, scale.address),
        DeviceProfile.WEIGHT_SCALE,
        backends=backends,
        options=OPTIONS,
    )
    on_oximeter = await wipe_device(
        await _find(radio, oximeter.address),
        DeviceProfile.PULSE_OXIMETER,
        backends=backends,
        options=OPTIONS,
    )
    assert on_scale.outcome == on_oximeter.outcome == "unsupported"
    assert "no User Data Service (0x181C)" in (on_scale.reason or "")
    assert "no Record Access Control Point (0x2A52)" in (on_oximeter.reason or "")


async def test_a_device_out_of_range_fails_the_wipe(radio: SimulatedRadio) -> None:
    cuff = SimulatedCuff(radio, address="C4:61:00:00:00:07", serial="BP-W7", seed=7)
    meter = SimulatedGlucoseMeter(radio, address="C4:61:00:00:00:08", serial="GLM-W8", seed=8)
    await cuff.start()
    await meter.start()
    await meter.measure()
    device = await _find(radio, meter.address)
    await meter.set_in_range(False)
    report = await wipe_device(
        device, DeviceProfile.GLUCOSE, backends=radio.bleak_backends(), options=OPTIONS
    )
    assert report.outcome == "failed" and "could not connect" in (report.reason or "")
    assert len(meter.records) == 1
