"""Blood-pressure driver over plain bleak: one session with a cuff (Blood Pressure Service 0x1810).

A session connects (retrying with backoff), reads Device Information, looks up the
model's quirks, reads then writes Current Time, subscribes to Blood Pressure Measurement
0x2A35 indications and hands every reading to `on_measurement` in arrival order, until
the cuff hangs up or stays silent for `idle_timeout`. It pairs when the cuff asks for
security (or when `bond=True`, or for a BOND_REQUIRED model). A model with swapped pulse
and status fields has its payload put back in order before decoding (`quirks`). It runs
unchanged against a real radio (`BleakBackends()`) or a `SimulatedRadio`.
"""

from __future__ import annotations

from device_drivers.codecs.blood_pressure import decode_blood_pressure_measurement
from device_drivers.drivers.session import MeasurementStream, ReceivedMeasurement, SessionRunner
from hemhub.contract import MeasurementType

BLOOD_PRESSURE_SERVICE = "00001810-0000-1000-8000-00805f9b34fb"
BLOOD_PRESSURE_MEASUREMENT = "00002a35-0000-1000-8000-00805f9b34fb"

#: Blood Pressure Measurement 0x2A35 (indicated).
BLOOD_PRESSURE_STREAM = MeasurementStream(
    "2A35", MeasurementType.BLOOD_PRESSURE, decode_blood_pressure_measurement
)

#: `await run_blood_pressure_session(device, on_measurement=..., ...)`: one session with a
#: cuff, returns its `SessionReport` (see `SessionRunner`). The cuff keeps what it did not
#: send for the next connection.
run_blood_pressure_session = SessionRunner("blood-pressure", [BLOOD_PRESSURE_STREAM])

__all__ = [
    "BLOOD_PRESSURE_STREAM",
    "ReceivedMeasurement",  # re-exported for callers
    "run_blood_pressure_session",
]
