"""Blood Pressure Measurement 2A35, Intermediate Cuff Pressure 2A36 and Feature 2A49."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from device_drivers.codecs import (
    KPA_TO_MMHG,
    BloodPressureFeature,
    BloodPressureMeasurement,
    BloodPressureStatus,
    BloodPressureUnit,
    DecodeError,
    EncodeError,
    PulseRange,
    SpecialValue,
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
    decode_sfloat,
    encode_blood_pressure_feature,
    encode_blood_pressure_measurement,
)
from device_drivers.codecs.blood_pressure import PRESSURE_RANGE
from device_drivers.codecs.common import PULSE_RATE_RANGE
from device_drivers.codecs.ieee11073 import Measured
from hemhub.contract import Quantity

# Every flag: mmHg, timestamp, pulse, user id, status.
#   flags 1E | sys 120 | dia 80 | MAP 90 | 2025-12-31 23:59:00 | pulse 72 | user 2
#   | status irregular pulse + pulse above range (0x000C)
FULL = bytes.fromhex("1e 7800 5000 5a00 e9070c1f173b00 4800 02 0c00")
# Field start offsets of FULL, for the truncation test.
FIELD_STARTS = [0, 1, 3, 5, 7, 14, 16, 17]

NAN = bytes.fromhex("ff07")


def test_full_measurement_every_flag() -> None:
    m = decode_blood_pressure_measurement(FULL)
    assert m == BloodPressureMeasurement(
        unit=BloodPressureUnit.MMHG,
        systolic=120.0,
        diastolic=80.0,
        mean_arterial=90.0,
        timestamp=datetime(2025, 12, 31, 23, 59, 0),
        pulse=72.0,
        user_id=2,
        status=BloodPressureStatus(irregular_pulse=True, pulse_range=PulseRange.ABOVE),
    )
    assert not m.is_device_error
    assert m.status is not None and m.status.names() == ["irregular_pulse", "pulse_above_range"]
    assert m.quantities() == [
        Quantity(name="systolic", loinc="8480-6", value=120.0, unit="mm[Hg]"),
        Quantity(name="diastolic", loinc="8462-4", value=80.0, unit="mm[Hg]"),
        Quantity(name="mean_arterial", loinc="8478-0", value=90.0, unit="mm[Hg]"),
        Quantity(name="pulse", loinc="8867-4", value=72.0, unit="/min"),
    ]
    assert encode_blood_pressure_measurement(m) == FULL


def test_minimal_measurement() -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("00 7800 5000 5a00"))
    assert (m.timestamp, m.pulse, m.user_id, m.status) == (None, None, None, None)
    assert [q.name for q in m.quantities()] == ["systolic", "diastolic", "mean_arterial"]


def test_kpa_is_converted_to_mmhg() -> None:
    # 16.0 / 10.7 / 12.5 kPa (exponent -1), pulse 60
    data = bytes.fromhex("05 a0f0 6bf0 7df0 3c00")
    m = decode_blood_pressure_measurement(data)
    assert m.unit is BloodPressureUnit.KPA
    assert (m.systolic, m.diastolic, m.mean_arterial) == (16.0, 10.7, 12.5)
    values = {q.name: (q.value, q.unit) for q in m.quantities()}
    assert values == {
        "systolic": (120.0, "mm[Hg]"),
        "diastolic": (80.3, "mm[Hg]"),
        "mean_arterial": (93.8, "mm[Hg]"),
        "pulse": (60.0, "/min"),
    }
    # The encoder writes 16.0 as mantissa 16, exponent 0: another spelling of the same value.
    assert encode_blood_pressure_measurement(m) == bytes.fromhex("05 1000 6bf0 7df0 3c00")
    assert decode_blood_pressure_measurement(encode_blood_pressure_measurement(m)) == m


def test_all_nan_error_reading() -> None:
    # What a cuff sends after a failed measurement: NaN everywhere, status 0.
    data = bytes.fromhex("14") + NAN * 3 + NAN + bytes.fromhex("0000")
    m = decode_blood_pressure_measurement(data)
    assert m.is_device_error
    assert m.systolic is SpecialValue.NAN
    quantities = m.quantities()
    assert [q.value for q in quantities] == [None, None, None, None]
    assert all(q.value != 2047 for q in quantities)
    assert m.status == BloodPressureStatus()
    assert m.status.names() == []


def test_partial_nan_pulse() -> None:
    data = bytes.fromhex("04 7800 5000 5a00") + NAN
    m = decode_blood_pressure_measurement(data)
    assert not m.is_device_error
    assert m.pulse is SpecialValue.NAN
    pulse = [q for q in m.quantities() if q.name == "pulse"]
    assert pulse == [Quantity(name="pulse", loinc="8867-4", value=None, unit="/min")]


@pytest.mark.parametrize(
    "special", [bytes.fromhex(h) for h in ("0008", "fe07", "0208", "0108")], ids=str
)
def test_every_special_pressure_is_missing(special: bytes) -> None:
    m = decode_blood_pressure_measurement(b"\x00" + special + bytes.fromhex("5000 5a00"))
    assert isinstance(m.systolic, SpecialValue)
    assert m.quantities()[0].value is None
    assert not m.is_device_error


@pytest.mark.parametrize(
    ("bits", "names"),
    [
        (0x0000, []),
        (0x0001, ["body_movement"]),
        (0x0002, ["cuff_too_loose"]),
        (0x0004, ["irregular_pulse"]),
        (0x0008, ["pulse_above_range"]),
        (0x0010, ["pulse_below_range"]),
        (0x0018, ["pulse_range_reserved"]),
        (0x0020, ["improper_position"]),
        (
            0x002F,
            [
                "body_movement",
                "cuff_too_loose",
                "irregular_pulse",
                "pulse_above_range",
                "improper_position",
            ],
        ),
    ],
)
def test_status_bits(bits: int, names: list[str]) -> None:
    data = bytes.fromhex("10 7800 5000 5a00") + bits.to_bytes(2, "little")
    m = decode_blood_pressure_measurement(data)
    assert m.status is not None
    assert m.status.names() == names
    assert m.status.to_bits() == bits
    assert encode_blood_pressure_measurement(m) == data


def test_status_reserved_bits_rejected() -> None:
    data = bytes.fromhex("10 7800 5000 5a00 4000")
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(data)
    assert info.value.offset == 7


def test_user_id_unknown_stays_255() -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("08 7800 5000 5a00 ff"))
    assert m.user_id == 255


def test_timestamp_unknown_date_is_none() -> None:
    data = bytes.fromhex("02 7800 5000 5a00 00000000000000")
    assert decode_blood_pressure_measurement(data).timestamp is None


def test_invalid_timestamp_names_the_byte() -> None:
    data = bytes.fromhex("02 7800 5000 5a00 e9070d01000000")  # month 13
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(data)
    assert (info.value.characteristic, info.value.offset) == ("2A35", 9)


@pytest.mark.parametrize("length", range(len(FULL)))
def test_truncated_at_every_length(length: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(FULL[:length])
    expected = max(start for start in FIELD_STARTS if start <= length)
    assert info.value.characteristic == "2A35"
    assert info.value.offset == expected
    assert "truncated" in info.value.reason or length == 0
    assert str(info.value).startswith(f"2A35 at byte {expected}: ")


@pytest.mark.parametrize("extra", [b"\x00", b"\x01\x02\x03"])
def test_over_long(extra: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(FULL + extra)
    assert info.value.offset == len(FULL)
    assert "unexpected" in info.value.reason


def test_over_long_when_flag_missing() -> None:
    # A pulse field sent without its flag is an unknown layout, not an ignorable tail.
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(bytes.fromhex("00 7800 5000 5a00 4800"))
    assert info.value.offset == 7


@pytest.mark.parametrize("bit", [0x20, 0x40, 0x80])
def test_reserved_flags(bit: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(bytes((bit,)) + FULL[1:7])
    assert info.value.offset == 0
    assert "reserved" in info.value.reason


def test_empty_payload() -> None:
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(b"")
    assert str(info.value) == "2A35 at byte 0: truncated in flags: needs 1 byte, 0 left"


def test_intermediate_cuff_pressure() -> None:
    data = bytes.fromhex("00 9600") + NAN + NAN  # cuff at 150 mmHg
    m = decode_intermediate_cuff_pressure(data)
    assert m.intermediate
    assert m.systolic == 150.0
    assert not m.is_device_error
    with pytest.raises(ValueError, match="intermediate"):
        m.quantities()
    with pytest.raises(DecodeError) as info:
        decode_intermediate_cuff_pressure(data[:2])
    assert str(info.value).startswith("2A36 at byte 1:")
    assert encode_blood_pressure_measurement(m) == data


def test_model_rejects_float_nan_as_number() -> None:
    m = BloodPressureMeasurement(
        unit=BloodPressureUnit.MMHG,
        systolic=float("nan"),
        diastolic=float("inf"),
        mean_arterial=90,
        pulse=float("nan"),
    )
    assert m.systolic is SpecialValue.NAN
    assert m.diastolic is SpecialValue.POSITIVE_INFINITY
    assert [q.value for q in m.quantities()] == [None, None, 90.0, None]


def test_model_is_frozen_and_naive() -> None:
    m = decode_blood_pressure_measurement(FULL)
    with pytest.raises(ValidationError):
        m.systolic = 1.0
    with pytest.raises(ValidationError):
        BloodPressureMeasurement(
            unit=BloodPressureUnit.MMHG,
            systolic=1,
            diastolic=1,
            mean_arterial=1,
            timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        )


def test_json_roundtrip_keeps_special_values() -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("04") + NAN * 4)
    again = BloodPressureMeasurement.model_validate_json(m.model_dump_json())
    assert again == m
    assert again.pulse is SpecialValue.NAN


def test_encode_rejects_inexact_values() -> None:
    m = BloodPressureMeasurement(
        unit=BloodPressureUnit.MMHG, systolic=1 / 3, diastolic=80, mean_arterial=90
    )
    with pytest.raises(EncodeError):
        encode_blood_pressure_measurement(m)


# --- Feature 2A49 ------------------------------------------------------------------------


def test_feature_bits() -> None:
    f = decode_blood_pressure_feature(bytes.fromhex("2500"))
    assert f == BloodPressureFeature(
        body_movement_detection=True, irregular_pulse_detection=True, multiple_bonds=True
    )
    assert encode_blood_pressure_feature(f) == bytes.fromhex("2500")
    every = decode_blood_pressure_feature(bytes.fromhex("3f00"))
    assert all(v for k, v in every.model_dump().items() if k != "other_bits")


def test_feature_keeps_newer_bits() -> None:
    f = decode_blood_pressure_feature(bytes.fromhex("4101"))
    assert f.body_movement_detection and f.other_bits == 0x0140
    assert encode_blood_pressure_feature(f) == bytes.fromhex("4101")


@pytest.mark.parametrize(("data", "offset"), [(b"", 0), (b"\x01", 0), (b"\x01\x00\x00", 2)])
def test_feature_length(data: bytes, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_feature(data)
    assert (info.value.characteristic, info.value.offset) == ("2A49", offset)


# --- properties ----------------------------------------------------------------------------

# Any SFLOAT code: a number, or a special value.
any_sfloat = st.integers(0, 0xFFFF).map(decode_sfloat)


def in_range(low: float, high: float) -> st.SearchStrategy[Measured]:
    """SFLOAT values a decoder accepts for a field with physical range low..high."""
    return st.sampled_from(list(SpecialValue)) | any_sfloat.filter(
        lambda v: isinstance(v, SpecialValue) or low <= v <= high
    )


def pressures(unit: BloodPressureUnit) -> st.SearchStrategy[Measured]:
    factor = KPA_TO_MMHG if unit is BloodPressureUnit.KPA else 1.0
    return in_range(PRESSURE_RANGE.low / factor, PRESSURE_RANGE.high / factor)


pulse_rates = in_range(PULSE_RATE_RANGE.low, PULSE_RATE_RANGE.high)
statuses = st.builds(
    BloodPressureStatus,
    body_movement=st.booleans(),
    cuff_too_loose=st.booleans(),
    irregular_pulse=st.booleans(),
    pulse_range=st.sampled_from(list(PulseRange)),
    improper_position=st.booleans(),
)


@st.composite
def measurements(draw: st.DrawFn) -> BloodPressureMeasurement:
    """Measurements a cuff can send: pressures and pulse within their physical ranges."""
    unit = draw(st.sampled_from(list(BloodPressureUnit)))
    return BloodPressureMeasurement(
        unit=unit,
        systolic=draw(pressures(unit)),
        diastolic=draw(pressures(unit)),
        mean_arterial=draw(pressures(unit)),
        timestamp=draw(
            st.none()
            | st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
                lambda d: d.replace(microsecond=0)
            )
        ),
        pulse=draw(st.none() | pulse_rates),
        user_id=draw(st.none() | st.integers(0, 255)),
        status=draw(st.none() | statuses),
    )


@given(measurements())
def test_encode_decode_identity(m: BloodPressureMeasurement) -> None:
    assert decode_blood_pressure_measurement(encode_blood_pressure_measurement(m)) == m


@given(measurements())
def test_quantities_never_carry_special_codes(m: BloodPressureMeasurement) -> None:
    for q in m.quantities():
        source = {
            "systolic": m.systolic,
            "diastolic": m.diastolic,
            "mean_arterial": m.mean_arterial,
            "pulse": m.pulse,
        }[q.name]
        assert (q.value is None) == isinstance(source, SpecialValue)


# --- physically impossible values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_", "offset", "field"),
    [
        ("00 9101 5000 5a00", 1, "systolic 401 mm[Hg]"),  # 401 mmHg
        ("00 7800 ffff 5a00", 3, "diastolic -0.1 mm[Hg]"),  # SFLOAT -0.1
        ("00 7800 5000 ff0f", 5, "mean arterial pressure -1 mm[Hg]"),
        ("01 3602 6bf0 78f0", 1, "systolic 566 kPa (4245 mm[Hg])"),
        ("01 16f2 6bf0 78f0", 1, "systolic 53.4 kPa (400.5 mm[Hg])"),  # just above 400
        ("01 a0f0 6b00 78f0", 3, "diastolic 107 kPa"),
        ("04 7800 5000 5a00 2d01", 7, "pulse rate 301 /min"),
        ("04 7800 5000 5a00 ff0f", 7, "pulse rate -1 /min"),
        ("16 7800 5000 5a00 e9070c1f173b00 2d01 0000", 14, "pulse rate 301 /min"),
    ],
)
def test_out_of_range_values_are_decode_errors(hex_: str, offset: int, field: str) -> None:
    for decode, uuid in (
        (decode_blood_pressure_measurement, "2A35"),
        (decode_intermediate_cuff_pressure, "2A36"),
    ):
        with pytest.raises(DecodeError) as info:
            decode(bytes.fromhex(hex_))
        assert (info.value.characteristic, info.value.offset) == (uuid, offset)
        assert info.value.reason.startswith(field)
        assert "outside the physical range" in info.value.reason


def test_range_limits_are_inclusive() -> None:
    # 0 and 400 mmHg, pulse 0 and 300 /min are still values; 53.3 kPa = 399.8 mmHg.
    m = decode_blood_pressure_measurement(bytes.fromhex("04 0000 9001 0000 2c01"))
    assert (m.systolic, m.diastolic, m.pulse) == (0.0, 400.0, 300.0)
    kpa = decode_blood_pressure_measurement(bytes.fromhex("01 15f2 6bf0 78f0"))
    assert kpa.systolic == 53.3


@given(
    st.sampled_from(["systolic", "diastolic", "mean_arterial", "pulse"]),
    any_sfloat.filter(lambda v: not isinstance(v, SpecialValue) and not 0 <= v <= 400),
)
def test_any_impossible_value_is_rejected_at_its_field(field: str, value: float) -> None:
    fields: dict[str, object] = {
        "unit": BloodPressureUnit.MMHG,
        "systolic": 120.0,
        "diastolic": 80.0,
        "mean_arterial": 90.0,
        "pulse": 72.0,
    }
    fields[field] = value
    data = encode_blood_pressure_measurement(BloodPressureMeasurement.model_validate(fields))
    with pytest.raises(DecodeError) as info:
        decode_blood_pressure_measurement(data)
    offsets = {"systolic": 1, "diastolic": 3, "mean_arterial": 5, "pulse": 7}
    assert info.value.offset == offsets[field]


# --- every flag combination, from hand-written bytes ---------------------------------------
#
# BLS 1.1.1 layout: flags u8 | systolic SFLOAT | diastolic SFLOAT | MAP SFLOAT
#   | [Time Stamp 7, bit 1] | [Pulse Rate SFLOAT, bit 2] | [User ID u8, bit 3]
#   | [Measurement Status u16, bit 4]; bit 0 = kPa.
# mmHg: 120 = 7800, 80 = 5000, 93 = 5d00 (exponent 0).
# kPa: 16.0 = a0f0, 10.7 = 6bf0, 12.5 = 7df0 (exponent -1: F0, mantissa 160 / 107 / 125).
# Time Stamp 2025-12-31 23:59:00 = e907 0c 1f 17 3b 00; pulse 72 = 4800; user 2 = 02;
# status 0c00 = irregular pulse (bit 2) + pulse above range (bits 3-4 = 01).
ALL_FLAG_COMBINATIONS = [
    "00 7800 5000 5d00",
    "01 a0f0 6bf0 7df0",
    "02 7800 5000 5d00 e9070c1f173b00",
    "03 a0f0 6bf0 7df0 e9070c1f173b00",
    "04 7800 5000 5d00 4800",
    "05 a0f0 6bf0 7df0 4800",
    "06 7800 5000 5d00 e9070c1f173b00 4800",
    "07 a0f0 6bf0 7df0 e9070c1f173b00 4800",
    "08 7800 5000 5d00 02",
    "09 a0f0 6bf0 7df0 02",
    "0a 7800 5000 5d00 e9070c1f173b00 02",
    "0b a0f0 6bf0 7df0 e9070c1f173b00 02",
    "0c 7800 5000 5d00 4800 02",
    "0d a0f0 6bf0 7df0 4800 02",
    "0e 7800 5000 5d00 e9070c1f173b00 4800 02",
    "0f a0f0 6bf0 7df0 e9070c1f173b00 4800 02",
    "10 7800 5000 5d00 0c00",
    "11 a0f0 6bf0 7df0 0c00",
    "12 7800 5000 5d00 e9070c1f173b00 0c00",
    "13 a0f0 6bf0 7df0 e9070c1f173b00 0c00",
    "14 7800 5000 5d00 4800 0c00",
    "15 a0f0 6bf0 7df0 4800 0c00",
    "16 7800 5000 5d00 e9070c1f173b00 4800 0c00",
    "17 a0f0 6bf0 7df0 e9070c1f173b00 4800 0c00",
    "18 7800 5000 5d00 02 0c00",
    "19 a0f0 6bf0 7df0 02 0c00",
    "1a 7800 5000 5d00 e9070c1f173b00 02 0c00",
    "1b a0f0 6bf0 7df0 e9070c1f173b00 02 0c00",
    "1c 7800 5000 5d00 4800 02 0c00",
    "1d a0f0 6bf0 7df0 4800 02 0c00",
    "1e 7800 5000 5d00 e9070c1f173b00 4800 02 0c00",
    "1f a0f0 6bf0 7df0 e9070c1f173b00 4800 02 0c00",
]


def test_the_vectors_cover_all_32_combinations() -> None:
    flags = sorted(bytes.fromhex(v)[0] for v in ALL_FLAG_COMBINATIONS)
    assert flags == list(range(32))


@pytest.mark.parametrize(
    "vector", ALL_FLAG_COMBINATIONS, ids=[v[:2] for v in ALL_FLAG_COMBINATIONS]
)
def test_every_flag_combination(vector: str) -> None:
    data = bytes.fromhex(vector)
    flags = data[0]
    kpa, has_time, has_pulse, has_user, has_status = (bool(flags & 1 << b) for b in range(5))
    # Length by the layout: 1 + 3 x 2, then the optional fields.
    assert len(data) == 7 + 7 * has_time + 2 * has_pulse + 1 * has_user + 2 * has_status

    m = decode_blood_pressure_measurement(data)

    assert m.unit is (BloodPressureUnit.KPA if kpa else BloodPressureUnit.MMHG)
    assert (m.systolic, m.diastolic, m.mean_arterial) == (
        (16.0, 10.7, 12.5) if kpa else (120.0, 80.0, 93.0)
    )
    assert m.timestamp == (datetime(2025, 12, 31, 23, 59, 0) if has_time else None)
    assert m.pulse == (72.0 if has_pulse else None)
    assert m.user_id == (2 if has_user else None)
    if has_status:
        assert m.status == BloodPressureStatus(irregular_pulse=True, pulse_range=PulseRange.ABOVE)
        assert m.status.names() == ["irregular_pulse", "pulse_above_range"]
    else:
        assert m.status is None
    assert not m.is_device_error and not m.intermediate

    # The wire contract: pressures always in mm[Hg] (kPa x 7.500615, 1 decimal).
    values = {q.name: (q.value, q.unit) for q in m.quantities()}
    pressures = (120.0, 80.3, 93.8) if kpa else (120.0, 80.0, 93.0)
    expected = {
        name: (value, "mm[Hg]")
        for name, value in zip(("systolic", "diastolic", "mean_arterial"), pressures, strict=True)
    }
    if has_pulse:
        expected["pulse"] = (72.0, "/min")
    assert values == expected

    # The flags announce exactly these fields: one byte more or less is an error.
    with pytest.raises(DecodeError) as longer:
        decode_blood_pressure_measurement(data + b"\x00")
    assert longer.value.offset == len(data)
    with pytest.raises(DecodeError):
        decode_blood_pressure_measurement(data[:-1])
    # Our encoder may pick another exponent (16.0 kPa as 1000, not a0f0) but the same value.
    assert decode_blood_pressure_measurement(encode_blood_pressure_measurement(m)) == m
