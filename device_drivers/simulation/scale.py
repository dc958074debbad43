"""A simulated bathroom scale (Weight Scale Service 0x181D) on a `SimulatedRadio`.

Weight Measurement 0x2A9D is indicated, Weight Scale Feature 0x2A9E read. Readings are in
SI units (0.1 kg steps, the precision the feature declares), carry the scale's timestamp
and, when the scale knows the resident's height, BMI and height. Store-and-indicate,
backlog replay and every fault switch come from `StoredRecordsPeripheral`.

Scenarios (per resident, seeded):
- "stable": weight ~ N(75, 0.3) kg;
- "heart_failure": fluid retention, +0.9 kg a day on average from the first reading
  (noise sd 0.2 kg), so three simulated days gain well over 2 kg. Days pass on the
  scale's own clock: `measure(at=...)` stamps a reading at any device time.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, Literal

from bumble import gatt
from bumble.core import UUID

from device_drivers.codecs.ieee11073 import SpecialValue
from device_drivers.codecs.weight_scale import (
    WeightMeasurement,
    WeightScaleFeature,
    encode_weight_measurement,
    encode_weight_scale_feature,
)
from device_drivers.quirks import SIMULATED_FIXED_CLOCK_SCALE_MODEL
from device_drivers.simulation.peripheral import StoredRecordsPeripheral
from device_drivers.simulation.radio import SimulatedRadio

ScaleScenario = Literal["stable", "heart_failure"]
SCALE_SCENARIOS: tuple[ScaleScenario, ...] = ("stable", "heart_failure")

WEIGHT_SCALE_SERVICE = 0x181D
WEIGHT_MEASUREMENT = 0x2A9D
WEIGHT_SCALE_FEATURE = 0x2A9E

#: Heart failure: mean weight gain per day (kg) from the first reading.
HEART_FAILURE_GAIN_KG_PER_DAY = 0.9
_SECONDS_PER_DAY = 86400.0
#: Weight resolution code 3 = 0.1 kg; height resolution code 3 = 0.001 m (WSS 0x2A9E).
_RESOLUTION_0_1_KG = 3
_RESOLUTION_1_MM = 3


class SimulatedScale(StoredRecordsPeripheral):
    """A simulated weight scale.

    Args:
        radio: the simulated radio (started).
        address: random static address, "C5:..." (first byte C0-FF).
        serial: the serial number string (DIS 0x2A25).
        scenario: "stable" or "heart_failure" (see the module).
        seed: seed of the value generator (same seed, same readings).
        baseline_kg: the resident's weight at the first reading (default 75 stable,
            82 heart failure).
        height_m: the resident's height; None sends no BMI/height.
        name: advertised name (default "Scale <last 4 of serial>").
        model: DIS model; "WS-SIM-2C" is the CLOCK_NOT_SETTABLE quirk model (combine it
            with `clock_write_ignored=True`).
        options: `manufacturer`, `firmware`, and the fault switches and settings of
            `StoredRecordsPeripheral` /
            `SimulatedPeripheral` (`bond_required`, `replay_backlog`, `clock_writable`,
            `clock_unset`, `disconnect_mid_transfer`, `on_produced`, `idle_disconnect_s`...).
    """

    MODEL = "WS-SIM-1"
    FIRMWARE = "1.4.2"
    HARDWARE = "rev A"
    NAME_PREFIX = "Scale"
    SCENARIOS = SCALE_SCENARIOS
    #: The model whose Current Time write is acknowledged and ignored (a quirk in `QUIRKS`).
    FIXED_CLOCK_MODEL = SIMULATED_FIXED_CLOCK_SCALE_MODEL
    SERVICE = WEIGHT_SCALE_SERVICE
    MEASUREMENT = WEIGHT_MEASUREMENT

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        serial: str,
        scenario: ScaleScenario = "stable",
        seed: int = 0,
        baseline_kg: float | None = None,
        height_m: float | None = 1.75,
        **options: Any,
    ) -> None:
        self.check_scenario(scenario)
        super().__init__(radio, address=address, serial=serial, **options)
        self.scenario: ScaleScenario = scenario
        if baseline_kg is None:
            baseline_kg = 82.0 if scenario == "heart_failure" else 75.0
        self.baseline_kg = baseline_kg
        self.height_m = height_m
        self._rng = random.Random(seed)
        self._first_reading_at: datetime | None = None

    def service_characteristics(self) -> list[gatt.Characteristic[bytes]]:
        feature = WeightScaleFeature(
            timestamp_supported=True,
            bmi_supported=self.height_m is not None,
            weight_resolution_code=_RESOLUTION_0_1_KG,
            height_resolution_code=_RESOLUTION_1_MM if self.height_m is not None else 0,
        )
        characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID.from_16_bits(WEIGHT_SCALE_FEATURE),
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            encode_weight_scale_feature(feature),
        )
        return [characteristic]

    def _draw(self, timestamp: datetime) -> float:
        if self._first_reading_at is None:
            self._first_reading_at = timestamp
        if self.scenario == "heart_failure":
            days = (timestamp - self._first_reading_at).total_seconds() / _SECONDS_PER_DAY
            mean = self.baseline_kg + HEART_FAILURE_GAIN_KG_PER_DAY * max(days, 0.0)
            return self._rng.gauss(mean, 0.2)
        return self._rng.gauss(self.baseline_kg, 0.3)

    def encode_error_reading(self, timestamp: datetime) -> bytes:
        """Weight 0xFFFF ("Measurement Unsuccessful"), as a scale sends for a failed weighing."""
        return encode_weight_measurement(
            WeightMeasurement(weight=SpecialValue.NAN, timestamp=timestamp, user_id=1)
        )

    async def measure(
        self, *, weight_kg: float | None = None, at: datetime | None = None
    ) -> dict[str, Any]:
        """Weigh the resident: store, report to `on_produced`, advertise; returns the record.

        `weight_kg` defaults to the scenario's value for the reading's time; `at` is the
        time on the scale's clock (default: its clock now), so a test can step through days.
        """

        def encode(timestamp: datetime) -> tuple[bytes, dict[str, Any]]:
            drawn = self._draw(timestamp) if weight_kg is None else weight_kg
            weight = round(drawn, 1)
            bmi = height = None
            if self.height_m is not None:
                height = round(self.height_m, 3)
                bmi = round(weight / height**2, 1)
            measurement = WeightMeasurement(
                weight=weight, timestamp=timestamp, user_id=1, bmi=bmi, height=height
            )
            values: dict[str, Any] = {"weight_kg": weight, "bmi": bmi, "height_m": height}
            return encode_weight_measurement(measurement), values

        return await self.produce(encode, at=at)


__all__ = ["SCALE_SCENARIOS", "ScaleScenario", "SimulatedScale"]
