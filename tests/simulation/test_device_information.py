"""Device Information through the drivers over the simulated radio: every string the
device offers (and its System ID), a missing one left None."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from device_drivers.codecs.device_information import SystemId
from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.glucose import run_glucose_session
from device_drivers.drivers.session import DeviceInformation, ReceivedMeasurement
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.glucose_meter import SimulatedGlucoseMeter
from device_drivers.simulation.radio import SimulatedRadio

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:71") as r:
        yield r


async def _ignore(_m: ReceivedMeasurement) -> None:
    return None


async def test_every_device_information_value_is_read(radio: SimulatedRadio) -> None:
    cuff = SimulatedCuff(
        radio,
        address="C4:70:00:00:00:01",
        serial="BP-77-0001",
        manufacturer="Hemhub Simulated Devices",
        model="BPM-SIM-1",
        hardware="rev B",
        firmware="2.1.0",
        software="app 5.4",
        system_id=bytes.fromhex("0102030405060708"),
        idle_disconnect_s=0.1,
    )
    await cuff.start()
    await cuff.measure()
    report = await run_blood_pressure_session(
        await cuff.discover(),
        backends=radio.bleak_backends(),
        on_measurement=_ignore,
        connect_timeout=2.0,
        idle_timeout=2.0,
    )
    assert report.error is None and report.received == 1
    assert report.device_information == DeviceInformation(
        manufacturer="Hemhub Simulated Devices",
        model="BPM-SIM-1",
        serial="BP-77-0001",
        hardware="rev B",
        firmware="2.1.0",
        software="app 5.4",
        system_id=SystemId(
            manufacturer_identifier=0x0504030201, organizationally_unique_identifier=0x080706
        ),
    )
    # The wire contract's identity has the four it carries.
    identity = report.identity
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Hemhub Simulated Devices",
        "BPM-SIM-1",
        "BP-77-0001",
        "2.1.0",
    )


async def test_missing_device_information_values_are_none(radio: SimulatedRadio) -> None:
    """A meter without hardware/software revision and System ID, and a malformed System
    ID on a second one: the session runs, those fields are None."""
    meter = SimulatedGlucoseMeter(
        radio, address="C4:70:00:00:00:02", serial="GL-0002", hardware=None
    )
    broken = SimulatedGlucoseMeter(
        radio, address="C4:70:00:00:00:03", serial="GL-0003", system_id=b"\x01\x02"
    )
    for device in (meter, broken):
        await device.start()
        await device.measure()
    reports = [
        await run_glucose_session(
            await device.discover(),
            backends=radio.bleak_backends(),
            on_measurement=_ignore,
            connect_timeout=2.0,
            idle_timeout=1.0,
        )
        for device in (meter, broken)
    ]
    assert [r.error for r in reports] == [None, None]
    assert [r.received for r in reports] == [1, 1]
    plain, malformed = (r.device_information for r in reports)
    assert (plain.serial, plain.model, plain.firmware) == ("GL-0002", "GLM-SIM-1", "1.4.2")
    assert plain.hardware is None and plain.software is None and plain.system_id is None
    assert malformed.serial == "GL-0003" and malformed.hardware == "rev A"
    assert malformed.system_id is None  # 2 bytes: logged, not an error
