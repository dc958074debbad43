"""The pulse-oximeter driver (plain bleak) against simulated oximeters on a simulated radio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bleak import BleakClient

from device_drivers.codecs.pulse_oximeter import (
    PlxContinuousMeasurement,
    PlxSpotCheckMeasurement,
    decode_plx_features,
)
from device_drivers.drivers.pulse_oximeter import (
    pulse_oximeter_session_runner,
    run_pulse_oximeter_session,
)
from device_drivers.drivers.session import ReceivedMeasurement, SessionReport, SessionRunner
from device_drivers.simulation.oximeter import SimulatedOximeter
from device_drivers.simulation.radio import SimulatedRadio
from hemhub.contract import MeasurementType

pytestmark = pytest.mark.timeout(30)

OXIMETER = "C6:20:00:00:00:01"
FEATURES = "00002a60-0000-1000-8000-00805f9b34fb"


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:51") as r:
        yield r


class Home:
    """One oximeter, what it produced and what a driver received."""

    def __init__(self, radio: SimulatedRadio, **options: Any) -> None:
        self.radio = radio
        self.produced: list[dict[str, Any]] = []
        self.received: list[ReceivedMeasurement] = []
        settings: dict[str, Any] = {
            "address": OXIMETER,
            "serial": "PX-0007",
            "idle_disconnect_s": 0.1,
            "on_produced": self.produced.append,
        }
        settings.update(options)
        self.oximeter = SimulatedOximeter(radio, **settings)

    async def collect(self, m: ReceivedMeasurement) -> None:
        self.received.append(m)

    async def session(self, runner: SessionRunner = run_pulse_oximeter_session) -> SessionReport:
        return await runner(
            await self.oximeter.discover(),
            backends=self.radio.bleak_backends(),
            on_measurement=self.collect,
            connect_timeout=2.0,
            idle_timeout=2.0,
        )

    def spot_checks(self) -> list[PlxSpotCheckMeasurement]:
        out = [m.measurement for m in self.received if m.characteristic == "2A5E"]
        assert all(isinstance(m, PlxSpotCheckMeasurement) for m in out)
        return out  # type: ignore[return-value]


async def test_healthy_spot_checks(radio: SimulatedRadio) -> None:
    home = Home(radio, scenario="healthy", seed=2)
    await home.oximeter.start()
    for _ in range(5):
        await home.oximeter.measure()
    report = await home.session()
    assert report.error is None and report.received == 5 and report.rejected == []
    assert [m.raw.hex() for m in home.received] == [p["raw_hex"] for p in home.produced]
    for m, spot, p in zip(home.received, home.spot_checks(), home.produced, strict=True):
        assert m.measurement_type is MeasurementType.PULSE_OXIMETRY
        assert isinstance(spot.spo2, float) and 95 <= spot.spo2 <= 99 and spot.spo2 == p["spo2"]
        assert isinstance(spot.pulse_rate, float) and 58 <= spot.pulse_rate <= 85
        assert spot.status_names() == ["validated"] == p["status"]
        assert spot.timestamp is not None and spot.timestamp.isoformat() == p["device_time"]
        assert not spot.device_clock_not_set
        quantities = {q.name: q for q in spot.quantities()}
        assert quantities["oxygen_saturation"].value == spot.spo2
        assert quantities["oxygen_saturation"].unit == "%"
        assert quantities["pulse"].value == spot.pulse_rate
    assert report.identity.model == "PLX-SIM-1"


async def test_copd_low_saturation_with_questionable_readings(radio: SimulatedRadio) -> None:
    home = Home(radio, scenario="copd", seed=4)
    await home.oximeter.start()
    for _ in range(12):
        await home.oximeter.measure()
    report = await home.session()
    assert report.received == 12
    spots = home.spot_checks()
    assert all(isinstance(s.spo2, float) and 86 <= s.spo2 <= 92 for s in spots)
    flagged = [s for s in spots if "low_perfusion" in s.status_names()]
    assert flagged, "some COPD readings have low perfusion"
    for s in flagged:
        assert s.status_names() == ["questionable_measurement", "low_perfusion"]
        assert isinstance(s.pulse_amplitude_index, float) and s.pulse_amplitude_index < 1.0
    assert any(s.status_names() == ["validated"] for s in spots)


async def test_continuous_values_are_rate_limited(radio: SimulatedRadio) -> None:
    home = Home(radio, continuous_interval_s=0.02, idle_disconnect_s=0.6)
    await home.oximeter.start()
    await home.oximeter.measure()
    runner = pulse_oximeter_session_runner(continuous_min_interval_s=0.25)
    started = time.monotonic()
    report = await home.session(runner)
    elapsed = time.monotonic() - started
    continuous = [m for m in home.received if m.characteristic == "2A5F"]
    assert len(home.spot_checks()) == 1 and report.error is None
    assert 1 <= len(continuous) <= elapsed / 0.25 + 1
    assert report.rate_limited > 0 and home.oximeter.continuous_sent > len(continuous)
    assert report.received == 1 + len(continuous)
    for m in continuous:
        assert isinstance(m.measurement, PlxContinuousMeasurement)
        assert m.measurement_type is MeasurementType.PULSE_OXIMETRY
        assert m.measurement.timestamp is None  # dated by the hub's receive time
        assert "measurement_ongoing" in m.measurement.status_names()


def continuous_spo2(home: Home) -> list[tuple[float, float]]:
    """(SpO2, pulse) of the continuous values the driver delivered, in order."""
    out = []
    for m in home.received:
        if m.characteristic == "2A5F":
            assert isinstance(m.measurement, PlxContinuousMeasurement)
            spo2, pulse = m.measurement.spo2, m.measurement.pulse_rate
            assert isinstance(spo2, float) and isinstance(pulse, float)
            out.append((spo2, pulse))
    return out


async def test_short_desaturation_inside_a_window_is_reported(radio: SimulatedRadio) -> None:
    home = Home(radio, continuous_interval_s=0.02, idle_disconnect_s=0.8)
    await home.oximeter.start()
    await home.oximeter.measure()
    runner = pulse_oximeter_session_runner(continuous_min_interval_s=0.3)
    session = asyncio.create_task(home.session(runner))
    while home.oximeter.continuous_sent < 5:  # noqa: ASYNC110 (no event for it)
        await asyncio.sleep(0.01)
    home.oximeter.inject_desaturation(81, samples=2)  # ~40 ms in a 300 ms window
    report = await session
    sent = home.oximeter.continuous_values
    delivered = continuous_spo2(home)
    assert report.error is None and len(delivered) < len(sent)
    assert [v for v in sent if v[0] == 81.0], "the desaturation was sent"
    # The worst value of its window is delivered, and it is the desaturation.
    assert min(spo2 for spo2, _ in delivered) == 81.0
    assert report.rate_limited == len(sent) - len(delivered)
    assert report.received == 1 + len(delivered)
    # Every delivered value was sent, none invented; healthy values otherwise.
    assert all(v in sent for v in delivered)
    assert all(95 <= spo2 <= 99 for spo2, _ in delivered if spo2 != 81.0)


async def test_the_latest_of_equally_low_values_and_the_last_window_are_delivered(
    radio: SimulatedRadio,
) -> None:
    home = Home(radio, continuous_interval_s=0.02, idle_disconnect_s=0.5)
    await home.oximeter.start()
    await home.oximeter.measure()
    runner = pulse_oximeter_session_runner(continuous_min_interval_s=10.0)  # one window
    session = asyncio.create_task(home.session(runner))
    while home.oximeter.continuous_sent < 3:  # noqa: ASYNC110 (no event for it)
        await asyncio.sleep(0.01)
    home.oximeter.inject_desaturation(88, samples=3)
    report = await session
    lows = [v for v in home.oximeter.continuous_values if v[0] == 88.0]
    assert len(lows) == 3
    # One window for the whole session: delivered when the session ended, and of the
    # three equally low values the latest.
    assert continuous_spo2(home) == [lows[-1]]
    assert report.received == 2 and report.rate_limited == home.oximeter.continuous_sent - 1


async def test_spot_checks_only_runner_ignores_continuous(radio: SimulatedRadio) -> None:
    home = Home(radio, continuous_interval_s=0.02, idle_disconnect_s=0.3)
    await home.oximeter.start()
    await home.oximeter.measure()
    report = await home.session(pulse_oximeter_session_runner(continuous_min_interval_s=None))
    assert report.received == 1 and [m.characteristic for m in home.received] == ["2A5E"]
    assert home.oximeter.continuous_sent == 0


async def test_unset_clock_is_flagged_in_the_spot_check(radio: SimulatedRadio) -> None:
    home = Home(radio, clock_unset=True, clock_writable=False)
    await home.oximeter.start()
    await home.oximeter.measure()
    report = await home.session()
    [spot] = home.spot_checks()
    assert spot.device_clock_not_set and spot.timestamp is not None
    assert spot.timestamp.year == 2000
    assert not report.clock_written and report.device_clock_offset_s is not None


async def test_plx_features_are_readable(radio: SimulatedRadio) -> None:
    home = Home(radio)
    await home.oximeter.start()
    await home.oximeter.start_advertising()
    device = await home.oximeter.discover()
    async with BleakClient(device, backend=radio.bleak_backends().client) as client:
        features = decode_plx_features(bytes(await client.read_gatt_char(FEATURES)))
    assert features.spot_check_timestamp and features.pulse_amplitude_index
    assert not features.spot_check_storage  # no Record Access Control Point
    assert features.measurement_status_support is not None
    assert features.measurement_status_support.questionable_measurement
    assert features.device_sensor_status_support is not None
    assert features.device_sensor_status_support.low_perfusion


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        SimulatedOximeter(SimulatedRadio(), address=OXIMETER, serial="X", scenario="asthma")  # type: ignore[arg-type]
