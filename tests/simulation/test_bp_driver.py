"""The blood-pressure driver (plain bleak) against simulated cuffs on a simulated radio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.ieee11073 import SpecialValue
from device_drivers.drivers.blood_pressure import ReceivedMeasurement, run_blood_pressure_session
from device_drivers.drivers.session import DeviceUnreachableError, SessionReport
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio

CUFF = "C4:20:00:00:00:01"
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:11") as r:
        yield r


class Harness:
    """A cuff, its produced records, and the driver's received measurements."""

    def __init__(self, radio: SimulatedRadio, **cuff_options: Any) -> None:
        self.radio = radio
        self.backends: BleakBackends = radio.bleak_backends()
        self.produced: list[dict[str, Any]] = []
        self.received: list[ReceivedMeasurement] = []
        options: dict[str, Any] = {
            "address": CUFF,
            "serial": "BP-7781-2231",
            "seed": 42,
            "on_produced": self.produced.append,
            "idle_disconnect_s": 0.1,
        }
        options.update(cuff_options)
        self.cuff = SimulatedCuff(radio, **options)

    async def on_measurement(self, m: ReceivedMeasurement) -> None:
        self.received.append(m)

    async def find(self) -> BLEDevice:
        device = await BleakScanner.find_device_by_address(
            CUFF, timeout=2.0, **self.backends.scanner_options()
        )
        assert device is not None
        return device

    async def session(self, **options: Any) -> SessionReport:
        settings: dict[str, Any] = {"connect_timeout": 2.0, "idle_timeout": 2.0}
        settings.update(options)
        return await run_blood_pressure_session(
            await self.find(),
            backends=self.backends,
            on_measurement=self.on_measurement,
            **settings,
        )


async def test_hypertensive_cuff_three_readings_in_order(radio: SimulatedRadio) -> None:
    h = Harness(radio, scenario="hypertensive")
    await h.cuff.start()
    for _ in range(3):
        await h.cuff.measure()
    before = datetime.now(UTC)

    report = await h.session()

    assert report.error is None and report.rejected == []
    assert report.received == 3 and len(h.received) == 3
    for produced, got in zip(h.produced, h.received, strict=True):
        assert got.raw.hex() == produced["raw_hex"]
        assert got.characteristic == "2A35"
        m = got.measurement
        assert (m.systolic, m.diastolic, m.mean_arterial, m.pulse) == (
            produced["systolic"],
            produced["diastolic"],
            produced["mean_arterial"],
            produced["pulse"],
        )
        assert m.unit.value == produced["unit"] == "mm[Hg]"
        assert m.timestamp is not None and m.timestamp.isoformat() == produced["device_time"]
        assert got.received_at.tzinfo is not None and got.received_at >= before
        assert got.clock_written is True
    assert [r.received_at for r in h.received] == sorted(r.received_at for r in h.received)
    assert any(
        (isinstance(r.measurement.systolic, float) and r.measurement.systolic >= 180)
        or (isinstance(r.measurement.diastolic, float) and r.measurement.diastolic >= 110)
        for r in h.received
    )
    identity = report.identity
    assert identity.address == CUFF
    assert identity.serial == "BP-7781-2231"  # NUL padding stripped
    assert identity.manufacturer == "Hemhub Simulated Devices"
    assert identity.model == "BPM-SIM-1" and identity.firmware == "2.1.0"
    assert h.received[0].identity == identity
    assert report.clock_written and h.cuff.clock_write_count == 1
    assert not report.paired
    assert h.cuff.undelivered == []
    await h.cuff.stop()


async def test_normotensive_values_are_plausible(radio: SimulatedRadio) -> None:
    h = Harness(radio, scenario="normotensive", seed=3)
    await h.cuff.start()
    for _ in range(5):
        await h.cuff.measure()
    report = await h.session()
    assert report.received == 5
    for r in h.received:
        m = r.measurement
        assert isinstance(m.systolic, float) and 110 <= m.systolic <= 135
        assert isinstance(m.diastolic, float) and 70 <= m.diastolic <= 85
        assert isinstance(m.pulse, float) and 60 <= m.pulse <= 80
    await h.cuff.stop()


async def test_bond_required_cuff_driver_pairs_then_reencrypts(radio: SimulatedRadio) -> None:
    h = Harness(radio, bond_required=True)
    await h.cuff.start()
    await h.cuff.measure()

    first = await h.session()
    assert first.error is None and first.received == 1
    assert first.paired and h.cuff.pairing_count == 1
    assert await radio.is_bonded(CUFF)

    await h.cuff.measure()
    second = await h.session()
    assert second.error is None and second.received == 1
    assert not second.paired
    assert h.cuff.pairing_count == 1 and radio.pairing_count == 1  # no new pairing
    assert radio.reencryption_count == 1
    assert [r.raw.hex() for r in h.received] == [p["raw_hex"] for p in h.produced]
    await h.cuff.stop()


async def test_bond_option_pairs_before_subscribing(radio: SimulatedRadio) -> None:
    h = Harness(radio, bond_required=True)
    await h.cuff.start()
    await h.cuff.measure()
    report = await h.session(bond=True)
    assert report.received == 1 and report.error is None
    assert not report.paired  # paired at connect, not on an error
    assert radio.pairing_count == 1
    await h.cuff.stop()


async def test_clock_not_writable_records_the_offset(radio: SimulatedRadio) -> None:
    h = Harness(radio, clock_writable=False, device_clock_offset=timedelta(minutes=7))
    await h.cuff.start()
    await h.cuff.measure()
    report = await h.session()
    assert report.received == 1 and report.error is None
    assert report.clock_written is False
    assert report.device_clock_offset_s is not None
    assert abs(report.device_clock_offset_s - (-420.0)) < 2.0  # hub - device
    got = h.received[0]
    assert got.clock_written is False and got.device_clock_offset_s == report.device_clock_offset_s
    assert h.cuff.clock_write_count == 0
    await h.cuff.stop()


async def test_clock_writable_is_set_to_hub_time(radio: SimulatedRadio) -> None:
    h = Harness(radio, device_clock_offset=timedelta(hours=-3))
    await h.cuff.start()
    await h.cuff.measure()
    report = await h.session()
    assert report.clock_written
    assert (
        report.device_clock_offset_s is not None and abs(report.device_clock_offset_s - 10800) < 2
    )
    assert abs(h.cuff.clock_offset.total_seconds()) < 1.0  # the cuff now runs on hub time
    await h.cuff.stop()


async def test_replay_backlog_resends_identical_bytes(radio: SimulatedRadio) -> None:
    h = Harness(radio, replay_backlog=True)
    await h.cuff.start()
    await h.cuff.measure()
    await h.cuff.measure()
    first = await h.session()
    assert first.received == 2
    first_raw = [r.raw for r in h.received]

    h.received.clear()
    await h.cuff.measure()
    second = await h.session()
    assert second.received == 3
    assert [r.raw for r in h.received][:2] == first_raw  # the same bytes again
    assert [r.raw.hex() for r in h.received] == [p["raw_hex"] for p in h.produced]
    await h.cuff.stop()


async def test_malformed_payload_is_rejected_not_fatal(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.cuff.start()
    await h.cuff.measure()
    await h.cuff.store_raw(b"\x1e\x01")  # truncated
    await h.cuff.store_raw(bytes.fromhex("00ff07ff07ff07"))  # error reading: all NaN
    await h.cuff.measure()
    report = await h.session()
    assert report.error is None
    assert report.received == 3
    assert len(report.rejected) == 1 and report.rejected[0].startswith("1e01: ")
    nan = h.received[1].measurement
    assert nan.is_device_error and nan.systolic is SpecialValue.NAN
    assert [h.received[0].raw.hex(), h.received[2].raw.hex()] == [p["raw_hex"] for p in h.produced]
    await h.cuff.stop()


async def test_idle_timeout_ends_a_silent_session(radio: SimulatedRadio) -> None:
    h = Harness(radio, idle_disconnect_s=10.0)  # this cuff never hangs up by itself
    await h.cuff.start()
    await h.cuff.measure()
    report = await h.session(idle_timeout=0.2)
    assert report.received == 1 and report.error is None
    assert h.cuff.connections == []  # the driver disconnected cleanly
    await h.cuff.stop()


async def test_failing_consumer_stops_the_session(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.cuff.start()
    await h.cuff.measure()

    async def broken(_m: ReceivedMeasurement) -> None:
        raise RuntimeError("disk full")

    report = await run_blood_pressure_session(
        await h.find(), backends=h.backends, on_measurement=broken, connect_timeout=2.0
    )
    assert report.error is not None and "disk full" in report.error
    assert report.received == 0
    await h.cuff.stop()


async def test_powered_off_cuff_fails_after_retries(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.cuff.start()
    await h.cuff.measure()
    device = await h.find()
    await h.cuff.power_off()
    with pytest.raises(BleakError, match=r"after 3 attempt") as failure:
        await run_blood_pressure_session(
            device,
            backends=h.backends,
            on_measurement=h.on_measurement,
            connect_timeout=0.1,
            attempts=3,
            retry_backoff_s=0.01,
        )
    assert isinstance(failure.value, DeviceUnreachableError)
    assert failure.value.address == CUFF and isinstance(failure.value.last, TimeoutError)
    assert h.received == []

    await h.cuff.power_on()  # back in range: the reading is still there
    report = await h.session()
    assert report.received == 1
    await h.cuff.stop()


async def test_two_cuffs_concurrently_while_scanning(radio: SimulatedRadio) -> None:
    backends = radio.bleak_backends()
    cuffs = [
        SimulatedCuff(radio, address=f"C4:30:00:00:00:0{i}", serial=f"SN-{i}", seed=i)
        for i in (1, 2)
    ]
    received: dict[str, list[bytes]] = {c.address: [] for c in cuffs}
    for cuff in cuffs:
        await cuff.start()
        await cuff.measure()
        await cuff.measure()

    async def collect(m: ReceivedMeasurement) -> None:
        received[m.identity.address].append(m.raw)

    seen: dict[str, BLEDevice] = {}
    both_seen = asyncio.Event()

    def detected(device: BLEDevice, _adv: object) -> None:
        seen.setdefault(device.address, device)
        if len(seen) == 2:
            both_seen.set()

    # One long-running scanner, as the gateway has, while sessions run.
    async with BleakScanner(detected, backend=backends.scanner):
        await asyncio.wait_for(both_seen.wait(), 2.0)
        reports = await asyncio.gather(
            *(
                run_blood_pressure_session(
                    seen[c.address], backends=backends, on_measurement=collect, connect_timeout=2.0
                )
                for c in cuffs
            )
        )
    assert [r.received for r in reports] == [2, 2]
    for cuff in cuffs:
        assert received[cuff.address] == [m.raw for m in cuff.backlog]
    # The radio stops the cuffs with itself.
