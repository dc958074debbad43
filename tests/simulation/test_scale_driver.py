"""The weight-scale driver (plain bleak) against simulated scales on a simulated radio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from bleak import BleakClient

from device_drivers.codecs.weight_scale import WeightMeasurement, decode_weight_scale_feature
from device_drivers.drivers.session import ReceivedMeasurement, SessionReport
from device_drivers.drivers.weight_scale import run_weight_scale_session
from device_drivers.simulation.radio import SimulatedRadio
from device_drivers.simulation.scale import SimulatedScale
from hemhub.contract import MeasurementType

pytestmark = pytest.mark.timeout(30)

SCALE = "C5:20:00:00:00:01"
FEATURE = "00002a9e-0000-1000-8000-00805f9b34fb"


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:41") as r:
        yield r


async def scale_session(
    radio: SimulatedRadio, **scale_options: Any
) -> tuple[SimulatedScale, list[dict[str, Any]], list[ReceivedMeasurement]]:
    """A started scale (no readings yet), its produced records and the received list."""
    produced: list[dict[str, Any]] = []
    options: dict[str, Any] = {"address": SCALE, "serial": "WS-0042", "idle_disconnect_s": 0.1}
    options.update(scale_options)
    scale = SimulatedScale(radio, on_produced=produced.append, **options)
    await scale.start()
    return scale, produced, []


async def run(
    radio: SimulatedRadio, scale: SimulatedScale, received: list[ReceivedMeasurement]
) -> SessionReport:
    async def collect(m: ReceivedMeasurement) -> None:
        received.append(m)

    return await run_weight_scale_session(
        await scale.discover(),
        backends=radio.bleak_backends(),
        on_measurement=collect,
        connect_timeout=2.0,
        idle_timeout=2.0,
    )


def weight_of(m: ReceivedMeasurement) -> WeightMeasurement:
    assert isinstance(m.measurement, WeightMeasurement)
    return m.measurement


async def test_stable_scale_readings_with_bmi(radio: SimulatedRadio) -> None:
    scale, produced, received = await scale_session(radio, scenario="stable", seed=11)
    for _ in range(6):
        await scale.measure()
    report = await run(radio, scale, received)
    assert report.error is None and report.received == 6 and report.rejected == []
    assert [m.raw.hex() for m in received] == [p["raw_hex"] for p in produced]
    for m, p in zip(received, produced, strict=True):
        w = weight_of(m)
        assert m.measurement_type is MeasurementType.BODY_WEIGHT and m.characteristic == "2A9D"
        assert w.weight_kg() == p["weight_kg"] and 73.5 <= p["weight_kg"] <= 76.5
        assert w.timestamp is not None and w.timestamp.isoformat() == p["device_time"]
        values = {q.name: (q.value, q.unit) for q in w.quantities()}
        assert values["weight"] == (p["weight_kg"], "kg")
        assert values["height"] == (175.0, "cm")
        assert values["bmi"][0] == p["bmi"] and 23 <= p["bmi"] <= 26
    assert report.identity.model == "WS-SIM-1" and report.identity.serial == "WS-0042"
    assert report.clock_written and scale.undelivered == []


async def test_heart_failure_gains_two_kilos_over_three_days(radio: SimulatedRadio) -> None:
    scale, produced, received = await scale_session(radio, scenario="heart_failure", seed=3)
    first_morning = datetime(2025, 3, 10, 7, 30)
    for day in range(4):  # day 0 .. day 3, each morning on the scale's clock
        await scale.measure(at=first_morning + timedelta(days=day))
    report = await run(radio, scale, received)
    assert report.received == 4
    weights = [weight_of(m).weight_kg() for m in received]
    stamps = [weight_of(m).timestamp for m in received]
    assert stamps == [first_morning + timedelta(days=d) for d in range(4)]
    assert all(w is not None for w in weights)
    first, last = weights[0], weights[-1]
    assert first is not None and last is not None and last - first >= 2.0
    assert weights == [p["weight_kg"] for p in produced]


async def test_scale_without_height_sends_weight_only(radio: SimulatedRadio) -> None:
    scale, _, received = await scale_session(radio, height_m=None)
    await scale.measure(weight_kg=68.4)
    await run(radio, scale, received)
    [m] = received
    assert [(q.name, q.value) for q in m.measurement.quantities()] == [("weight", 68.4)]
    assert m.measurement.status_names() == []


async def test_weight_scale_feature_is_readable(radio: SimulatedRadio) -> None:
    scale, _, _ = await scale_session(radio)
    await scale.start_advertising()
    async with BleakClient(await scale.discover(), backend=radio.bleak_backends().client) as c:
        feature = decode_weight_scale_feature(bytes(await c.read_gatt_char(FEATURE)))
    assert feature.timestamp_supported and feature.bmi_supported
    assert feature.weight_resolution_kg == 0.1 and feature.height_resolution_m == 0.001


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        SimulatedScale(SimulatedRadio(), address=SCALE, serial="X", scenario="dieting")  # type: ignore[arg-type]
