"""Every fault switch of the simulated peripherals, for every profile (cuff, scale,
oximeter, glucose meter, dispenser), through the drivers over the simulated radio: no
reading lost, none invented, duplicates recognisable (by their bytes, or for devices with
a record log by their sequence number), the clock offset recorded when the clock cannot
be set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice

from device_drivers.codecs.dispenser import DISPENSER_EVENT_UUID
from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.dispenser import run_dispenser_session
from device_drivers.drivers.glucose import run_glucose_session
from device_drivers.drivers.pulse_oximeter import run_pulse_oximeter_session
from device_drivers.drivers.racp import RecordSessionReport
from device_drivers.drivers.session import (
    DeviceUnreachableError,
    ReceivedMeasurement,
    SessionReport,
)
from device_drivers.drivers.weight_scale import run_weight_scale_session
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.dispenser import SimulatedDispenser
from device_drivers.simulation.glucose_meter import RacpPeripheral, SimulatedGlucoseMeter
from device_drivers.simulation.oximeter import SimulatedOximeter
from device_drivers.simulation.peripheral import (
    UNSET_CLOCK_START,
    SimulatedPeripheral,
    StoredRecordsPeripheral,
)
from device_drivers.simulation.radio import SimulatedRadio
from device_drivers.simulation.scale import SimulatedScale
from hemhub.contract import MeasurementType

pytestmark = pytest.mark.timeout(30)

BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"


async def _measure(device: Any) -> object:
    return await device.measure()


async def _play_dose(device: Any) -> object:
    return await device.run_dose(1, "taken")  # three events: due, dispensed, taken


def _as_sent(raw_hex: str) -> str:
    return raw_hex


def _from_storage(raw_hex: str) -> str:
    """A dispenser event as a RACP report sends it: flag bit 2 (from storage) set."""
    return f"{int(raw_hex[:2], 16) | 0x04:02x}{raw_hex[2:]}"


@dataclass(frozen=True)
class Profile:
    name: str
    make: Callable[..., SimulatedPeripheral]
    run: Callable[..., Awaitable[SessionReport]]
    measurement_type: MeasurementType
    characteristic: str
    #: Take one reading (a dispenser plays a dose: several events).
    measure: Callable[[Any], Awaitable[object]] = _measure
    #: A record log read through a RACP from the hub's last stored sequence number.
    records: bool = False
    #: Its measurements carry quantities (a dispenser's events carry none).
    quantities: bool = True
    #: A produced record's bytes as a session delivers them.
    as_delivered: Callable[[str], str] = _as_sent
    device_options: dict[str, Any] = field(default_factory=dict)
    session_options: dict[str, Any] = field(default_factory=dict)


_BACKLOG = {"idle_disconnect_s": 0.1}
PROFILES = [
    Profile(
        "cuff",
        SimulatedCuff,
        run_blood_pressure_session,
        MeasurementType.BLOOD_PRESSURE,
        "2A35",
        device_options=_BACKLOG,
    ),
    Profile(
        "scale",
        SimulatedScale,
        run_weight_scale_session,
        MeasurementType.BODY_WEIGHT,
        "2A9D",
        device_options=_BACKLOG,
    ),
    Profile(
        "oximeter",
        SimulatedOximeter,
        run_pulse_oximeter_session,
        MeasurementType.PULSE_OXIMETRY,
        "2A5E",
        device_options=_BACKLOG,
    ),
    Profile(
        "glucose",
        SimulatedGlucoseMeter,
        run_glucose_session,
        MeasurementType.GLUCOSE,
        "2A18",
        records=True,
        session_options={"idle_timeout": 1.0},
    ),
    Profile(
        "dispenser",
        SimulatedDispenser,
        run_dispenser_session,
        MeasurementType.MEDICATION_EVENT,
        DISPENSER_EVENT_UUID,
        measure=_play_dose,
        records=True,
        quantities=False,
        as_delivered=_from_storage,
        # bond_required is the dispenser's default; the bond-only test sets it anyway.
        device_options={"bond_required": False},
        session_options={"idle_timeout": 0.5},
    ),
]


@dataclass
class Harness:
    """One simulated device of a profile, what it produced and what the driver received
    (the hub's store, and for record logs the last stored sequence number it keeps)."""

    radio: SimulatedRadio
    profile: Profile
    device: Any = field(init=False)
    produced: list[dict[str, Any]] = field(default_factory=list)
    received: list[ReceivedMeasurement] = field(default_factory=list)
    last_sequence: int | None = None

    def build(self, **options: Any) -> Harness:
        settings: dict[str, Any] = {
            "address": "C4:40:00:00:00:01",
            "serial": f"{self.profile.name.upper()}-0001",
            "seed": 5,
            "on_produced": self.produced.append,
            **self.profile.device_options,
        }
        settings.update(options)
        self.device = self.profile.make(self.radio, **settings)
        return self

    async def on_measurement(self, m: ReceivedMeasurement) -> None:
        self.received.append(m)

    async def session(self, ble_device: BLEDevice | None = None, **options: Any) -> SessionReport:
        settings: dict[str, Any] = {
            "connect_timeout": 2.0,
            "idle_timeout": 2.0,
            **self.profile.session_options,
        }
        if self.profile.records:
            settings["since_sequence"] = self.last_sequence
        settings.update(options)
        report = await self.profile.run(
            ble_device or await self.device.discover(),
            backends=self.radio.bleak_backends(),
            on_measurement=self.on_measurement,
            **settings,
        )
        if isinstance(report, RecordSessionReport):
            self.last_sequence = report.last_sequence
        return report

    async def measure(self, count: int) -> None:
        for _ in range(count):
            await self.profile.measure(self.device)

    def received_raw(self) -> list[str]:
        return [m.raw.hex() for m in self.received]

    def produced_raw(self) -> list[str]:
        return [self.profile.as_delivered(p["raw_hex"]) for p in self.produced]

    def pending(self) -> int:
        """Readings the device still holds for the hub."""
        if isinstance(self.device, StoredRecordsPeripheral):
            return len(self.device.undelivered)
        assert isinstance(self.device, RacpPeripheral)
        return len(self.device.records)


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
    assert report.error is None and report.rejected == []
    assert report.received == len(harness.produced) >= 3
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
    assert first.error is None and first.received == len(harness.produced) and first.paired
    assert await radio.is_bonded(harness.device.address)

    await harness.measure(1)
    second = await harness.session()
    assert second.error is None and not second.paired
    assert first.received + second.received == len(harness.produced)
    assert radio.pairing_count == 1 and radio.reencryption_count == 1
    assert harness.received_raw() == harness.produced_raw()


async def test_unset_clock_that_cannot_be_set_has_its_offset_recorded(harness: Harness) -> None:
    await harness.build(clock_unset=True, clock_writable=False).device.start()
    await harness.measure(2)
    report = await harness.session()
    assert report.received == len(harness.produced) and report.clock_written is False
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
    assert report.clock_written and report.received == len(harness.produced)
    assert report.device_clock_offset_s is not None and report.device_clock_offset_s > 3e8
    assert harness.device.clock_is_set and abs(harness.device.clock_offset.total_seconds()) < 2


async def test_error_reading_is_a_device_error_with_no_values(harness: Harness) -> None:
    await harness.build().device.start()
    harness.device.inject_error_readings(1)
    assert harness.device.error_readings_pending == 1
    await harness.measure(2)
    assert harness.device.error_readings_pending == 0
    report = await harness.session()
    produced = len(harness.produced)
    assert report.error is None and report.rejected == [] and report.received == produced
    error, *good = (m.measurement for m in harness.received)
    assert error.is_device_error and all(q.value is None for q in error.quantities())
    assert bool(error.quantities()) is harness.profile.quantities
    for m in good:
        assert not m.is_device_error and all(q.value is not None for q in m.quantities())
    assert [p["error"] for p in harness.produced] == [True] + [False] * (produced - 1)
    assert harness.received_raw() == harness.produced_raw()


async def test_replayed_backlog_repeats_the_same_bytes(harness: Harness) -> None:
    await harness.build(replay_backlog=True).device.start()
    await harness.measure(2)
    first = await harness.session()
    before = len(harness.produced)
    assert first.received == before
    await harness.measure(1)
    second = await harness.session()
    total = len(harness.produced)
    if isinstance(second, RecordSessionReport):
        # The device sent its whole log again (filter and deletes ignored); the copies
        # are recognised by their sequence numbers and not handed on a second time.
        assert second.fetched == total and second.already_stored == before
        assert second.received == total - before
        assert harness.received_raw() == harness.produced_raw()
        assert [r.raw.hex() for r in harness.device.records] == [
            p["raw_hex"] for p in harness.produced
        ]  # the same bytes on the device: identical copies
    else:
        assert second.received == total
        raws = harness.received_raw()
        assert raws[before : 2 * before] == raws[0:before]  # duplicates: the same bytes
    assert sorted(set(harness.received_raw())) == sorted(harness.produced_raw())  # none invented


async def test_disconnect_mid_transfer_loses_nothing_across_sessions(harness: Harness) -> None:
    await harness.build(disconnect_mid_transfer=3).device.start()
    await harness.measure(5)
    produced = len(harness.produced)
    first = await harness.session()
    assert first.received == 3 and harness.device.mid_transfer_disconnects == 1
    if harness.profile.records:
        assert first.error is not None and "interrupted" in first.error
        assert harness.pending() == produced  # nothing deleted while the link was gone
    else:
        assert first.error is None and harness.pending() == produced - 3
    reports = [first]
    while len(harness.received) < produced and len(reports) < 10:
        reports.append(await harness.session())
    assert [r.received for r in reports] == [3] * (len(reports) - 1) + [produced % 3 or 3]
    assert harness.device.mid_transfer_disconnects == len(reports) - 1
    assert harness.received_raw() == harness.produced_raw()  # each exactly once, in order
    assert harness.pending() == 0


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
    assert report.received == len(harness.produced)
    assert harness.received_raw() == harness.produced_raw()


async def test_low_battery_is_readable_and_notified(
    harness: Harness, radio: SimulatedRadio
) -> None:
    await harness.build().device.start()
    await harness.device.set_battery_level(8)
    assert harness.device.battery_low
    await harness.measure(1)
    report = await harness.session()
    assert report.battery_level == 8 and report.received == len(harness.produced)

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


async def test_a_home_with_every_device_runs_concurrent_sessions(radio: SimulatedRadio) -> None:
    """One device of each profile on one radio; one scanner; one session per device at once."""
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
    assert [r.error for r in reports] == [None] * len(PROFILES)
    assert [r.received for r in reports] == [len(h.produced) for h in by_address.values()]
    for h in harnesses:
        assert h.received_raw() == h.produced_raw()
        assert {m.identity.address for m in h.received} == {h.device.address}
