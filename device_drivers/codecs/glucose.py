"""Glucose Service 0x1808: Glucose Measurement 2A18 and Glucose Measurement Context 2A34.

Layout of 0x2A18 (little-endian):
flags u8 | sequence number u16 | base time (Date Time 7) | [time offset s16, minutes]
| [concentration SFLOAT | type-sample location u8] | [sensor status annunciation u16].

The concentration is in kg/L (flag bit 2 clear) or mol/L (set); the model holds it in the
clinical unit: mg/dL = kg/L x 1e5, mmol/L = mol/L x 1e3. Stored records are fetched with
the Record Access Control Point 0x2A52 (see `racp.py`).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Annotated, ClassVar

from pydantic import Field, field_validator, model_validator

from device_drivers.codecs.common import (
    BitFlags,
    Frozen,
    MeasuredField,
    NaiveDatetime,
    PhysicalRange,
    check_range,
    number_or_none,
    scale_decimal,
)
from device_drivers.codecs.errors import EncodeError
from device_drivers.codecs.ieee11073 import (
    ByteReader,
    Measured,
    SpecialValue,
    encode_date_time,
    encode_sfloat,
)
from hemhub.contract import Quantity

GLUCOSE_MEASUREMENT = "2A18"
GLUCOSE_MEASUREMENT_CONTEXT = "2A34"
GLUCOSE_FEATURE = "2A51"

# Flags of 0x2A18.
FLAG_TIME_OFFSET = 0x01
FLAG_CONCENTRATION = 0x02
FLAG_MOL_PER_L = 0x04
FLAG_SENSOR_STATUS = 0x08
FLAG_CONTEXT_FOLLOWS = 0x10
FLAGS_RESERVED = 0xE0

LOINC_GLUCOSE_MASS = "2339-0"  # Glucose [Mass/volume] in Blood
LOINC_GLUCOSE_MOLES = "15074-8"  # Glucose [Moles/volume] in Blood

#: Glucose concentrations a meter can report, in the model's clinical unit: above 0 (a
#: concentration is never 0 or negative), and below 5000 mg/dL (277.5 mmol/L), far
#: beyond the highest glucose ever recorded in a living patient (about 2700 mg/dL).
GLUCOSE_RANGES: dict[str, PhysicalRange] = {
    "mg/dL": PhysicalRange(0, 5000, "mg/dL", low_open=True),
    "mmol/L": PhysicalRange(0, 277.5, "mmol/L", low_open=True),
}
#: Glucose Measurement Context values: HbA1c is a percentage; amounts are not negative.
HBA1C_RANGE = PhysicalRange(0, 100, "%")
CARBOHYDRATE_RANGE = PhysicalRange(0, float("inf"), "g")
MEDICATION_RANGE = PhysicalRange(0, float("inf"), "mg or mL")

# Powers of ten from the wire unit to the clinical unit.
_KG_PER_L_TO_MG_PER_DL = 5
_MOL_PER_L_TO_MMOL_PER_L = 3


class GlucoseUnit(enum.StrEnum):
    """Unit of the model's `concentration` (UCUM)."""

    MG_DL = "mg/dL"  # sent as kg/L
    MMOL_L = "mmol/L"  # sent as mol/L


class GlucoseType(enum.StrEnum):
    """Type of the sample (low nibble of the type-sample location byte)."""

    RESERVED = "reserved"  # 0 and 11-15
    CAPILLARY_WHOLE_BLOOD = "capillary_whole_blood"
    CAPILLARY_PLASMA = "capillary_plasma"
    VENOUS_WHOLE_BLOOD = "venous_whole_blood"
    VENOUS_PLASMA = "venous_plasma"
    ARTERIAL_WHOLE_BLOOD = "arterial_whole_blood"
    ARTERIAL_PLASMA = "arterial_plasma"
    UNDETERMINED_WHOLE_BLOOD = "undetermined_whole_blood"
    UNDETERMINED_PLASMA = "undetermined_plasma"
    INTERSTITIAL_FLUID = "interstitial_fluid"
    CONTROL_SOLUTION = "control_solution"


#: Wire code of each type (RESERVED encodes as 0).
GLUCOSE_TYPE_CODES: dict[GlucoseType, int] = {t: i for i, t in enumerate(GlucoseType)}


class SampleLocation(enum.StrEnum):
    """Sample location (high nibble of the type-sample location byte)."""

    RESERVED = "reserved"  # 0 and 5-14
    FINGER = "finger"
    ALTERNATE_SITE_TEST = "alternate_site_test"
    EARLOBE = "earlobe"
    CONTROL_SOLUTION = "control_solution"
    NOT_AVAILABLE = "not_available"  # 15


SAMPLE_LOCATION_CODES: dict[SampleLocation, int] = {
    SampleLocation.RESERVED: 0,
    SampleLocation.FINGER: 1,
    SampleLocation.ALTERNATE_SITE_TEST: 2,
    SampleLocation.EARLOBE: 3,
    SampleLocation.CONTROL_SOLUTION: 4,
    SampleLocation.NOT_AVAILABLE: 15,
}
_TYPES_BY_CODE = {code: t for t, code in GLUCOSE_TYPE_CODES.items()}
_LOCATIONS_BY_CODE = {code: loc for loc, code in SAMPLE_LOCATION_CODES.items()}


class GlucoseSensorStatus(BitFlags):
    """Sensor Status Annunciation (u16). Bits 12-15 are reserved (a decoder rejects them)."""

    BITS: ClassVar[dict[str, int]] = {
        "battery_low": 1 << 0,
        "sensor_malfunction": 1 << 1,
        "sample_size_insufficient": 1 << 2,
        "strip_insertion_error": 1 << 3,
        "strip_type_incorrect": 1 << 4,
        "result_too_high": 1 << 5,
        "result_too_low": 1 << 6,
        "temperature_too_high": 1 << 7,
        "temperature_too_low": 1 << 8,
        "read_interrupted": 1 << 9,
        "general_device_fault": 1 << 10,
        "time_fault": 1 << 11,
    }
    WIDTH: ClassVar[int] = 16

    #: Device battery low at the time of measurement.
    battery_low: bool = False
    sensor_malfunction: bool = False
    sample_size_insufficient: bool = False
    strip_insertion_error: bool = False
    strip_type_incorrect: bool = False
    #: Result higher than the device can process.
    result_too_high: bool = False
    #: Result lower than the device can process.
    result_too_low: bool = False
    temperature_too_high: bool = False
    temperature_too_low: bool = False
    #: Read interrupted because the strip was pulled too soon.
    read_interrupted: bool = False
    general_device_fault: bool = False
    #: A time fault occurred in the sensor: the time may be inaccurate.
    time_fault: bool = False


class GlucoseMeasurement(Frozen):
    """A decoded 0x2A18.

    `sequence` numbers the meter's stored records (the key for RACP fetches and dedupe).
    `base_time` is the device clock (naive, None when the date is unknown) and
    `time_offset_minutes` the offset the meter adds to it (None when absent); `timestamp`
    combines both. `concentration`, `unit`, `sample_type`, `sample_location` are present
    together (flag bit 1) or all None. `context_follows` says a 0x2A34 with the same
    sequence number follows.
    """

    sequence: Annotated[int, Field(ge=0, le=0xFFFF)]
    base_time: NaiveDatetime
    time_offset_minutes: Annotated[int, Field(ge=-32768, le=32767)] | None = None
    concentration: MeasuredField | None = None
    unit: GlucoseUnit | None = None
    sample_type: GlucoseType | None = None
    sample_location: SampleLocation | None = None
    sensor_status: GlucoseSensorStatus | None = None
    context_follows: bool = False

    @model_validator(mode="after")
    def _concentration_fields_together(self) -> GlucoseMeasurement:
        present = [
            v is not None
            for v in (self.concentration, self.unit, self.sample_type, self.sample_location)
        ]
        if any(present) and not all(present):
            raise ValueError(
                "concentration, unit, sample_type and sample_location come together or not at all"
            )
        return self

    @property
    def timestamp(self) -> datetime | None:
        """Base time plus the time offset (None when the base time is unknown)."""
        if self.base_time is None:
            return None
        return self.base_time + timedelta(minutes=self.time_offset_minutes or 0)

    @property
    def is_device_error(self) -> bool:
        """The concentration field is present but a special value (no valid result)."""
        return isinstance(self.concentration, SpecialValue)

    @property
    def control_solution(self) -> bool:
        """A control-solution test (type 10 or sample location 4): the meter's quality
        check with a solution of known glucose, never the patient's blood glucose."""
        return (
            self.sample_type is GlucoseType.CONTROL_SOLUTION
            or self.sample_location is SampleLocation.CONTROL_SOLUTION
        )

    @property
    def non_patient_reason(self) -> str | None:
        """The string `control_solution` for a control-solution test, else None."""
        return "control_solution" if self.control_solution else None

    def status_names(self) -> list[str]:
        """`control_solution` first for a control-solution test, then the sensor status."""
        names = ["control_solution"] if self.control_solution else []
        if self.sensor_status is not None:
            names += self.sensor_status.names()
        return names

    def quantities(self) -> list[Quantity]:
        """The concentration as sent: mg/dL with LOINC 2339-0, or mmol/L with 15074-8.

        A special value gives `value=None`; a record without a concentration gives [].
        A control-solution test gives `value=None` too: it is no patient value and must
        never reach a chart or an alert (the model keeps the concentration it measured).
        """
        if self.concentration is None or self.unit is None:
            return []
        loinc = LOINC_GLUCOSE_MASS if self.unit is GlucoseUnit.MG_DL else LOINC_GLUCOSE_MOLES
        value = None if self.control_solution else number_or_none(self.concentration)
        return [Quantity(name="glucose", loinc=loinc, value=value, unit=self.unit.value)]


def _power(unit: GlucoseUnit) -> int:
    return _KG_PER_L_TO_MG_PER_DL if unit is GlucoseUnit.MG_DL else _MOL_PER_L_TO_MMOL_PER_L


def decode_glucose_measurement(data: bytes) -> GlucoseMeasurement:
    """Decode 0x2A18. Raises `DecodeError` (and nothing else) for a malformed payload."""
    r = ByteReader(data, GLUCOSE_MEASUREMENT)
    flags = r.uint(1, "flags")
    if flags & FLAGS_RESERVED:
        raise r.error(f"reserved flag bits set (flags 0x{flags:02X})", 0)
    sequence = r.uint(2, "sequence number")
    base_time = r.date_time()
    offset = None
    if flags & FLAG_TIME_OFFSET:
        offset = int.from_bytes(r.take(2, "time offset"), "little", signed=True)
    concentration: Measured | None = None
    unit = sample_type = location = None
    if flags & FLAG_CONCENTRATION:
        unit = GlucoseUnit.MMOL_L if flags & FLAG_MOL_PER_L else GlucoseUnit.MG_DL
        at = r.offset
        raw = r.sfloat("glucose concentration")
        concentration = raw if isinstance(raw, SpecialValue) else scale_decimal(raw, _power(unit))
        check_range(r, at, "glucose concentration", concentration, GLUCOSE_RANGES[unit.value])
        nibbles = r.uint(1, "type-sample location")
        sample_type = _TYPES_BY_CODE.get(nibbles & 0x0F, GlucoseType.RESERVED)
        location = _LOCATIONS_BY_CODE.get(nibbles >> 4, SampleLocation.RESERVED)
    status = None
    if flags & FLAG_SENSOR_STATUS:
        at = r.offset
        bits = r.uint(2, "sensor status annunciation")
        if GlucoseSensorStatus.reserved_bits(bits):
            raise r.error(f"reserved sensor status bits set (0x{bits:04X})", at)
        status = GlucoseSensorStatus.from_bits(bits)
    r.finish()
    return GlucoseMeasurement(
        sequence=sequence,
        base_time=base_time,
        time_offset_minutes=offset,
        concentration=concentration,
        unit=unit,
        sample_type=sample_type,
        sample_location=location,
        sensor_status=status,
        context_follows=bool(flags & FLAG_CONTEXT_FOLLOWS),
    )


def encode_glucose_measurement(m: GlucoseMeasurement) -> bytes:
    """Encode 0x2A18; the flags follow from the optional fields.

    The concentration must be exact in SFLOAT once converted to kg/L or mol/L (e.g. 95
    mg/dL -> 95e-5 kg/L); EncodeError otherwise. Reserved type/location encode as 0.
    """
    flags = FLAG_CONTEXT_FOLLOWS if m.context_follows else 0
    body = m.sequence.to_bytes(2, "little") + encode_date_time(m.base_time)
    if m.time_offset_minutes is not None:
        flags |= FLAG_TIME_OFFSET
        body += m.time_offset_minutes.to_bytes(2, "little", signed=True)
    if m.concentration is not None:
        assert m.unit is not None and m.sample_type is not None
        assert m.sample_location is not None
        flags |= FLAG_CONCENTRATION
        if m.unit is GlucoseUnit.MMOL_L:
            flags |= FLAG_MOL_PER_L
        value = m.concentration
        if not isinstance(value, SpecialValue):
            value = scale_decimal(value, -_power(m.unit))
        body += encode_sfloat(value).to_bytes(2, "little")
        body += bytes(
            (GLUCOSE_TYPE_CODES[m.sample_type] | SAMPLE_LOCATION_CODES[m.sample_location] << 4,)
        )
    if m.sensor_status is not None:
        flags |= FLAG_SENSOR_STATUS
        body += m.sensor_status.to_bits().to_bytes(2, "little")
    return bytes((flags,)) + body


# --- Glucose Feature 0x2A51 ---------------------------------------------------------------

_GLUCOSE_FEATURE_BITS = (
    "low_battery_detection",
    "sensor_malfunction_detection",
    "sample_size",
    "strip_insertion_error_detection",
    "strip_type_error_detection",
    "result_high_low_detection",
    "temperature_high_low_detection",
    "read_interrupt_detection",
    "general_device_fault",
    "time_fault",
    "multiple_bond",
)
_GLUCOSE_FEATURE_NAMED = (1 << len(_GLUCOSE_FEATURE_BITS)) - 1


class GlucoseFeature(Frozen):
    """0x2A51 (u16): what the meter can detect. Bits 11-15 are kept in `other_bits`
    (this characteristic only informs; an unknown bit must not cost a device)."""

    low_battery_detection: bool = False
    sensor_malfunction_detection: bool = False
    sample_size: bool = False
    strip_insertion_error_detection: bool = False
    strip_type_error_detection: bool = False
    result_high_low_detection: bool = False
    temperature_high_low_detection: bool = False
    read_interrupt_detection: bool = False
    general_device_fault: bool = False
    time_fault: bool = False
    multiple_bond: bool = False
    other_bits: Annotated[int, Field(ge=0, le=0xFFFF)] = 0

    @field_validator("other_bits")
    @classmethod
    def _no_named_bits(cls, value: int) -> int:
        if value & _GLUCOSE_FEATURE_NAMED:
            raise ValueError("other_bits must not overlap the named bits 0-10")
        return value


def decode_glucose_feature(data: bytes) -> GlucoseFeature:
    """Decode 0x2A51 (exactly 2 bytes)."""
    r = ByteReader(data, GLUCOSE_FEATURE)
    bits = r.uint(2, "features")
    r.finish()
    named = {name: bool(bits & (1 << i)) for i, name in enumerate(_GLUCOSE_FEATURE_BITS)}
    return GlucoseFeature(**named, other_bits=bits & ~_GLUCOSE_FEATURE_NAMED)


def encode_glucose_feature(feature: GlucoseFeature) -> bytes:
    bits = feature.other_bits
    for i, name in enumerate(_GLUCOSE_FEATURE_BITS):
        if getattr(feature, name):
            bits |= 1 << i
    return bits.to_bytes(2, "little")


# --- Glucose Measurement Context 0x2A34 ----------------------------------------------------
#
# flags u8 | sequence u16 | [extended flags u8] | [carbohydrate id u8 | carbohydrate SFLOAT kg]
# | [meal u8] | [tester-health u8] | [exercise duration u16 s | exercise intensity u8 %]
# | [medication id u8 | medication SFLOAT kg or L] | [HbA1c SFLOAT %]

CTX_FLAG_CARBOHYDRATE = 0x01
CTX_FLAG_MEAL = 0x02
CTX_FLAG_TESTER_HEALTH = 0x04
CTX_FLAG_EXERCISE = 0x08
CTX_FLAG_MEDICATION = 0x10
CTX_FLAG_MEDICATION_LITERS = 0x20
CTX_FLAG_HBA1C = 0x40
CTX_FLAG_EXTENDED = 0x80


class Meal(enum.StrEnum):
    RESERVED = "reserved"  # 0 and 6-255
    PREPRANDIAL = "preprandial"
    POSTPRANDIAL = "postprandial"
    FASTING = "fasting"
    CASUAL = "casual"
    BEDTIME = "bedtime"


_MEALS = list(Meal)


class GlucoseContext(Frozen):
    """A decoded 0x2A34 (decoded minimally: ids and nibbles are kept as sent).

    `sequence` links it to the 0x2A18 with the same sequence number. Carbohydrate is in g
    (sent in kg), medication in mg or mL (sent in kg or L, see `medication_liters`),
    HbA1c in %. Only `meal` is named; the other codes are listed in docs/devices.md.
    """

    sequence: Annotated[int, Field(ge=0, le=0xFFFF)]
    extended_flags: Annotated[int, Field(ge=0, le=255)] | None = None
    carbohydrate_id: Annotated[int, Field(ge=0, le=255)] | None = None
    carbohydrate_g: MeasuredField | None = None
    meal: Meal | None = None
    tester: Annotated[int, Field(ge=0, le=15)] | None = None
    health: Annotated[int, Field(ge=0, le=15)] | None = None
    exercise_duration_s: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    exercise_intensity_percent: Annotated[int, Field(ge=0, le=255)] | None = None
    medication_id: Annotated[int, Field(ge=0, le=255)] | None = None
    medication: MeasuredField | None = None
    medication_liters: bool = False
    hba1c_percent: MeasuredField | None = None

    @model_validator(mode="after")
    def _pairs(self) -> GlucoseContext:
        pairs = (
            (self.carbohydrate_id, self.carbohydrate_g),
            (self.tester, self.health),
            (self.exercise_duration_s, self.exercise_intensity_percent),
            (self.medication_id, self.medication),
        )
        if any((a is None) != (b is None) for a, b in pairs):
            raise ValueError("paired context fields come together or not at all")
        return self


def _scaled(value: Measured, power: int) -> Measured:
    return value if isinstance(value, SpecialValue) else scale_decimal(value, power)


def decode_glucose_context(data: bytes) -> GlucoseContext:
    """Decode 0x2A34. Raises `DecodeError` (and nothing else) for a malformed payload."""
    r = ByteReader(data, GLUCOSE_MEASUREMENT_CONTEXT)
    flags = r.uint(1, "flags")
    fields: dict[str, object] = {"sequence": r.uint(2, "sequence number")}
    if flags & CTX_FLAG_EXTENDED:
        fields["extended_flags"] = r.uint(1, "extended flags")
    if flags & CTX_FLAG_CARBOHYDRATE:
        fields["carbohydrate_id"] = r.uint(1, "carbohydrate id")
        at = r.offset
        carbohydrate = _scaled(r.sfloat("carbohydrate"), 3)
        check_range(r, at, "carbohydrate", carbohydrate, CARBOHYDRATE_RANGE)
        fields["carbohydrate_g"] = carbohydrate
    if flags & CTX_FLAG_MEAL:
        meal = r.uint(1, "meal")
        fields["meal"] = _MEALS[meal] if meal < len(_MEALS) else Meal.RESERVED
    if flags & CTX_FLAG_TESTER_HEALTH:
        nibbles = r.uint(1, "tester-health")
        fields["tester"], fields["health"] = nibbles & 0x0F, nibbles >> 4
    if flags & CTX_FLAG_EXERCISE:
        fields["exercise_duration_s"] = r.uint(2, "exercise duration")
        fields["exercise_intensity_percent"] = r.uint(1, "exercise intensity")
    if flags & CTX_FLAG_MEDICATION:
        fields["medication_id"] = r.uint(1, "medication id")
        # kg -> mg is 1e6; L -> mL is 1e3.
        power = 3 if flags & CTX_FLAG_MEDICATION_LITERS else 6
        at = r.offset
        medication = _scaled(r.sfloat("medication"), power)
        check_range(r, at, "medication", medication, MEDICATION_RANGE)
        fields["medication"] = medication
    fields["medication_liters"] = bool(flags & CTX_FLAG_MEDICATION_LITERS)
    if flags & CTX_FLAG_HBA1C:
        at = r.offset
        hba1c = r.sfloat("HbA1c")
        check_range(r, at, "HbA1c", hba1c, HBA1C_RANGE)
        fields["hba1c_percent"] = hba1c
    r.finish()
    return GlucoseContext.model_validate(fields)


def encode_glucose_context(c: GlucoseContext) -> bytes:
    """Encode 0x2A34 (the simulator's side). Meal RESERVED encodes as 0."""
    flags = CTX_FLAG_MEDICATION_LITERS if c.medication_liters else 0
    body = c.sequence.to_bytes(2, "little")
    if c.extended_flags is not None:
        flags |= CTX_FLAG_EXTENDED
        body += bytes((c.extended_flags,))
    if c.carbohydrate_id is not None and c.carbohydrate_g is not None:
        flags |= CTX_FLAG_CARBOHYDRATE
        body += bytes((c.carbohydrate_id,))
        body += encode_sfloat(_scaled(c.carbohydrate_g, -3)).to_bytes(2, "little")
    if c.meal is not None:
        flags |= CTX_FLAG_MEAL
        body += bytes((_MEALS.index(c.meal),))
    if c.tester is not None and c.health is not None:
        flags |= CTX_FLAG_TESTER_HEALTH
        body += bytes((c.tester | c.health << 4,))
    if c.exercise_duration_s is not None and c.exercise_intensity_percent is not None:
        flags |= CTX_FLAG_EXERCISE
        body += c.exercise_duration_s.to_bytes(2, "little")
        body += bytes((c.exercise_intensity_percent,))
    if c.medication_id is not None and c.medication is not None:
        flags |= CTX_FLAG_MEDICATION
        power = 3 if c.medication_liters else 6
        body += bytes((c.medication_id,))
        body += encode_sfloat(_scaled(c.medication, -power)).to_bytes(2, "little")
    if c.hba1c_percent is not None:
        flags |= CTX_FLAG_HBA1C
        body += encode_sfloat(c.hba1c_percent).to_bytes(2, "little")
    return bytes((flags,)) + body


__all__ = [
    "GLUCOSE_FEATURE",
    "GLUCOSE_MEASUREMENT",
    "GLUCOSE_MEASUREMENT_CONTEXT",
    "GLUCOSE_RANGES",
    "LOINC_GLUCOSE_MASS",
    "LOINC_GLUCOSE_MOLES",
    "EncodeError",
    "GlucoseContext",
    "GlucoseFeature",
    "GlucoseMeasurement",
    "GlucoseSensorStatus",
    "GlucoseType",
    "GlucoseUnit",
    "Meal",
    "SampleLocation",
    "decode_glucose_context",
    "decode_glucose_feature",
    "decode_glucose_measurement",
    "encode_glucose_context",
    "encode_glucose_feature",
    "encode_glucose_measurement",
]
