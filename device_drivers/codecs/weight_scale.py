"""Weight Scale Service 0x181D: Weight Measurement 2A9D and Weight Scale Feature 2A9E.

Layout of 0x2A9D (little-endian):
flags u8 | weight u16 | [Date Time 7] | [user id u8] | [BMI u16 | height u16].

The weight unit is fixed by flag bit 0: 0.005 kg (SI) or 0.01 lb (imperial); BMI is in
0.1 kg/m2; height in 0.001 m (SI) or 0.1 in (imperial). Weight 0xFFFF is the special value
"Measurement Unsuccessful".
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from device_drivers.codecs.common import (
    Frozen,
    MeasuredField,
    NaiveDatetime,
    PhysicalRange,
    check_range,
    number_or_none,
)
from device_drivers.codecs.errors import EncodeError
from device_drivers.codecs.ieee11073 import (
    ByteReader,
    Measured,
    SpecialValue,
    encode_date_time,
)
from hemhub.contract import Quantity

WEIGHT_MEASUREMENT = "2A9D"
WEIGHT_SCALE_FEATURE = "2A9E"

# Flags of 0x2A9D.
FLAG_IMPERIAL = 0x01
FLAG_TIMESTAMP = 0x02
FLAG_USER_ID = 0x04
FLAG_BMI_HEIGHT = 0x08
FLAGS_RESERVED = 0xF0

#: Weight field value meaning "Measurement Unsuccessful".
WEIGHT_UNSUCCESSFUL = 0xFFFF
USER_ID_UNKNOWN = 255

# Resolutions of the wire fields (exact decimals).
WEIGHT_STEP_KG = Decimal("0.005")
WEIGHT_STEP_LB = Decimal("0.01")
BMI_STEP = Decimal("0.1")
HEIGHT_STEP_M = Decimal("0.001")
HEIGHT_STEP_IN = Decimal("0.1")

LB_TO_KG = Decimal("0.45359237")  # exact, by definition
IN_TO_CM = Decimal("2.54")  # exact, by definition

# Physically possible values. The u16 weight field cannot exceed 327.67 kg / 655.34 lb
# (both possible), so a weight is only checked to be above 0.
WEIGHT_RANGES = {
    False: PhysicalRange(0, float("inf"), "kg", low_open=True),
    True: PhysicalRange(0, float("inf"), "[lb_av]", low_open=True),
}
BMI_RANGE = PhysicalRange(0, 300, "kg/m2", low_open=True)
HEIGHT_RANGE_M = PhysicalRange(0, 3, "m", low_open=True)

LOINC_BODY_WEIGHT = "29463-7"
LOINC_BODY_HEIGHT = "8302-2"
LOINC_BMI = "39156-5"


class WeightUnit(enum.StrEnum):
    """Units of the model's `weight` and `height` fields (UCUM codes)."""

    KG = "kg"
    LB = "[lb_av]"


class HeightUnit(enum.StrEnum):
    M = "m"
    IN = "[in_i]"


def _from_steps(raw: int, step: Decimal) -> float:
    return float(raw * step)


def _to_steps(value: float, step: Decimal, field: str, maximum: int = 0xFFFF) -> int:
    exact = Decimal(repr(float(value)))
    steps = exact / step
    if steps != steps.to_integral_value():
        raise EncodeError(f"{field}: {value!r} is not a multiple of {step}")
    raw = int(steps)
    if not 0 <= raw <= maximum:
        raise EncodeError(f"{field}: {value!r} outside 0..{maximum * step}")
    return raw


class WeightMeasurement(Frozen):
    """A decoded 0x2A9D.

    `weight` is in `unit` (kg or lb, as the scale sent it), `SpecialValue.NAN` for the
    "Measurement Unsuccessful" code 0xFFFF. `height` is in m (SI) or in (imperial);
    `bmi` in kg/m2. `bmi` and `height` are both set or both None. `user_id` 255 is the
    spec's "unknown user", kept as 255.
    """

    imperial: bool = False
    weight: MeasuredField
    timestamp: NaiveDatetime = None
    user_id: Annotated[int, Field(ge=0, le=255)] | None = None
    bmi: Annotated[float, Field(ge=0)] | None = None
    height: Annotated[float, Field(ge=0)] | None = None

    @field_validator("weight")
    @classmethod
    def _only_nan_special(cls, value: Measured) -> Measured:
        if isinstance(value, SpecialValue) and value is not SpecialValue.NAN:
            raise ValueError("the weight's only special value is NAN (Measurement Unsuccessful)")
        if not isinstance(value, SpecialValue) and value < 0:
            raise ValueError("a weight is not negative")
        return value

    @model_validator(mode="after")
    def _bmi_with_height(self) -> WeightMeasurement:
        if (self.bmi is None) != (self.height is None):
            raise ValueError("bmi and height come together (one flag) or not at all")
        return self

    @property
    def unit(self) -> WeightUnit:
        return WeightUnit.LB if self.imperial else WeightUnit.KG

    @property
    def height_unit(self) -> HeightUnit:
        return HeightUnit.IN if self.imperial else HeightUnit.M

    @property
    def is_device_error(self) -> bool:
        """The scale reported "Measurement Unsuccessful" (weight 0xFFFF)."""
        return isinstance(self.weight, SpecialValue)

    def status_names(self) -> list[str]:
        """The Weight Measurement carries no status flags."""
        return []

    def weight_kg(self) -> float | None:
        """Weight in kg (imperial converted, rounded to 1 g); None when unsuccessful."""
        value = number_or_none(self.weight)
        if value is None:
            return None
        if not self.imperial:
            return value
        return float(round(Decimal(repr(value)) * LB_TO_KG, 3))

    def height_cm(self) -> float | None:
        """Height in cm (imperial converted, rounded to 0.1 mm); None when absent."""
        if self.height is None:
            return None
        factor = IN_TO_CM if self.imperial else Decimal(100)
        return float(round(Decimal(repr(self.height)) * factor, 2))

    def quantities(self) -> list[Quantity]:
        """LOINC-coded values for the wire contract: weight in kg, height in cm, BMI kg/m2.

        "Measurement Unsuccessful" gives `weight` with `value=None`.
        """
        out = [Quantity(name="weight", loinc=LOINC_BODY_WEIGHT, value=self.weight_kg(), unit="kg")]
        if self.bmi is not None:
            out.append(Quantity(name="bmi", loinc=LOINC_BMI, value=self.bmi, unit="kg/m2"))
        if self.height is not None:
            out.append(
                Quantity(name="height", loinc=LOINC_BODY_HEIGHT, value=self.height_cm(), unit="cm")
            )
        return out


def decode_weight_measurement(data: bytes) -> WeightMeasurement:
    """Decode 0x2A9D. Raises `DecodeError` (and nothing else) for a malformed payload."""
    r = ByteReader(data, WEIGHT_MEASUREMENT)
    flags = r.uint(1, "flags")
    if flags & FLAGS_RESERVED:
        raise r.error(f"reserved flag bits set (flags 0x{flags:02X})", 0)
    imperial = bool(flags & FLAG_IMPERIAL)
    raw_weight = r.uint(2, "weight")
    weight: Measured
    if raw_weight == WEIGHT_UNSUCCESSFUL:
        weight = SpecialValue.NAN
    else:
        weight = _from_steps(raw_weight, WEIGHT_STEP_LB if imperial else WEIGHT_STEP_KG)
        check_range(r, 1, "weight", weight, WEIGHT_RANGES[imperial])
    timestamp = r.date_time() if flags & FLAG_TIMESTAMP else None
    user_id = r.uint(1, "user id") if flags & FLAG_USER_ID else None
    bmi = height = None
    if flags & FLAG_BMI_HEIGHT:
        at = r.offset
        bmi = _from_steps(r.uint(2, "BMI"), BMI_STEP)
        check_range(r, at, "BMI", bmi, BMI_RANGE)
        at = r.offset
        height = _from_steps(r.uint(2, "height"), HEIGHT_STEP_IN if imperial else HEIGHT_STEP_M)
        in_m = (float(Decimal(repr(height)) * IN_TO_CM / 100), "[in_i]") if imperial else None
        check_range(r, at, "height", height, HEIGHT_RANGE_M, converted=in_m)
    r.finish()
    return WeightMeasurement(
        imperial=imperial,
        weight=weight,
        timestamp=timestamp,
        user_id=user_id,
        bmi=bmi,
        height=height,
    )


def encode_weight_measurement(m: WeightMeasurement) -> bytes:
    """Encode 0x2A9D; the flags follow from which optional fields are set.

    Values must be exact multiples of the field's resolution (EncodeError otherwise):
    75.3 kg is 15060 * 0.005 kg, 180.25 lb is 18025 * 0.01 lb.
    """
    flags = FLAG_IMPERIAL if m.imperial else 0
    if isinstance(m.weight, SpecialValue):
        raw_weight = WEIGHT_UNSUCCESSFUL
    else:
        step = WEIGHT_STEP_LB if m.imperial else WEIGHT_STEP_KG
        raw_weight = _to_steps(m.weight, step, "weight", WEIGHT_UNSUCCESSFUL - 1)
    body = raw_weight.to_bytes(2, "little")
    if m.timestamp is not None:
        flags |= FLAG_TIMESTAMP
        body += encode_date_time(m.timestamp)
    if m.user_id is not None:
        flags |= FLAG_USER_ID
        body += bytes((m.user_id,))
    if m.bmi is not None and m.height is not None:
        flags |= FLAG_BMI_HEIGHT
        body += _to_steps(m.bmi, BMI_STEP, "BMI").to_bytes(2, "little")
        step = HEIGHT_STEP_IN if m.imperial else HEIGHT_STEP_M
        body += _to_steps(m.height, step, "height").to_bytes(2, "little")
    return bytes((flags,)) + body


# --- Weight Scale Feature 0x2A9E -----------------------------------------------------------

FEATURE_TIMESTAMP = 0x0001
FEATURE_MULTIPLE_USERS = 0x0002
FEATURE_BMI = 0x0004
FEATURE_WEIGHT_RESOLUTION_SHIFT = 3
FEATURE_WEIGHT_RESOLUTION_MASK = 0x0078
FEATURE_HEIGHT_RESOLUTION_SHIFT = 7
FEATURE_HEIGHT_RESOLUTION_MASK = 0x0380
FEATURE_NAMED_MASK = 0x03FF

#: Weight resolution code -> (kg, lb); 0 = not specified, 8-15 reserved.
WEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {
    1: (0.5, 1.0),
    2: (0.2, 0.5),
    3: (0.1, 0.2),
    4: (0.05, 0.1),
    5: (0.02, 0.05),
    6: (0.01, 0.02),
    7: (0.005, 0.01),
}
#: Height resolution code -> (m, in); 0 = not specified, 4-7 reserved.
HEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {
    1: (0.01, 1.0),
    2: (0.005, 0.5),
    3: (0.001, 0.1),
}


class WeightScaleFeature(Frozen):
    """0x2A9E (u32): what the scale supports and how precisely it measures.

    The resolutions state the scale's precision, not the wire encoding (which is always
    0.005 kg / 0.01 lb). Codes are kept as sent; reserved codes give `None` from the
    `*_resolution_*` helpers. Bits 10-31 are kept in `other_bits`, not rejected: this
    characteristic only informs, and an unknown bit must not cost a device.
    """

    timestamp_supported: bool = False
    multiple_users_supported: bool = False
    bmi_supported: bool = False
    weight_resolution_code: Annotated[int, Field(ge=0, le=15)] = 0
    height_resolution_code: Annotated[int, Field(ge=0, le=7)] = 0
    other_bits: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 0

    @field_validator("other_bits")
    @classmethod
    def _no_named_bits(cls, value: int) -> int:
        if value & FEATURE_NAMED_MASK:
            raise ValueError("other_bits must not overlap the named bits 0-9")
        return value

    @property
    def weight_resolution_kg(self) -> float | None:
        return WEIGHT_RESOLUTIONS.get(self.weight_resolution_code, (None, None))[0]

    @property
    def weight_resolution_lb(self) -> float | None:
        return WEIGHT_RESOLUTIONS.get(self.weight_resolution_code, (None, None))[1]

    @property
    def height_resolution_m(self) -> float | None:
        return HEIGHT_RESOLUTIONS.get(self.height_resolution_code, (None, None))[0]

    @property
    def height_resolution_in(self) -> float | None:
        return HEIGHT_RESOLUTIONS.get(self.height_resolution_code, (None, None))[1]


def decode_weight_scale_feature(data: bytes) -> WeightScaleFeature:
    """Decode 0x2A9E (exactly 4 bytes)."""
    r = ByteReader(data, WEIGHT_SCALE_FEATURE)
    bits = r.uint(4, "features")
    r.finish()
    return WeightScaleFeature(
        timestamp_supported=bool(bits & FEATURE_TIMESTAMP),
        multiple_users_supported=bool(bits & FEATURE_MULTIPLE_USERS),
        bmi_supported=bool(bits & FEATURE_BMI),
        weight_resolution_code=(bits & FEATURE_WEIGHT_RESOLUTION_MASK)
        >> FEATURE_WEIGHT_RESOLUTION_SHIFT,
        height_resolution_code=(bits & FEATURE_HEIGHT_RESOLUTION_MASK)
        >> FEATURE_HEIGHT_RESOLUTION_SHIFT,
        other_bits=bits & ~FEATURE_NAMED_MASK,
    )


def encode_weight_scale_feature(feature: WeightScaleFeature) -> bytes:
    bits = (
        feature.other_bits
        | (FEATURE_TIMESTAMP if feature.timestamp_supported else 0)
        | (FEATURE_MULTIPLE_USERS if feature.multiple_users_supported else 0)
        | (FEATURE_BMI if feature.bmi_supported else 0)
        | (feature.weight_resolution_code << FEATURE_WEIGHT_RESOLUTION_SHIFT)
        | (feature.height_resolution_code << FEATURE_HEIGHT_RESOLUTION_SHIFT)
    )
    return bits.to_bytes(4, "little")


__all__ = [
    "USER_ID_UNKNOWN",
    "WEIGHT_MEASUREMENT",
    "WEIGHT_SCALE_FEATURE",
    "WEIGHT_UNSUCCESSFUL",
    "HeightUnit",
    "WeightMeasurement",
    "WeightScaleFeature",
    "WeightUnit",
    "decode_weight_measurement",
    "decode_weight_scale_feature",
    "encode_weight_measurement",
    "encode_weight_scale_feature",
]
