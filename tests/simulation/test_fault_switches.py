"""Every fault switch of the simulated peripherals, for cuff, scale and oximeter, through
the drivers over the simulated radio: no reading lost, none invented, duplicates
recognisable by their bytes, the clock offset recorded when the clock cannot be set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice

from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.pulse_oximeter import run_pulse_oximeter_session
from device_drivers.drivers.session import (
    DeviceUnreachableError,
    ReceivedMeasurement,
    SessionReport,
    SessionRunner,
)
from device_drivers.drivers.weight_scale import run_weight_scale_session
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.oximeter import SimulatedOximeter
from device_drivers.simulation.peripheral import UNSET_CLOCK_START, StoredRecordsPeripheral
from device_drivers.simulation.radio import SimulatedRadio
from device_drivers.simulation.scale import SimulatedScale
from hemhub.contract import MeasurementType

pytestmark = pytest.mark.timeout(30)

BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True)
class Profile:
    name: str
    make: Callable[..., StoredRecordsPeripheral]
    run: SessionRunner
    measurement_type: MeasurementType
    characteristic: str


PROFILES = [
    Profile(
        "cuff", SimulatedCuff, run_blood_pressure_session, MeasurementType.BLOOD_PRESSURE, "2A35"
    ),
    Profile("scale", SimulatedScale, run_weight_scale_session, MeasurementType.BODY_WEIGHT, "2A9D"),
    Profile(
        "oximeter",
        SimulatedOximeter,
        run_pulse_oximeter_session,
        MeasurementType.PULSE_OXIMETRY,
        "2A5E",
    ),
]


@dataclass
class Harness:
    """One simulated device of a profile, what it produced and what the driver received."""

    radio: SimulatedRadio
    profile: Profile
    device: StoredRecordsPeripheral = field(init=False)
    produced: list[dict[str, Any]] = field(default_factory=list)
    received: list[ReceivedMeasurement] = field(default_factory=list)

    def build(self, **options: Any) -> Harness:
        settings: dict[str, Any] = {
            "address": "C4:40:00:00:00:01",
            "serial": f"{self.profile.name.upper()}-0001",
            "seed": 5,
            "on_produced": self.produced.append,
            "idle_disconnect_s": 0.1,
        }
        settings.update(options)
        self.device = self.profile.make(self.radio, **settings)
        return self

    async def on_measurement(self, m: ReceivedMeasurement) -> None:
        self.received.append(m)

    async def session(self, ble_device: BLEDevice | None = None, **options: Any) -> SessionReport:
        settings: dict[str, Any] = {"connect_timeout": 2.0, "idle_timeout": 2.0}
        settings.update(options)
        return await self.profile.run(
            ble_device or await self.device.discover(),
            backends=self.radio.bleak_backends(),
            on_measurement=self.on_measurement,
            **settings,
        )

    async def measure(self, count: int) -> None:
        for _ in range(count):
            await self.device.measure()  # type: ignore[attr-defined]

    def received_raw(self) -> list[str]:
        return [m.raw.hex() for m in self.received]

    def produced_raw(self) -> list[str]:
        return [p["raw_hex"] for p in self.produced]


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:21") as r:
        yield r


@pytest.fixture(params=PROFILES, ids=[p.name for p in PROFILES])
def harness(request: pytest.FixtureRequest, radio: SimulatedRadio) -> Harness:
    return Harness(radio, request.param)


async def test_plain_session_delivers_every_reading_once(harness: Harness) -> None:
    await harness.build().device.start()
    await harness.measure(3)
    report = await harness.session()
    assert report.error is None and report.rejected == [] and report.received == 3
    assert harness.received_raw() == harness.produced_raw()
    assert {m.measurement_type for m in harness.received} == {harness.profile.measurement_type}
    assert {m.characteristic for m in harness.received} == {harness.profile.characteristic}
    assert report.identity.model == harness.device.model and report.quirks == frozenset()
    assert report.clock_written and report.battery_level == 90


async def test_bond_only_device_pairs_then_reencrypts(
    harness: Harness, radio: SimulatedRadio
) -> None:
    await harness.build(bond_required=True).device.start()
    await harness.measure(1)
    first = await harness.session()
    assert first.error is None and first.received == 1 and first.paired
    assert await radio.is_bonded(harness.device.address)

    await harness.measure(1)
    second = await harness.session()
    assert second.error is None and second.received == 1 and not second.paired
    assert radio.pairing_count == 1 and radio.reencryption_count == 1
    assert harness.received_raw() == harness.produced_raw()


async def test_unset_clock_that_cannot_be_set_has_its_offset_recorded(harness: Harness) -> None:
    await harness.build(clock_unset=True, clock_writable=False).device.start()
    await harness.measure(2)
    report = await harness.session()
    assert report.received == 2 and report.clock_written is False
    expected = (datetime.now() - UNSET_CLOCK_START).total_seconds()
    assert report.device_clock_offset_s is not None
    assert abs(report.device_clock_offset_s - expected) < 5.0
    for m in harness.received:
        assert m.device_clock_offset_s == report.device_clock_offset_s and not m.clock_written
        assert m.measurement.timestamp is not None and m.measurement.timestamp.year == 2000
    assert not harness.device.clock_is_set


async def test_unset_clock_is_set_by_the_hub_where_writable(harness: Harness) -> None:
    await harness.build(clock_unset=True).device.start()
    await harness.measure(1)
    report = await harness.session()
    assert report.clock_written and report.received == 1
    assert report.device_clock_offset_s is not None and report.device_clock_offset_s > 3e8
    assert harness.device.clock_is_set and abs(harness.device.clock_offset.total_seconds()) < 2


async def test_error_reading_is_a_device_error_with_no_values(harness: Harness) -> None:
    await harness.build().device.start()
    harness.device.inject_error_readings(1)
    assert harness.device.error_readings_pending == 1
    await harness.measure(2)
    assert harness.device.error_readings_pending == 0
    report = await harness.session()
    assert report.error is None and report.rejected == [] and report.received == 2
    error, good = (m.measurement for m in harness.received)
    assert error.is_device_error
    assert error.quantities() and all(q.value is None for q in error.quantities())
    assert not good.is_device_error and all(q.value is not None for q in good.quantities())
    assert [p["error"] for p in harness.produced] == [True, False]
    assert harness.received_raw() == harness.produced_raw()


async def test_replayed_backlog_repeats_the_same_bytes(harness: Harness) -> None:
    await harness.build(replay_backlog=True).device.start()
    await harness.measure(2)
    first = await harness.session()
    assert first.received == 2
    await harness.measure(1)
    second = await harness.session()
    assert second.received == 3
    raws = harness.received_raw()
    assert raws[2:4] == raws[0:2]  # duplicates, recognisable by their bytes
    assert sorted(set(raws)) == sorted(harness.produced_raw())  # none invented


async def test_disconnect_mid_transfer_loses_nothing_across_sessions(harness: Harness) -> None:
    await harness.build(disconnect_mid_transfer=3).device.start()
    await harness.measure(5)
    ble_device = await harness.device.discover()
    first = await harness.session(ble_device)
    assert first.error is None and first.received == 3
    assert len(harness.device.undelivered) == 2 and harness.device.mid_transfer_disconnects == 1
    second = await harness.session()
    assert second.received == 2
    assert harness.received_raw() == harness.produced_raw()  # each exactly once, in order
    assert harness.device.undelivered == []


async def test_out_of_range_is_unreachable_then_recovers(harness: Harness) -> None:
    await harness.build().device.start()
    await harness.measure(1)
    ble_device = await harness.device.discover()
    await harness.device.set_in_range(False)
    with pytest.raises(DeviceUnreachableError) as failure:
        await harness.session(ble_device, connect_timeout=0.1, attempts=2, retry_backoff_s=0.01)
    assert isinstance(failure.value.last, TimeoutError) and harness.received == []

    await harness.device.set_in_range(True)
    report = await harness.session()
    assert report.received == 1 and harness.received_raw() == harness.produced_raw()


async def test_low_battery_is_readable_and_notified(
    harness: Harness, radio: SimulatedRadio
) -> None:
    await harness.build().device.start()
    await harness.device.set_battery_level(8)
    assert harness.device.battery_low
    await harness.measure(1)
    report = await harness.session()
    assert report.battery_level == 8 and report.received == 1

    levels: asyncio.Queue[int] = asyncio.Queue()

    def on_level(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        levels.put_nowait(data[0])

    await harness.device.start_advertising()
    ble_device = await harness.device.discover()
    async with BleakClient(ble_device, backend=radio.bleak_backends().client) as client:
        assert (await client.read_gatt_char(BATTERY_LEVEL))[0] == 8
        await client.start_notify(BATTERY_LEVEL, on_level)
        await harness.device.set_battery_level(3)
        assert await asyncio.wait_for(levels.get(), 2.0) == 3


async def test_a_home_with_three_devices_runs_concurrent_sessions(radio: SimulatedRadio) -> None:
    """Cuff, scale and oximeter on one radio; one scanner; one session per device at once."""
    harnesses = [
        Harness(radio, profile).build(address=f"C4:50:00:00:00:0{i}", seed=i)
        for i, profile in enumerate(PROFILES, start=1)
    ]
    for h in harnesses:
        await h.device.start()
        await h.measure(2)
    by_address = {h.device.address: h for h in harnesses}
    seen: dict[str, BLEDevice] = {}
    all_seen = asyncio.Event()

    def detected(device: BLEDevice, _adv: object) -> None:
        if device.address in by_address:
            seen.setdefault(device.address, device)
        if len(seen) == len(by_address):
            all_seen.set()

    async with BleakScanner(detected, backend=radio.bleak_backends().scanner):
        await asyncio.wait_for(all_seen.wait(), 3.0)
        reports = await asyncio.gather(*(h.session(seen[a]) for a, h in by_address.items()))
    assert [r.error for r in reports] == [None, None, None]
    assert [r.received for r in reports] == [2, 2, 2]
    for h in harnesses:
        assert h.received_raw() == h.produced_raw()
        assert {m.identity.address for m in h.received} == {h.device.address}
