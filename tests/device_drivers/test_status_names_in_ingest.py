"""The status names the codecs emit are the names the ingest alert rules look for.

`Reading.status` carries `status_names()` verbatim, and ingest's sensor-status rule
matches those strings against `Technical.sensor_flags`: a name spelt differently on
either side silently disables the alert (bad posture never alerted while the codec
said `improper_position` and ingest waited for `improper_measurement_position`).
"""

from __future__ import annotations

from device_drivers.codecs import (
    BloodPressureStatus,
    GlucoseSensorStatus,
    PlxDeviceSensorStatus,
    PlxMeasurementStatus,
    decode_blood_pressure_measurement,
)
from ingest.thresholds import Technical


def _all_emitted_names() -> set[str]:
    names: set[str] = set()
    for bits in range(0x40):  # every BP measurement status value
        names.update(BloodPressureStatus.from_bits(bits).names())
    for flags in (PlxMeasurementStatus, PlxDeviceSensorStatus, GlucoseSensorStatus):
        names.update(flags.from_bits(flags.defined_mask()).names())
    return names


def test_improper_position_from_the_wire_is_an_ingest_sensor_flag() -> None:
    # 2A35 with measurement status bit 5 (improper measurement position).
    m = decode_blood_pressure_measurement(bytes.fromhex("10 7800 5000 5a00 2000"))
    assert m.status_names() == ["improper_position"]
    assert set(m.status_names()) <= set(Technical().sensor_flags)


def test_bp_fit_and_movement_flags_are_ingest_sensor_flags() -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("10 7800 5000 5a00 2300"))
    assert m.status_names() == ["body_movement", "cuff_too_loose", "improper_position"]
    assert set(m.status_names()) <= set(Technical().sensor_flags)


def test_every_default_sensor_flag_is_a_name_some_codec_emits() -> None:
    unknown = set(Technical().sensor_flags) - _all_emitted_names()
    assert unknown == set(), f"ingest waits for status names no codec sends: {unknown}"
