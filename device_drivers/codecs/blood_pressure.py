"""Blood Pressure Service 0x1810: Measurement 2A35, Intermediate Cuff Pressure 2A36, Feature 2A49.

Layout of 0x2A35 and 0x2A36 (little-endian):
flags u8 | systolic SFLOAT | diastolic SFLOAT | mean arterial SFLOAT | [Date Time 7]
| [pulse SFLOAT] | [user id u8] | [measurement status u16].
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import Field, field_validator

from device_drivers.codecs.common import PULSE_RATE_RANGE, MeasuredField, PhysicalRange, check_range
from device_drivers.codecs.common import Frozen as _Frozen
from device_drivers.codecs.errors import DecodeError
from device_drivers.codecs.ieee11073 import (
    ByteReader,
    Measured,
    SpecialValue,
    encode_date_time,
    encode_sfloat,
)
from hemhub.contract import Quantity

BLOOD_PRESSURE_MEASUREMENT = "2A35"
INTERMEDIATE_CUFF_PRESSURE = "2A36"
BLOOD_PRESSURE_FEATURE = "2A49"

# Flags of 0x2A35 / 0x2A36.
FLAG_KPA = 0x01
FLAG_TIMESTAMP = 0x02
FLAG_PULSE = 0x04
FLAG_USER_ID = 0x08
FLAG_STATUS = 0x10
FLAGS_RESERVED = 0xE0

# Measurement status bits.
STATUS_BODY_MOVEMENT = 0x0001
STATUS_CUFF_TOO_LOOSE = 0x0002
STATUS_IRREGULAR_PULSE = 0x0004
STATUS_PULSE_RANGE_SHIFT = 3
STATUS_PULSE_RANGE_MASK = 0x0018
STATUS_IMPROPER_POSITION = 0x0020
STATUS_RESERVED = 0xFFC0

KPA_TO_MMHG = 7.500615
#: Arterial (and cuff) pressures a cuff can measure, checked in mm[Hg] (kPa converted).
PRESSURE_RANGE = PhysicalRange(0, 400, "mm[Hg]")
USER_ID_UNKNOWN = 255

LOINC_SYSTOLIC = "8480-6"
LOINC_DIASTOLIC = "8462-4"
LOINC_MEAN_ARTERIAL = "8478-0"
LOINC_PULSE = "8867-4"


class BloodPressureUnit(enum.StrEnum):
    MMHG = "mm[Hg]"  # UCUM codes
    KPA = "kPa"


class PulseRange(enum.StrEnum):
    IN_RANGE = "in_range"
    ABOVE = "above"
    BELOW = "below"
    RESERVED = "reserved"


_PULSE_RANGES = [PulseRange.IN_RANGE, PulseRange.ABOVE, PulseRange.BELOW, PulseRange.RESERVED]


class BloodPressureStatus(_Frozen):
    """Measurement Status (u16) of 0x2A35."""

    body_movement: bool = False
    cuff_too_loose: bool = False
    irregular_pulse: bool = False
    pulse_range: PulseRange = PulseRange.IN_RANGE
    improper_position: bool = False

    def names(self) -> list[str]:
        """The set flags as snake_case names for `Reading.status`, in bit order."""
        out = [
            name
            for name in ("body_movement", "cuff_too_loose", "irregular_pulse")
            if getattr(self, name)
        ]
        if self.pulse_range is not PulseRange.IN_RANGE:
            out.append(
                "pulse_range_reserved"
                if self.pulse_range is PulseRange.RESERVED
                else f"pulse_{self.pulse_range.value}_range"
            )
        if self.improper_position:
            out.append("improper_position")
        return out

    @classmethod
    def from_bits(cls, bits: int) -> BloodPressureStatus:
        return cls(
            body_movement=bool(bits & STATUS_BODY_MOVEMENT),
            cuff_too_loose=bool(bits & STATUS_CUFF_TOO_LOOSE),
            irregular_pulse=bool(bits & STATUS_IRREGULAR_PULSE),
            pulse_range=_PULSE_RANGES[(bits & STATUS_PULSE_RANGE_MASK) >> STATUS_PULSE_RANGE_SHIFT],
            improper_position=bool(bits & STATUS_IMPROPER_POSITION),
        )

    def to_bits(self) -> int:
        return (
            (STATUS_BODY_MOVEMENT if self.body_movement else 0)
            | (STATUS_CUFF_TOO_LOOSE if self.cuff_too_loose else 0)
            | (STATUS_IRREGULAR_PULSE if self.irregular_pulse else 0)
            | (_PULSE_RANGES.index(self.pulse_range) << STATUS_PULSE_RANGE_SHIFT)
            | (STATUS_IMPROPER_POSITION if self.improper_position else 0)
        )


def _to_mmhg(value: Measured, unit: BloodPressureUnit) -> float | None:
    if isinstance(value, SpecialValue):
        return None  # missing, never a number
    if unit is BloodPressureUnit.KPA:
        return round(value * KPA_TO_MMHG, 1)
    return value


class BloodPressureMeasurement(_Frozen):
    """A decoded 0x2A35 (or 0x2A36, then `intermediate` is True).

    `timestamp` is the device's own clock (naive), None when the flag is absent or the
    device sent the all-zero "unknown" date. `pulse`, `user_id`, `status` are None when
    their flag is absent. `user_id` 255 is the spec's "unknown user" and is kept as 255.
    """

    unit: BloodPressureUnit
    systolic: MeasuredField
    diastolic: MeasuredField
    mean_arterial: MeasuredField
    timestamp: datetime | None = None
    pulse: MeasuredField | None = None
    user_id: Annotated[int, Field(ge=0, le=255)] | None = None
    status: BloodPressureStatus | None = None
    #: True for 0x2A36: `systolic` is then the current cuff pressure, not a result.
    intermediate: bool = False

    @field_validator("timestamp")
    @classmethod
    def _naive(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("device timestamps are naive (the device clock has no zone)")
        return value

    def status_names(self) -> list[str]:
        """The status flags that are set (none when the status field was absent)."""
        return self.status.names() if self.status is not None else []

    @property
    def is_device_error(self) -> bool:
        """All three pressures are special values: the cuff reports a failed measurement."""
        return all(
            isinstance(v, SpecialValue) for v in (self.systolic, self.diastolic, self.mean_arterial)
        )

    def quantities(self) -> list[Quantity]:
        """LOINC-coded values for the wire contract, pressures always in mm[Hg].

        Special values become `value=None`. Intermediate cuff pressures are progress
        indications, not results, and are refused.
        """
        if self.intermediate:
            raise ValueError("an intermediate cuff pressure (2A36) is not a measurement result")
        out = [
            Quantity(
                name=name,
                loinc=loinc,
                value=_to_mmhg(value, self.unit),
                unit=BloodPressureUnit.MMHG.value,
            )
            for name, loinc, value in (
                ("systolic", LOINC_SYSTOLIC, self.systolic),
                ("diastolic", LOINC_DIASTOLIC, self.diastolic),
                ("mean_arterial", LOINC_MEAN_ARTERIAL, self.mean_arterial),
            )
        ]
        if self.pulse is not None:
            pulse = None if isinstance(self.pulse, SpecialValue) else self.pulse
            out.append(Quantity(name="pulse", loinc=LOINC_PULSE, value=pulse, unit="/min"))
        return out


def _pressure(r: ByteReader, field: str, unit: BloodPressureUnit) -> Measured:
    """One pressure SFLOAT, rejected (`DecodeError` at its byte) outside `PRESSURE_RANGE`."""
    at = r.offset
    value = r.sfloat(field)
    if not isinstance(value, SpecialValue):
        kpa = unit is BloodPressureUnit.KPA
        converted = (value * KPA_TO_MMHG, unit.value) if kpa else None
        check_range(r, at, field, value, PRESSURE_RANGE, converted=converted)
    return value


def _decode(data: bytes, characteristic: str) -> BloodPressureMeasurement:
    r = ByteReader(data, characteristic)
    flags = r.uint(1, "flags")
    if flags & FLAGS_RESERVED:
        raise r.error(f"reserved flag bits set (flags 0x{flags:02X})", 0)
    unit = BloodPressureUnit.KPA if flags & FLAG_KPA else BloodPressureUnit.MMHG
    systolic = _pressure(r, "systolic", unit)
    diastolic = _pressure(r, "diastolic", unit)
    mean_arterial = _pressure(r, "mean arterial pressure", unit)
    timestamp = r.date_time() if flags & FLAG_TIMESTAMP else None
    pulse = None
    if flags & FLAG_PULSE:
        at = r.offset
        pulse = r.sfloat("pulse rate")
        check_range(r, at, "pulse rate", pulse, PULSE_RATE_RANGE)
    user_id = r.uint(1, "user id") if flags & FLAG_USER_ID else None
    status = None
    if flags & FLAG_STATUS:
        at = r.offset
        bits = r.uint(2, "measurement status")
        if bits & STATUS_RESERVED:
            raise r.error(f"reserved measurement status bits set (0x{bits:04X})", at)
        status = BloodPressureStatus.from_bits(bits)
    r.finish()
    return BloodPressureMeasurement(
        unit=unit,
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial=mean_arterial,
        timestamp=timestamp,
        pulse=pulse,
        user_id=user_id,
        status=status,
        intermediate=characteristic == INTERMEDIATE_CUFF_PRESSURE,
    )


def decode_blood_pressure_measurement(data: bytes) -> BloodPressureMeasurement:
    """Decode 0x2A35. Raises `DecodeError` (and nothing else) for a malformed payload."""
    return _decode(data, BLOOD_PRESSURE_MEASUREMENT)


def decode_intermediate_cuff_pressure(data: bytes) -> BloodPressureMeasurement:
    """Decode 0x2A36 (same layout as 0x2A35; errors name "2A36")."""
    return _decode(data, INTERMEDIATE_CUFF_PRESSURE)


def encode_blood_pressure_measurement(m: BloodPressureMeasurement) -> bytes:
    """Encode 0x2A35/0x2A36; the flags follow from which optional fields are set.

    Values must be exact in SFLOAT (EncodeError otherwise), e.g. 120, 12.5, 16.0.
    """
    flags = FLAG_KPA if m.unit is BloodPressureUnit.KPA else 0
    body = b"".join(
        encode_sfloat(v).to_bytes(2, "little") for v in (m.systolic, m.diastolic, m.mean_arterial)
    )
    if m.timestamp is not None:
        flags |= FLAG_TIMESTAMP
        body += encode_date_time(m.timestamp)
    if m.pulse is not None:
        flags |= FLAG_PULSE
        body += encode_sfloat(m.pulse).to_bytes(2, "little")
    if m.user_id is not None:
        flags |= FLAG_USER_ID
        body += bytes((m.user_id,))
    if m.status is not None:
        flags |= FLAG_STATUS
        body += m.status.to_bits().to_bytes(2, "little")
    return bytes((flags,)) + body


encode_intermediate_cuff_pressure = encode_blood_pressure_measurement


# --- Blood Pressure Feature 0x2A49 -------------------------------------------------------

_FEATURE_BITS = (
    "body_movement_detection",
    "cuff_fit_detection",
    "irregular_pulse_detection",
    "pulse_rate_range_detection",
    "measurement_position_detection",
    "multiple_bonds",
)


class BloodPressureFeature(_Frozen):
    """0x2A49: what the cuff can detect. Bits 6-15 are kept in `other_bits`.

    They are not rejected: later BLS versions define more bits (e.g. E2E-CRC), and this
    characteristic is informative only, so an unknown bit must not cost a connection.
    """

    body_movement_detection: bool = False
    cuff_fit_detection: bool = False
    irregular_pulse_detection: bool = False
    pulse_rate_range_detection: bool = False
    measurement_position_detection: bool = False
    multiple_bonds: bool = False
    other_bits: Annotated[int, Field(ge=0, le=0xFFFF)] = 0

    @field_validator("other_bits")
    @classmethod
    def _no_named_bits(cls, value: int) -> int:
        if value & 0x003F:
            raise ValueError("other_bits must not overlap the named bits 0-5")
        return value


def decode_blood_pressure_feature(data: bytes) -> BloodPressureFeature:
    r = ByteReader(data, BLOOD_PRESSURE_FEATURE)
    bits = r.uint(2, "features")
    r.finish()
    named = {name: bool(bits & (1 << i)) for i, name in enumerate(_FEATURE_BITS)}
    return BloodPressureFeature(**named, other_bits=bits & ~0x003F)


def encode_blood_pressure_feature(feature: BloodPressureFeature) -> bytes:
    bits = feature.other_bits
    for i, name in enumerate(_FEATURE_BITS):
        if getattr(feature, name):
            bits |= 1 << i
    return bits.to_bytes(2, "little")


__all__ = [
    "BLOOD_PRESSURE_FEATURE",
    "BLOOD_PRESSURE_MEASUREMENT",
    "INTERMEDIATE_CUFF_PRESSURE",
    "KPA_TO_MMHG",
    "PRESSURE_RANGE",
    "USER_ID_UNKNOWN",
    "BloodPressureFeature",
    "BloodPressureMeasurement",
    "BloodPressureStatus",
    "BloodPressureUnit",
    "DecodeError",
    "PulseRange",
    "decode_blood_pressure_feature",
    "decode_blood_pressure_measurement",
    "decode_intermediate_cuff_pressure",
    "encode_blood_pressure_feature",
    "encode_blood_pressure_measurement",
    "encode_intermediate_cuff_pressure",
]
