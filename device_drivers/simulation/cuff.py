"""A simulated blood-pressure cuff (Blood Pressure Service 0x1810) on a `SimulatedRadio`.

Behaves like a real home cuff: `measure()` takes a reading (values from a seeded scenario,
timestamped with the cuff's own clock), stores it in the cuff's backlog and makes the cuff
advertise. When a central connects and enables indications on 0x2A35, the cuff indicates
every stored, not yet delivered reading in order, each after the previous indication was
confirmed, then ends the session by disconnecting after a short idle time.

Faults: `bond_required` (the 0x2A35 CCCD needs an encrypted link: pair first),
`replay_backlog` (every connection re-sends the whole backlog, byte for byte),
`clock_writable=False` (Current Time writes fail with ATT error 0x80) and
`device_clock_offset` (the clock runs ahead or behind); `swapped_pulse_and_status` (the
firmware quirk of model "BPM-SIM-2Q"); and every switch of `SimulatedPeripheral` /
`StoredRecordsPeripheral` (`inject_error_readings`, `disconnect_mid_transfer`,
`clock_unset`, `silent_until_bonded`, `set_battery_level`, `set_in_range`, `power_off`).
The store-and-indicate logic lives in `StoredRecordsPeripheral`.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime
from typing import Any, Literal

from bumble import gatt
from bumble.core import UUID

from device_drivers.codecs.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    BloodPressureStatus,
    BloodPressureUnit,
    encode_blood_pressure_feature,
    encode_blood_pressure_measurement,
)
from device_drivers.codecs.ieee11073 import SpecialValue
from device_drivers.quirks import SIMULATED_SWAPPED_CUFF_MODEL, swap_pulse_and_status
from device_drivers.simulation.peripheral import StoredMeasurement, StoredRecordsPeripheral
from device_drivers.simulation.radio import SimulatedRadio

logger = logging.getLogger(__name__)

Scenario = Literal["normotensive", "hypertensive"]
SCENARIOS: tuple[Scenario, ...] = ("normotensive", "hypertensive")

BLOOD_PRESSURE_SERVICE = 0x1810
BLOOD_PRESSURE_MEASUREMENT = 0x2A35
BLOOD_PRESSURE_FEATURE = 0x2A49

_FEATURES = BloodPressureFeature(
    body_movement_detection=True, irregular_pulse_detection=True, cuff_fit_detection=True
)


class SimulatedCuff(StoredRecordsPeripheral):
    """A simulated upper-arm blood-pressure cuff.

    Args:
        radio: the simulated radio (started) whose link the cuff joins.
        address: the cuff's random static address, "C4:..." (first byte C0-FF).
        serial: the serial number string (DIS 0x2A25).
        scenario: "normotensive" (110-135 / 70-85 mmHg, pulse 60-80) or "hypertensive"
            (170-200 / 100-120 mmHg, every second reading >= 180 systolic).
        seed: seed of the value generator (same seed, same readings).
        clock_writable: False makes Current Time writes fail with ATT error 0x80.
        bond_required: the 0x2A35 CCCD requires an encrypted (bonded) link.
        replay_backlog: every connection re-sends all stored readings.
        device_clock_offset: the cuff clock minus local time.
        on_produced: called with a JSON-serialisable record for every reading taken.
        name: advertised local name (default "BP-Cuff <last 4 of serial>").
        idle_disconnect_s: the cuff ends a session after this long without anything to send.
        manufacturer, model, firmware: Device Information (defaults: the class constants).
        advertising_interval_ms: advertising interval (default 20 ms).
        swapped_pulse_and_status: send the status where the pulse belongs and vice versa
            (model "BPM-SIM-2Q" does; see `device_drivers.quirks`).
        options: the arguments above from `clock_writable` on, and every other fault switch
            of `SimulatedPeripheral` / `StoredRecordsPeripheral` (`clock_unset`,
            `clock_write_ignored`, `disconnect_mid_transfer`, `silent_until_bonded`,
            `battery_level`...), are passed through to them.
    """

    #: Device Information strings of every simulated cuff unless overridden.
    MANUFACTURER = "Hemhub Simulated Devices"
    MODEL = "BPM-SIM-1"
    FIRMWARE = "2.1.0"
    HARDWARE = "rev B"
    NAME_PREFIX = "BP-Cuff"
    SCENARIOS = SCENARIOS
    #: The model with swapped pulse and status fields (a quirk in `QUIRKS`).
    SWAPPED_MODEL = SIMULATED_SWAPPED_CUFF_MODEL
    SERVICE = BLOOD_PRESSURE_SERVICE
    MEASUREMENT = BLOOD_PRESSURE_MEASUREMENT

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        serial: str,
        scenario: Scenario = "normotensive",
        seed: int = 0,
        swapped_pulse_and_status: bool = False,
        **options: Any,
    ) -> None:
        self.check_scenario(scenario)
        super().__init__(radio, address=address, serial=serial, **options)
        self.scenario: Scenario = scenario
        self.swapped_pulse_and_status = swapped_pulse_and_status
        self._rng = random.Random(seed)

    # --- GATT -------------------------------------------------------------------------

    def service_characteristics(self) -> list[gatt.Characteristic[bytes]]:
        feature: gatt.Characteristic[bytes] = gatt.Characteristic(
            core_uuid(BLOOD_PRESSURE_FEATURE),
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            encode_blood_pressure_feature(_FEATURES),
        )
        return [feature]

    # --- measurements -----------------------------------------------------------------

    def _draw(self) -> tuple[int, int, int]:
        rng, n = self._rng, len(self.backlog)
        if self.scenario == "hypertensive":
            # Crisis-level readings regularly: every second one is >= 180 systolic.
            systolic = rng.randint(180, 200) if n % 2 == 0 else rng.randint(170, 195)
            diastolic = rng.randint(100, 120)
        else:
            systolic = rng.randint(110, 135)
            diastolic = rng.randint(70, 85)
        pulse = rng.randint(60, 80) if self.scenario == "normotensive" else rng.randint(68, 95)
        return systolic, min(diastolic, systolic - 25), pulse

    def _wire(self, measurement: BloodPressureMeasurement) -> bytes:
        raw = encode_blood_pressure_measurement(measurement)
        return swap_pulse_and_status(raw) if self.swapped_pulse_and_status else raw

    def encode_error_reading(self, timestamp: datetime) -> bytes:
        """All values NaN, status 0: what cuffs send for a failed measurement."""
        nan = SpecialValue.NAN
        return self._wire(
            BloodPressureMeasurement(
                unit=BloodPressureUnit.MMHG,
                systolic=nan,
                diastolic=nan,
                mean_arterial=nan,
                timestamp=timestamp,
                pulse=nan,
                user_id=1,
                status=BloodPressureStatus(),
            )
        )

    async def measure(
        self,
        *,
        systolic: int | None = None,
        diastolic: int | None = None,
        pulse: int | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Take a reading: store it, report it to `on_produced`, advertise; returns the record.

        Values not given are drawn from the scenario (tests pin the ones they assert on);
        `at` is the time on the cuff's clock (default: its clock now).
        """

        def encode(timestamp: datetime) -> tuple[bytes, dict[str, Any]]:
            drawn = self._draw()
            sys_ = drawn[0] if systolic is None else systolic
            dia = drawn[1] if diastolic is None else diastolic
            pul = drawn[2] if pulse is None else pulse
            mean_arterial = round(dia + (sys_ - dia) / 3)
            irregular = self._rng.random() < 0.05
            measurement = BloodPressureMeasurement(
                unit=BloodPressureUnit.MMHG,
                systolic=float(sys_),
                diastolic=float(dia),
                mean_arterial=float(mean_arterial),
                timestamp=timestamp,
                pulse=float(pul),
                user_id=1,
                status=BloodPressureStatus(irregular_pulse=irregular),
            )
            values = {
                "systolic": float(sys_),
                "diastolic": float(dia),
                "mean_arterial": float(mean_arterial),
                "pulse": float(pul),
                "unit": BloodPressureUnit.MMHG.value,
            }
            return self._wire(measurement), values

        return await self.produce(encode, at=at)


def core_uuid(value: int) -> UUID:
    """A 16-bit SIG UUID as bumble's UUID."""
    return UUID.from_16_bits(value)


__all__ = ["SCENARIOS", "Scenario", "SimulatedCuff", "StoredMeasurement"]
