"""Pulse-oximeter driver over plain bleak: one session with an oximeter (PLX Service 0x1822).

The session is the common one (`SessionRunner`). It delivers every PLX
Spot-Check Measurement 0x2A5E indication: spot-checks are the clinical readings of a
home telehealth programme.

Continuous measurements 0x2A5F (notifications, sent while a finger is in the device) are
subscribed to when the oximeter offers them, and delivered at most once per
`CONTINUOUS_MIN_INTERVAL_S` (60 s) per session; the others are counted in
`SessionReport.rate_limited`. Why: a live stream of one value a second would flood the
outbox, the wire and the database with near-identical values that no nurse reads, while one
a minute still shows a trend. Which one: the clinically worst of each window
(`spo2_rank`: the lowest SpO2 that is the patient's; on ties the latest), delivered when
the window ends or when the session ends; so a desaturation of a few seconds inside a
window is reported, never averaged or thinned away. A window opens with its first value.
A continuous value carries no timestamp, so it is dated by the hub's receive time (of
the value kept). Use `pulse_oximeter_session_runner(continuous_min_interval_s=None)` to
take spot-checks only.
"""

from __future__ import annotations

import math

from device_drivers.codecs.pulse_oximeter import decode_plx_continuous, decode_plx_spot_check
from device_drivers.drivers.session import MeasurementStream, SessionRunner
from device_drivers.measurement import ClinicalMeasurement, is_patient_value
from hemhub.contract import MeasurementType

PULSE_OXIMETER_SERVICE = "00001822-0000-1000-8000-00805f9b34fb"
#: At most one continuous (0x2A5F) value per this many seconds.
CONTINUOUS_MIN_INTERVAL_S = 60.0

#: PLX Spot-Check Measurement 0x2A5E (indicated).
SPOT_CHECK_STREAM = MeasurementStream("2A5E", MeasurementType.PULSE_OXIMETRY, decode_plx_spot_check)


def spo2_rank(measurement: ClinicalMeasurement) -> float:
    """How bad a continuous value is (lower = worse): its SpO2 % when that is a number
    and the patient's; infinity otherwise (an error, demonstration or testing value never
    displaces a real one)."""
    spo2 = getattr(measurement, "spo2", None)
    if isinstance(spo2, int | float) and is_patient_value(measurement):
        return float(spo2)
    return math.inf


def continuous_stream(min_interval_s: float) -> MeasurementStream:
    """PLX Continuous Measurement 0x2A5F (notified, optional), rate-limited: the lowest
    SpO2 of each window (`spo2_rank`)."""
    return MeasurementStream(
        "2A5F",
        MeasurementType.PULSE_OXIMETRY,
        decode_plx_continuous,
        required=False,
        min_interval_s=min_interval_s,
        window_rank=spo2_rank,
    )


def pulse_oximeter_session_runner(
    *, continuous_min_interval_s: float | None = CONTINUOUS_MIN_INTERVAL_S
) -> SessionRunner:
    """A `run_pulse_oximeter_session` with another continuous rate (None: spot-checks only)."""
    streams = [SPOT_CHECK_STREAM]
    if continuous_min_interval_s is not None:
        streams.append(continuous_stream(continuous_min_interval_s))
    return SessionRunner("pulse-oximeter", streams)


#: `await run_pulse_oximeter_session(device, on_measurement=..., ...)`: the keywords and
#: failure behaviour of `run_blood_pressure_session`; every spot-check, and of the
#: continuous values the lowest SpO2 of each `CONTINUOUS_MIN_INTERVAL_S` window.
run_pulse_oximeter_session = pulse_oximeter_session_runner()

__all__ = [
    "CONTINUOUS_MIN_INTERVAL_S",
    "SPOT_CHECK_STREAM",
    "continuous_stream",
    "pulse_oximeter_session_runner",
    "run_pulse_oximeter_session",
    "spo2_rank",
]
