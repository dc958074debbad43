"""Weight-scale driver over plain bleak: one session with a scale (Weight Scale Service 0x181D).

The session is the common one (`SessionRunner`): connect with retries, Device Information
and the model's quirks, Current Time (written where the scale allows it, otherwise its
offset measured; never written for a CLOCK_NOT_SETTABLE model), then every Weight
Measurement 0x2A9D indication (stored backlog first, then live weighings) to
`on_measurement`, until the scale hangs up or stays silent for `idle_timeout`.
"""

from __future__ import annotations

from device_drivers.codecs.weight_scale import decode_weight_measurement
from device_drivers.drivers.session import MeasurementStream, SessionRunner
from hemhub.contract import MeasurementType

WEIGHT_SCALE_SERVICE = "0000181d-0000-1000-8000-00805f9b34fb"

#: Weight Measurement 0x2A9D (indicated).
WEIGHT_STREAM = MeasurementStream("2A9D", MeasurementType.BODY_WEIGHT, decode_weight_measurement)

#: `await run_weight_scale_session(device, on_measurement=..., ...)`: the keywords and
#: failure behaviour of `run_blood_pressure_session`.
run_weight_scale_session = SessionRunner("weight-scale", [WEIGHT_STREAM])

__all__ = ["WEIGHT_STREAM", "run_weight_scale_session"]
