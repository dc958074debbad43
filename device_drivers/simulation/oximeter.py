"""A simulated fingertip pulse oximeter (Pulse Oximeter Service 0x1822) on a `SimulatedRadio`.

- PLX Spot-Check Measurement 0x2A5E (indicate): every spot-check taken with `measure()` is
  stored and indicated like a cuff's readings (`StoredRecordsPeripheral`), with timestamp,
  measurement status, device and sensor status and pulse amplitude index; flag "device
  clock is not set" while the clock runs from its reset default (`clock_unset=True`).
- PLX Continuous Measurement 0x2A5F (notify): with `continuous_interval_s` set, a central
  subscribed to it gets a live value every that many seconds while connected;
  `inject_desaturation(spo2, samples)` makes the next values a short desaturation.
- PLX Features 0x2A60 (read): the status bits this oximeter reports.

Scenarios (per resident, seeded):
- "healthy": SpO2 95-99 %, pulse 58-85 /min, good perfusion, status "validated";
- "copd": SpO2 86-92 %, pulse 78-105 /min; about one reading in three with low perfusion
  (device status "low_perfusion", measurement status "questionable_measurement", low PAI).
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Any, Literal

from bumble import gatt
from bumble.core import UUID
from bumble.device import Connection

from device_drivers.codecs.ieee11073 import SpecialValue
from device_drivers.codecs.pulse_oximeter import (
    PlxContinuousMeasurement,
    PlxDeviceSensorStatus,
    PlxFeatures,
    PlxMeasurementStatus,
    PlxSpotCheckMeasurement,
    encode_plx_continuous,
    encode_plx_features,
    encode_plx_spot_check,
)
from device_drivers.quirks import SIMULATED_SILENT_BOND_OXIMETER_MODEL
from device_drivers.simulation.peripheral import StoredRecordsPeripheral
from device_drivers.simulation.radio import SimulatedRadio

OximeterScenario = Literal["healthy", "copd"]
OXIMETER_SCENARIOS: tuple[OximeterScenario, ...] = ("healthy", "copd")

PULSE_OXIMETER_SERVICE = 0x1822
PLX_SPOT_CHECK = 0x2A5E
PLX_CONTINUOUS = 0x2A5F
PLX_FEATURES = 0x2A60

#: Share of COPD readings with low perfusion (questionable).
COPD_LOW_PERFUSION_SHARE = 0.3

_FEATURES = PlxFeatures(
    spot_check_timestamp=True,
    pulse_amplitude_index=True,
    measurement_status_support=PlxMeasurementStatus(
        measurement_ongoing=True,
        validated=True,
        measurement_unavailable=True,
        questionable_measurement=True,
    ),
    device_sensor_status_support=PlxDeviceSensorStatus(
        low_perfusion=True, sensor_unconnected_to_user=True
    ),
)


class SimulatedOximeter(StoredRecordsPeripheral):
    """A simulated pulse oximeter.

    Args:
        radio: the simulated radio (started).
        address: random static address, "C6:..." (first byte C0-FF).
        serial: the serial number string (DIS 0x2A25).
        scenario: "healthy" or "copd" (see the module).
        seed: seed of the value generator (same seed, same readings).
        continuous_interval_s: send a 0x2A5F notification this often to a subscribed
            central; None (default) sends none.
        name: advertised name (default "Oximeter <last 4 of serial>").
        model: DIS model; "PLX-SIM-2B" is the BOND_REQUIRED quirk model (combine it with
            `silent_until_bonded=True`).
        options: `manufacturer`, `firmware`, and the fault switches and settings of
            `StoredRecordsPeripheral` /
            `SimulatedPeripheral`.
    """

    MODEL = "PLX-SIM-1"
    FIRMWARE = "3.0.1"
    HARDWARE = "rev C"
    NAME_PREFIX = "Oximeter"
    SCENARIOS = OXIMETER_SCENARIOS
    #: The model that sends nothing to an unbonded central, silently (a quirk in `QUIRKS`).
    SILENT_BOND_MODEL = SIMULATED_SILENT_BOND_OXIMETER_MODEL
    SERVICE = PULSE_OXIMETER_SERVICE
    MEASUREMENT = PLX_SPOT_CHECK

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        serial: str,
        scenario: OximeterScenario = "healthy",
        seed: int = 0,
        continuous_interval_s: float | None = None,
        **options: Any,
    ) -> None:
        self.check_scenario(scenario)
        super().__init__(radio, address=address, serial=serial, **options)
        self.scenario: OximeterScenario = scenario
        self.continuous_interval_s = continuous_interval_s
        self._rng = random.Random(seed)
        self._live_rng = random.Random(seed + 1)  # live values leave spot-checks unchanged
        self._continuous: gatt.Characteristic[bytes] | None = None
        self._streaming: set[Connection] = set()
        #: Continuous (0x2A5F) notifications sent.
        self.continuous_sent = 0
        #: SpO2 values the next continuous notifications carry (`inject_desaturation`).
        self._scripted_spo2: list[int] = []
        #: Every continuous value sent: (SpO2 %, pulse /min), in order.
        self.continuous_values: list[tuple[float, float]] = []

    # --- GATT -------------------------------------------------------------------------

    def service_characteristics(self) -> list[gatt.Characteristic[bytes]]:
        continuous: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID.from_16_bits(PLX_CONTINUOUS),
            gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.Permissions(0),
            b"",
        )
        self.protected_cccd(continuous)
        continuous.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_continuous_subscription)
        self._continuous = continuous
        features: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID.from_16_bits(PLX_FEATURES),
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            encode_plx_features(_FEATURES),
        )
        return [continuous, features]

    # --- values -----------------------------------------------------------------------

    def _draw(
        self, rng: random.Random
    ) -> tuple[int, int, PlxMeasurementStatus, PlxDeviceSensorStatus, float]:
        """SpO2 %, pulse /min, measurement status, device/sensor status, PAI %."""
        if self.scenario == "copd":
            spo2, pulse = rng.randint(86, 92), rng.randint(78, 105)
            if rng.random() < COPD_LOW_PERFUSION_SHARE:
                return (
                    spo2,
                    pulse,
                    PlxMeasurementStatus(questionable_measurement=True),
                    PlxDeviceSensorStatus(low_perfusion=True),
                    round(rng.uniform(0.2, 0.9), 1),
                )
            pai = round(rng.uniform(1.0, 4.0), 1)
        else:
            spo2, pulse = rng.randint(95, 99), rng.randint(58, 85)
            pai = round(rng.uniform(2.0, 9.0), 1)
        return spo2, pulse, PlxMeasurementStatus(validated=True), PlxDeviceSensorStatus(), pai

    def encode_error_reading(self, timestamp: datetime) -> bytes:
        """SpO2 and pulse NaN, "measurement unavailable": the finger was not detected."""
        return encode_plx_spot_check(
            PlxSpotCheckMeasurement(
                spo2=SpecialValue.NAN,
                pulse_rate=SpecialValue.NAN,
                timestamp=timestamp,
                device_clock_not_set=not self.clock_is_set,
                measurement_status=PlxMeasurementStatus(measurement_unavailable=True),
                device_sensor_status=PlxDeviceSensorStatus(sensor_unconnected_to_user=True),
            )
        )

    async def measure(
        self,
        *,
        spo2: int | None = None,
        pulse: int | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Take a spot-check: store, report to `on_produced`, advertise; returns the record.

        Values not given are drawn from the scenario; `at` is the time on the oximeter's
        clock (default: its clock now).
        """

        def encode(timestamp: datetime) -> tuple[bytes, dict[str, Any]]:
            drawn_spo2, drawn_pulse, status, device_status, pai = self._draw(self._rng)
            measurement = PlxSpotCheckMeasurement(
                spo2=float(drawn_spo2 if spo2 is None else spo2),
                pulse_rate=float(drawn_pulse if pulse is None else pulse),
                timestamp=timestamp,
                device_clock_not_set=not self.clock_is_set,
                measurement_status=status,
                device_sensor_status=device_status,
                pulse_amplitude_index=pai,
            )
            values = {
                "spo2": measurement.spo2,
                "pulse": measurement.pulse_rate,
                "pulse_amplitude_index": pai,
                "status": [*status.names(), *device_status.names()],
            }
            return encode_plx_spot_check(measurement), values

        return await self.produce(encode, at=at)

    # --- continuous -------------------------------------------------------------------

    def _on_continuous_subscription(self, bearer: object, notify: bool, _indicate: bool) -> None:
        connection = (
            bearer if isinstance(bearer, Connection) else getattr(bearer, "connection", None)
        )
        if not isinstance(connection, Connection) or not notify:
            return
        if self.continuous_interval_s is None or connection in self._streaming:
            return
        self._streaming.add(connection)
        self.spawn_for(connection, self._stream(connection, self.continuous_interval_s))

    def inject_desaturation(self, spo2: int, samples: int = 1) -> None:
        """The next `samples` continuous values carry SpO2 `spo2` % (a short desaturation
        in the live stream); the values around it stay the scenario's."""
        if not 0 <= spo2 <= 100 or samples < 0:
            raise ValueError("SpO2 is 0..100 % and samples not negative")
        self._scripted_spo2.extend([spo2] * samples)

    async def _stream(self, connection: Connection, interval_s: float) -> None:
        characteristic = self._continuous
        assert characteristic is not None
        try:
            while connection in self.connections and self.subscribed(connection, characteristic):
                if self.may_send(connection):
                    spo2, pulse, status, device_status, pai = self._draw(self._live_rng)
                    if self._scripted_spo2:
                        spo2 = self._scripted_spo2.pop(0)
                    value = PlxContinuousMeasurement(
                        spo2=float(spo2),
                        pulse_rate=float(pulse),
                        measurement_status=status.model_copy(update={"measurement_ongoing": True}),
                        device_sensor_status=device_status,
                        pulse_amplitude_index=pai,
                    )
                    await self.device.notify_subscriber(
                        connection, characteristic, encode_plx_continuous(value)
                    )
                    self.continuous_sent += 1
                    self.continuous_values.append((float(spo2), float(pulse)))
                await asyncio.sleep(interval_s)
        finally:
            self._streaming.discard(connection)


__all__ = ["OXIMETER_SCENARIOS", "OximeterScenario", "SimulatedOximeter"]
