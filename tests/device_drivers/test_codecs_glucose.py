"""Glucose Measurement 2A18, Measurement Context 2A34 and Feature 2A51, from hand-built bytes."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from device_drivers.codecs import (
    DecodeError,
    EncodeError,
    GlucoseContext,
    GlucoseFeature,
    GlucoseMeasurement,
    GlucoseSensorStatus,
    GlucoseType,
    GlucoseUnit,
    Meal,
    SampleLocation,
    SpecialValue,
    decode_glucose_context,
    decode_glucose_feature,
    decode_glucose_measurement,
    decode_sfloat,
    encode_glucose_context,
    encode_glucose_feature,
    encode_glucose_measurement,
)
from device_drivers.codecs.common import scale_decimal
from device_drivers.codecs.glucose import GLUCOSE_RANGES
from hemhub.contract import Quantity

BASE = "e9070102081e00"  # 2025-01-02 08:30:00
# flags 0B (offset, concentration kg/L, status) | seq 1 | base | offset -60 min (0xFFC4)
# | 0xB05F = 95e-5 kg/L = 95 mg/dL | 0x11 capillary whole blood, finger | status 0x0001
FULL = bytes.fromhex(f"0b 0100 {BASE} c4ff 5fb0 11 0100")
FIELD_STARTS = [0, 1, 3, 10, 12, 14, 15]


def test_full_mg_dl() -> None:
    m = decode_glucose_measurement(FULL)
    assert m == GlucoseMeasurement(
        sequence=1,
        base_time=datetime(2025, 1, 2, 8, 30),
        time_offset_minutes=-60,
        concentration=95.0,
        unit=GlucoseUnit.MG_DL,
        sample_type=GlucoseType.CAPILLARY_WHOLE_BLOOD,
        sample_location=SampleLocation.FINGER,
        sensor_status=GlucoseSensorStatus(battery_low=True),
    )
    assert m.timestamp == datetime(2025, 1, 2, 7, 30)
    assert m.status_names() == ["battery_low"]
    assert not m.is_device_error
    assert m.quantities() == [Quantity(name="glucose", loinc="2339-0", value=95.0, unit="mg/dL")]
    assert encode_glucose_measurement(m) == FULL


def test_mmol_l() -> None:
    # flags 06 | seq 2 | base | 0xC03F = 63e-4 mol/L = 6.3 mmol/L | 0x12 capillary plasma, finger
    data = bytes.fromhex(f"06 0200 {BASE} 3fc0 12")
    m = decode_glucose_measurement(data)
    assert (m.concentration, m.unit) == (6.3, GlucoseUnit.MMOL_L)
    assert m.sample_type is GlucoseType.CAPILLARY_PLASMA
    assert m.quantities() == [Quantity(name="glucose", loinc="15074-8", value=6.3, unit="mmol/L")]
    assert encode_glucose_measurement(m) == data


def test_record_without_concentration() -> None:
    m = decode_glucose_measurement(bytes.fromhex(f"10 0700 {BASE}"))
    assert m.concentration is None and m.context_follows
    assert m.quantities() == [] and m.status_names() == []
    assert m.timestamp == datetime(2025, 1, 2, 8, 30)


def test_unit_bit_without_concentration_is_ignored() -> None:
    m = decode_glucose_measurement(bytes.fromhex(f"04 0700 {BASE}"))
    assert m.unit is None


@pytest.mark.parametrize("flags", range(0x20))
def test_every_flag_combination(flags: int) -> None:
    data = bytes((flags,)) + bytes.fromhex(f"0300 {BASE}")
    if flags & 0x01:
        data += bytes.fromhex("1e00")
    if flags & 0x02:
        data += bytes.fromhex("5fb0 11")
    if flags & 0x08:
        data += bytes.fromhex("0004")
    m = decode_glucose_measurement(data)
    assert (m.time_offset_minutes is not None) == bool(flags & 0x01)
    assert (m.concentration is not None) == bool(flags & 0x02)
    assert (m.sensor_status is not None) == bool(flags & 0x08)
    assert m.context_follows == bool(flags & 0x10)
    if flags & 0x02:
        expected = 0.95 if flags & 0x04 else 95.0  # 95e-5 mol/L = 0.95 mmol/L
        assert m.concentration == expected
        assert encode_glucose_measurement(m) == data
    else:
        assert encode_glucose_measurement(m) == bytes((flags & ~0x04,)) + data[1:]


def test_nan_concentration_is_device_error() -> None:
    m = decode_glucose_measurement(bytes.fromhex(f"0a 0400 {BASE} ff07 11 2000"))
    assert m.is_device_error
    assert m.concentration is SpecialValue.NAN
    assert m.quantities()[0].value is None
    assert m.status_names() == ["result_too_high"]


@pytest.mark.parametrize("special", ["0008", "fe07", "0208", "0108"])
def test_every_special_concentration_is_missing(special: str) -> None:
    m = decode_glucose_measurement(bytes.fromhex(f"02 0400 {BASE} {special} 11"))
    assert isinstance(m.concentration, SpecialValue)
    assert m.quantities()[0].value is None


@pytest.mark.parametrize(
    ("nibble", "sample_type"),
    [
        (0, GlucoseType.RESERVED),
        *((i, t) for i, t in enumerate(GlucoseType) if i),
        (11, GlucoseType.RESERVED),
        (15, GlucoseType.RESERVED),
    ],
)
def test_type_nibble(nibble: int, sample_type: GlucoseType) -> None:
    m = decode_glucose_measurement(bytes.fromhex(f"02 0400 {BASE} 5fb0") + bytes((0x10 | nibble,)))
    assert m.sample_type is sample_type
    assert m.sample_location is SampleLocation.FINGER


def test_type_names() -> None:
    assert [t.value for t in GlucoseType][1:] == [
        "capillary_whole_blood",
        "capillary_plasma",
        "venous_whole_blood",
        "venous_plasma",
        "arterial_whole_blood",
        "arterial_plasma",
        "undetermined_whole_blood",
        "undetermined_plasma",
        "interstitial_fluid",
        "control_solution",
    ]


@pytest.mark.parametrize(
    ("nibble", "location"),
    [
        (0, SampleLocation.RESERVED),
        (1, SampleLocation.FINGER),
        (2, SampleLocation.ALTERNATE_SITE_TEST),
        (3, SampleLocation.EARLOBE),
        (4, SampleLocation.CONTROL_SOLUTION),
        (5, SampleLocation.RESERVED),
        (14, SampleLocation.RESERVED),
        (15, SampleLocation.NOT_AVAILABLE),
    ],
)
def test_location_nibble(nibble: int, location: SampleLocation) -> None:
    m = decode_glucose_measurement(
        bytes.fromhex(f"02 0400 {BASE} 5fb0") + bytes((nibble << 4 | 1,))
    )
    assert m.sample_location is location


@pytest.mark.parametrize(
    ("bit", "name"), [(1 << i, name) for i, name in enumerate(GlucoseSensorStatus.BITS)]
)
def test_each_sensor_status_bit(bit: int, name: str) -> None:
    data = bytes.fromhex(f"08 0400 {BASE}") + bit.to_bytes(2, "little")
    m = decode_glucose_measurement(data)
    assert m.status_names() == [name]
    assert encode_glucose_measurement(m) == data


def test_sensor_status_names() -> None:
    assert list(GlucoseSensorStatus.BITS) == [
        "battery_low",
        "sensor_malfunction",
        "sample_size_insufficient",
        "strip_insertion_error",
        "strip_type_incorrect",
        "result_too_high",
        "result_too_low",
        "temperature_too_high",
        "temperature_too_low",
        "read_interrupted",
        "general_device_fault",
        "time_fault",
    ]


@pytest.mark.parametrize("bits", [0x1000, 0x8000])
def test_reserved_sensor_status_bits(bits: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_measurement(bytes.fromhex(f"08 0400 {BASE}") + bits.to_bytes(2, "little"))
    assert (info.value.characteristic, info.value.offset) == ("2A18", 10)


@pytest.mark.parametrize("length", range(len(FULL)))
def test_truncated_at_every_length(length: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_measurement(FULL[:length])
    expected = max(start for start in FIELD_STARTS if start <= length)
    assert (info.value.characteristic, info.value.offset) == ("2A18", expected)


@pytest.mark.parametrize("bit", [0x20, 0x40, 0x80])
def test_reserved_flags(bit: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_measurement(bytes((bit,)) + bytes.fromhex(f"0100 {BASE}"))
    assert info.value.offset == 0


def test_over_long() -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_measurement(FULL + b"\x00")
    assert info.value.offset == len(FULL)


def test_base_time_invalid_or_unknown() -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_measurement(bytes.fromhex("00 0100 e9070d02081e00"))  # month 13
    assert info.value.offset == 5
    m = decode_glucose_measurement(bytes.fromhex("01 0100 00000000000000 3c00"))
    assert m.base_time is None and m.timestamp is None


def test_model_fields_come_together() -> None:
    with pytest.raises(ValidationError):
        GlucoseMeasurement(sequence=1, base_time=None, concentration=95.0)


def test_encode_rejects_inexact() -> None:
    m = GlucoseMeasurement(
        sequence=1,
        base_time=None,
        concentration=1 / 3,
        unit=GlucoseUnit.MG_DL,
        sample_type=GlucoseType.CAPILLARY_PLASMA,
        sample_location=SampleLocation.FINGER,
    )
    with pytest.raises(EncodeError):
        encode_glucose_measurement(m)


# --- Context 2A34 --------------------------------------------------------------------------


def test_context_every_field() -> None:
    # flags 0xDF: carbohydrate, meal, tester-health, exercise, medication (kg), HbA1c,
    # extended flags | seq 1 | ext 00 | carb id 1 (breakfast) 0xD032 = 50e-3 kg = 50 g
    # | meal 1 preprandial | tester 1 self, health 5 no issues (0x51)
    # | exercise 1800 s, 50 % | medication id 1, 0xA00A = 10e-6 kg = 10 mg | HbA1c 0xF03A = 5.8
    data = bytes.fromhex("df 0100 00 01 32d0 01 51 0807 32 01 0aa0 3af0")
    c = decode_glucose_context(data)
    assert c == GlucoseContext(
        sequence=1,
        extended_flags=0,
        carbohydrate_id=1,
        carbohydrate_g=50.0,
        meal=Meal.PREPRANDIAL,
        tester=1,
        health=5,
        exercise_duration_s=1800,
        exercise_intensity_percent=50,
        medication_id=1,
        medication=10.0,
        hba1c_percent=5.8,
    )
    # The encoder spells 50e-3 kg as 5e-2 and 10e-6 kg as 1e-5: the same values.
    assert encode_glucose_context(c) == bytes.fromhex(
        "df 0100 00 01 05e0 01 51 0807 32 01 01b0 3af0"
    )
    assert decode_glucose_context(encode_glucose_context(c)) == c


def test_context_minimal_and_liters() -> None:
    assert decode_glucose_context(bytes.fromhex("00 0900")) == GlucoseContext(sequence=9)
    # medication in liters: 0xD00A = 10e-3 L = 10 mL
    c = decode_glucose_context(bytes.fromhex("30 0900 02 0ad0"))
    assert (c.medication_id, c.medication, c.medication_liters) == (2, 10.0, True)
    assert encode_glucose_context(c) == bytes.fromhex("30 0900 02 01e0")  # 1e-2 L


def test_context_reserved_meal() -> None:
    assert decode_glucose_context(bytes.fromhex("02 0100 09")).meal is Meal.RESERVED


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        ("", 0),
        ("df", 1),
        ("df 0100", 3),
        ("df 0100 00 01 32", 5),
        ("02 0100", 3),
        ("00 0100 00", 3),
    ],
)
def test_context_malformed(data: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_context(bytes.fromhex(data))
    assert (info.value.characteristic, info.value.offset) == ("2A34", offset)


# --- Feature 2A51 --------------------------------------------------------------------------


def test_feature() -> None:
    f = decode_glucose_feature(bytes.fromhex("0304"))
    assert f == GlucoseFeature(
        low_battery_detection=True, sensor_malfunction_detection=True, multiple_bond=True
    )
    assert encode_glucose_feature(f) == bytes.fromhex("0304")
    f = decode_glucose_feature(bytes.fromhex("0080"))
    assert f.other_bits == 0x8000
    with pytest.raises(DecodeError) as info:
        decode_glucose_feature(b"\x00")
    assert (info.value.characteristic, info.value.offset) == ("2A51", 0)


# --- properties ----------------------------------------------------------------------------


@st.composite
def measurements(draw: st.DrawFn) -> GlucoseMeasurement:
    fields: dict[str, object] = {
        "sequence": draw(st.integers(0, 0xFFFF)),
        "base_time": draw(
            st.none()
            | st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
                lambda d: d.replace(microsecond=0)
            )
        ),
        "time_offset_minutes": draw(st.none() | st.integers(-32768, 32767)),
        "sensor_status": draw(st.none() | st.integers(0, 0xFFF).map(GlucoseSensorStatus.from_bits)),
        "context_follows": draw(st.booleans()),
    }
    if draw(st.booleans()):
        unit = draw(st.sampled_from(list(GlucoseUnit)))
        power = 5 if unit is GlucoseUnit.MG_DL else 3
        allowed = GLUCOSE_RANGES[unit.value]
        # Concentrations a meter can send: above 0 and below the physical limit.
        raw = draw(
            st.integers(0, 0xFFFF)
            .map(decode_sfloat)
            .filter(lambda v: isinstance(v, SpecialValue) or scale_decimal(v, power) in allowed)
        )
        value = raw if isinstance(raw, SpecialValue) else scale_decimal(raw, power)
        fields |= {
            "concentration": value,
            "unit": unit,
            "sample_type": draw(st.sampled_from(list(GlucoseType))),
            "sample_location": draw(st.sampled_from(list(SampleLocation))),
        }
    return GlucoseMeasurement.model_validate(fields)


@given(measurements())
def test_encode_decode_identity(m: GlucoseMeasurement) -> None:
    assert decode_glucose_measurement(encode_glucose_measurement(m)) == m


@given(st.binary(min_size=2, max_size=2))
def test_feature_bytes_roundtrip(data: bytes) -> None:
    assert encode_glucose_feature(decode_glucose_feature(data)) == data


@given(
    st.builds(
        lambda flags, body: bytes((flags,)) + body,
        st.integers(0, 255),
        st.binary(min_size=2, max_size=16),
    )
)
def test_context_decode_encode_identity(data: bytes) -> None:
    try:
        c = decode_glucose_context(data)
    except DecodeError:
        return
    assert decode_glucose_context(encode_glucose_context(c)) == c


def test_is_a_clinical_measurement() -> None:
    from device_drivers.measurement import ClinicalMeasurement

    assert isinstance(decode_glucose_measurement(FULL), ClinicalMeasurement)


# --- physically impossible values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_", "reason"),
    [
        # 0xFFFF = -1e-1 kg/L: naively -10000 mg/dL
        (f"02 0100 {BASE} ffff 11", "glucose concentration -10000 mg/dL"),
        (f"02 0100 {BASE} 0000 11", "glucose concentration 0 mg/dL"),
        (f"06 0100 {BASE} ff0f 11", "glucose concentration -1000 mmol/L"),  # -1 mol/L
        (f"02 0100 {BASE} 0510 11", "glucose concentration 5e+06 mg/dL"),  # 50 kg/L
        (f"06 0100 {BASE} 1cd1 11", "glucose concentration 284 mmol/L"),  # 0.284 mol/L
    ],
)
def test_impossible_concentration_is_decode_error(hex_: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_measurement(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == ("2A18", 10)
    assert info.value.reason.startswith(f"{reason} outside the physical range above 0")


def test_impossible_concentration_offset_after_time_offset() -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_measurement(bytes.fromhex(f"03 0100 {BASE} c4ff ffff 11"))
    assert info.value.offset == 12


def test_extreme_but_possible_concentrations_are_values() -> None:
    m = decode_glucose_measurement(bytes.fromhex(f"02 0100 {BASE} 01c0 11"))  # 1e-4 kg/L
    assert m.concentration == 10.0
    m = decode_glucose_measurement(bytes.fromhex(f"02 0100 {BASE} 06d0 11"))  # 6e-3 kg/L
    assert m.concentration == 600.0
    with pytest.raises(DecodeError):
        decode_glucose_measurement(bytes.fromhex(f"06 0100 {BASE} 16d1 11"))  # 278 mmol/L
    m = decode_glucose_measurement(bytes.fromhex(f"06 0100 {BASE} 15d1 11"))  # 0.277 mol/L
    assert (m.concentration, m.unit) == (277.0, GlucoseUnit.MMOL_L)


@pytest.mark.parametrize(
    ("data", "offset", "field"),
    [
        ("01 0100 01 ff0f", 4, "carbohydrate"),  # -1 kg
        ("10 0100 01 ff0f", 4, "medication"),
        ("40 0100 6500", 3, "HbA1c"),  # 101 %
        ("40 0100 ff0f", 3, "HbA1c"),
    ],
)
def test_context_impossible_values(data: str, offset: int, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_glucose_context(bytes.fromhex(data))
    assert (info.value.characteristic, info.value.offset) == ("2A34", offset)
    assert info.value.reason.startswith(field)


# --- control solution: never a patient value ------------------------------------------------


@pytest.mark.parametrize(
    "nibbles",
    [
        0x1A,  # type 10 control solution, from a finger (location 1)
        0x41,  # capillary whole blood type, location 4 control solution
        0x4A,  # both
        0xFA,  # type 10, location not available
    ],
)
def test_control_solution_is_no_patient_value(nibbles: int) -> None:
    data = bytes.fromhex(f"0a 0700 {BASE} 5fb0") + bytes((nibbles,)) + bytes.fromhex("0100")
    m = decode_glucose_measurement(data)
    assert m.control_solution
    assert m.non_patient_reason == "control_solution"
    assert m.concentration == 95.0  # what the meter measured stays on the model
    assert not m.is_device_error  # the meter works: a quality check, not a failure
    [q] = m.quantities()
    assert (q.name, q.loinc, q.unit, q.value) == ("glucose", "2339-0", "mg/dL", None)
    assert m.status_names() == ["control_solution", "battery_low"]
    assert encode_glucose_measurement(m) == data


def test_patient_sample_is_a_value() -> None:
    m = decode_glucose_measurement(bytes.fromhex(f"02 0700 {BASE} 5fb0 11"))
    assert not m.control_solution and m.non_patient_reason is None
    assert [q.value for q in m.quantities()] == [95.0]
    assert m.status_names() == []
