"""Weight Measurement 2A9D and Weight Scale Feature 2A9E, from hand-built byte vectors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from device_drivers.codecs import (
    DecodeError,
    EncodeError,
    SpecialValue,
    WeightMeasurement,
    WeightScaleFeature,
    WeightUnit,
    decode_weight_measurement,
    decode_weight_scale_feature,
    encode_weight_measurement,
    encode_weight_scale_feature,
)
from hemhub.contract import Quantity

# flags 0E (SI, timestamp, user id, BMI+height) | weight 0x3A98 = 15000 * 0.005 = 75.0 kg
# | 2025-12-31 23:59:00 | user 2 | BMI 0x00F5 = 24.5 | height 0x06EA = 1770 * 0.001 = 1.77 m
FULL_SI = bytes.fromhex("0e 983a e9070c1f173b00 02 f500 ea06")
FIELD_STARTS = [0, 1, 3, 10, 11, 13]
# flags 0F (imperial + all): weight 0x466C = 18028 * 0.01 = 180.28 lb | BMI 25.0
# | height 0x02BC = 700 * 0.1 = 70.0 in
FULL_IMPERIAL = bytes.fromhex("0f 6c46 e9070c1f173b00 02 fa00 bc02")


def test_minimal_si() -> None:
    m = decode_weight_measurement(bytes.fromhex("00 983a"))
    assert m == WeightMeasurement(weight=75.0)
    assert m.unit is WeightUnit.KG
    assert m.quantities() == [Quantity(name="weight", loinc="29463-7", value=75.0, unit="kg")]
    assert encode_weight_measurement(m) == bytes.fromhex("00 983a")


def test_full_si() -> None:
    m = decode_weight_measurement(FULL_SI)
    assert m == WeightMeasurement(
        weight=75.0,
        timestamp=datetime(2025, 12, 31, 23, 59),
        user_id=2,
        bmi=24.5,
        height=1.77,
    )
    assert not m.is_device_error
    assert m.quantities() == [
        Quantity(name="weight", loinc="29463-7", value=75.0, unit="kg"),
        Quantity(name="bmi", loinc="39156-5", value=24.5, unit="kg/m2"),
        Quantity(name="height", loinc="8302-2", value=177.0, unit="cm"),
    ]
    assert encode_weight_measurement(m) == FULL_SI


def test_full_imperial_is_sent_in_kg_and_cm() -> None:
    m = decode_weight_measurement(FULL_IMPERIAL)
    assert m.imperial and m.unit is WeightUnit.LB
    assert (m.weight, m.bmi, m.height) == (180.28, 25.0, 70.0)
    # 180.28 lb * 0.45359237 = 81.773632... kg; 70.0 in * 2.54 = 177.8 cm
    assert m.quantities() == [
        Quantity(name="weight", loinc="29463-7", value=81.774, unit="kg"),
        Quantity(name="bmi", loinc="39156-5", value=25.0, unit="kg/m2"),
        Quantity(name="height", loinc="8302-2", value=177.8, unit="cm"),
    ]
    assert encode_weight_measurement(m) == FULL_IMPERIAL


@pytest.mark.parametrize(
    ("flags", "tail", "fields"),
    [
        (0x00, "", {}),
        (0x01, "", {"imperial": True}),
        (0x02, "e9070102081e00", {"timestamp": datetime(2025, 1, 2, 8, 30)}),
        (0x04, "ff", {"user_id": 255}),
        (0x08, "f500 ea06", {"bmi": 24.5, "height": 1.77}),
        (0x06, "e9070102081e00 01", {"timestamp": datetime(2025, 1, 2, 8, 30), "user_id": 1}),
        (0x0C, "03 f500 ea06", {"user_id": 3, "bmi": 24.5, "height": 1.77}),
    ],
)
def test_each_flag_combination(flags: int, tail: str, fields: dict[str, object]) -> None:
    data = bytes((flags,)) + bytes.fromhex("983a" + tail.replace(" ", ""))
    m = decode_weight_measurement(data)
    weight = 150.0 if flags & 0x01 else 75.0  # 15000 * 0.01 lb
    assert m == WeightMeasurement(weight=weight, **fields)  # type: ignore[arg-type]
    assert encode_weight_measurement(m) == data


def test_measurement_unsuccessful() -> None:
    m = decode_weight_measurement(bytes.fromhex("06 ffff e9070102081e00 01"))
    assert m.weight is SpecialValue.NAN
    assert m.is_device_error
    assert m.quantities() == [Quantity(name="weight", loinc="29463-7", value=None, unit="kg")]
    assert encode_weight_measurement(m) == bytes.fromhex("06 ffff e9070102081e00 01")


def test_largest_weight_is_a_number() -> None:
    m = decode_weight_measurement(bytes.fromhex("00 feff"))
    assert m.weight == 327.67  # 65534 * 0.005


def test_unknown_date_is_none() -> None:
    assert decode_weight_measurement(bytes.fromhex("02 983a") + bytes(7)).timestamp is None


@pytest.mark.parametrize("length", range(len(FULL_SI)))
def test_truncated_at_every_length(length: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_weight_measurement(FULL_SI[:length])
    expected = max(start for start in FIELD_STARTS if start <= length)
    assert (info.value.characteristic, info.value.offset) == ("2A9D", expected)
    assert "truncated" in info.value.reason


def test_truncated_height_names_its_offset() -> None:
    with pytest.raises(DecodeError) as info:
        decode_weight_measurement(bytes.fromhex("08 983a f500 ea"))
    assert info.value.offset == 5
    assert "height" in info.value.reason


@pytest.mark.parametrize("extra", [b"\x00", b"\x01\x02"])
def test_over_long(extra: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_weight_measurement(FULL_SI + extra)
    assert info.value.offset == len(FULL_SI)


@pytest.mark.parametrize("bit", [0x10, 0x20, 0x40, 0x80])
def test_reserved_flags(bit: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_weight_measurement(bytes((bit,)) + bytes.fromhex("983a"))
    assert info.value.offset == 0
    assert "reserved" in info.value.reason


def test_invalid_date() -> None:
    with pytest.raises(DecodeError) as info:
        decode_weight_measurement(bytes.fromhex("02 983a e907011f180000"))  # hour 24
    assert info.value.offset == 7


def test_model_rules() -> None:
    with pytest.raises(ValidationError):
        WeightMeasurement(weight=75.0, bmi=24.5)  # height missing
    with pytest.raises(ValidationError):
        WeightMeasurement(weight=SpecialValue.NRES)
    with pytest.raises(ValidationError):
        WeightMeasurement(weight=-1.0)
    with pytest.raises(ValidationError):
        WeightMeasurement(weight=1.0, timestamp=datetime(2025, 1, 1, tzinfo=UTC))
    assert WeightMeasurement(weight=float("nan")).weight is SpecialValue.NAN


@pytest.mark.parametrize(
    "m",
    [
        WeightMeasurement(weight=75.001),  # not a multiple of 0.005 kg
        WeightMeasurement(weight=327.675),  # would be 0xFFFF, the unsuccessful code
        WeightMeasurement(weight=75.0, bmi=24.55, height=1.77),
        WeightMeasurement(imperial=True, weight=150.0, bmi=24.5, height=70.05),
    ],
)
def test_encode_rejects_what_the_format_cannot_carry(m: WeightMeasurement) -> None:
    with pytest.raises(EncodeError):
        encode_weight_measurement(m)


# --- Feature 2A9E --------------------------------------------------------------------------


def test_feature() -> None:
    # timestamp, multiple users, BMI | weight resolution 7 (0.005 kg) | height resolution 3
    bits = 0x07 | 7 << 3 | 3 << 7
    data = bits.to_bytes(4, "little")
    assert data == bytes.fromhex("bf010000")
    f = decode_weight_scale_feature(data)
    assert f == WeightScaleFeature(
        timestamp_supported=True,
        multiple_users_supported=True,
        bmi_supported=True,
        weight_resolution_code=7,
        height_resolution_code=3,
    )
    assert (f.weight_resolution_kg, f.weight_resolution_lb) == (0.005, 0.01)
    assert (f.height_resolution_m, f.height_resolution_in) == (0.001, 0.1)
    assert encode_weight_scale_feature(f) == data


def test_feature_unspecified_and_reserved_resolutions() -> None:
    f = decode_weight_scale_feature(bytes.fromhex("00000000"))
    assert f.weight_resolution_kg is None and f.height_resolution_m is None
    f = decode_weight_scale_feature((15 << 3 | 7 << 7).to_bytes(4, "little"))
    assert (f.weight_resolution_code, f.height_resolution_code) == (15, 7)
    assert f.weight_resolution_lb is None and f.height_resolution_in is None


def test_feature_keeps_unknown_bits() -> None:
    f = decode_weight_scale_feature(bytes.fromhex("01040080"))
    assert f.timestamp_supported and f.other_bits == 0x80000400
    assert encode_weight_scale_feature(f) == bytes.fromhex("01040080")
    with pytest.raises(ValidationError):
        WeightScaleFeature(other_bits=0x01)


@pytest.mark.parametrize(("data", "offset"), [(b"", 0), (b"\x01\x00\x00", 0), (bytes(5), 4)])
def test_feature_length(data: bytes, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_weight_scale_feature(data)
    assert (info.value.characteristic, info.value.offset) == ("2A9E", offset)


# --- properties ----------------------------------------------------------------------------

timestamps = st.none() | st.datetimes(
    min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)
).map(lambda d: d.replace(microsecond=0))


@st.composite
def weight_measurements(draw: st.DrawFn) -> WeightMeasurement:
    imperial = draw(st.booleans())
    weight_raw = draw(st.integers(1, 0xFFFF))  # 0 kg is no weight
    step = 0.01 if imperial else 0.005
    fields: dict[str, object] = {
        "imperial": imperial,
        "weight": SpecialValue.NAN if weight_raw == 0xFFFF else float(round(weight_raw * step, 3)),
        "timestamp": draw(timestamps),
        "user_id": draw(st.none() | st.integers(0, 255)),
    }
    if draw(st.booleans()):
        # Physically possible: BMI above 0 up to 300 kg/m2, height above 0 up to 3 m.
        fields["bmi"] = draw(st.integers(1, 3000)) / 10
        fields["height"] = draw(st.integers(1, 1181 if imperial else 3000)) / (
            10 if imperial else 1000
        )
    return WeightMeasurement.model_validate(fields)


@given(weight_measurements())
def test_encode_decode_identity(m: WeightMeasurement) -> None:
    assert decode_weight_measurement(encode_weight_measurement(m)) == m


@given(st.integers(0, 0xFFFFFFFF))
def test_feature_bytes_roundtrip(bits: int) -> None:
    data = bits.to_bytes(4, "little")
    assert encode_weight_scale_feature(decode_weight_scale_feature(data)) == data


def test_is_a_clinical_measurement() -> None:
    from device_drivers.measurement import ClinicalMeasurement

    m = decode_weight_measurement(FULL_SI)
    assert isinstance(m, ClinicalMeasurement)
    assert m.status_names() == []


# --- physically impossible values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_", "offset", "reason"),
    [
        ("00 0000", 1, "weight 0 kg outside the physical range above 0 kg"),
        ("01 0000", 1, "weight 0 [lb_av] outside the physical range above 0 [lb_av]"),
        ("08 983a 0000 ea06", 3, "BMI 0 kg/m2 outside the physical range above 0 up to 300"),
        ("08 983a b90b ea06", 3, "BMI 300.1 kg/m2 outside"),
        ("08 983a f500 0000", 5, "height 0 m outside the physical range above 0 up to 3 m"),
        ("08 983a f500 b90b", 5, "height 3.001 m outside"),
        ("0a 983a e9070102081e00 f500 b90b", 12, "height 3.001 m outside"),
        ("09 983a f500 b004", 5, "height 120 [in_i] (3.048 m) outside"),
    ],
)
def test_impossible_values_are_decode_errors(hex_: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_weight_measurement(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == ("2A9D", offset)
    assert info.value.reason.startswith(reason)


def test_smallest_values_are_numbers() -> None:
    m = decode_weight_measurement(bytes.fromhex("08 0100 0100 0100"))
    assert (m.weight, m.bmi, m.height) == (0.005, 0.1, 0.001)
    m = decode_weight_measurement(bytes.fromhex("08 983a b80b b80b"))
    assert (m.bmi, m.height) == (300.0, 3.0)
