"""SFLOAT, FLOAT and Date Time against the vectors of the spec and docs/devices.md."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.codecs import (
    DecodeError,
    EncodeError,
    SpecialValue,
    decode_date_time,
    decode_float,
    decode_sfloat,
    encode_date_time,
    encode_float,
    encode_sfloat,
)
from device_drivers.codecs.ieee11073 import FLOAT_SPECIALS, SFLOAT_SPECIALS


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (0xF014, 2.0),  # exponent -1, mantissa 20
        (0x0B2E, -1234.0),  # mantissa 0xB2E as signed 12 bit
        (0xF07B, 12.3),  # exact decimal, not 12.300000000000001
        (0x0078, 120.0),
        (0x0000, 0.0),
        (0x1001, 10.0),
        (0x7001, 1e7),
        (0x8001, 1e-8),
        (0xFFFF, -0.1),
        (0x07FD, 2045.0),
        (0xF7FF, 204.7),  # 0x7FF is NaN only with exponent 0
        (0x0803, -2045.0),
    ],
)
def test_sfloat_vectors(raw: int, value: float) -> None:
    assert decode_sfloat(raw) == value


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x07FF, SpecialValue.NAN),
        (0x0800, SpecialValue.NRES),
        (0x07FE, SpecialValue.POSITIVE_INFINITY),
        (0x0802, SpecialValue.NEGATIVE_INFINITY),
        (0x0801, SpecialValue.RESERVED),
    ],
)
def test_sfloat_specials_never_numbers(raw: int, special: SpecialValue) -> None:
    decoded = decode_sfloat(raw)
    assert decoded is special
    assert not isinstance(decoded, float)
    assert encode_sfloat(special) == raw


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x007FFFFF, SpecialValue.NAN),
        (0x00800000, SpecialValue.NRES),
        (0x007FFFFE, SpecialValue.POSITIVE_INFINITY),
        (0x00800002, SpecialValue.NEGATIVE_INFINITY),
        (0x00800001, SpecialValue.RESERVED),
    ],
)
def test_float_specials(raw: int, special: SpecialValue) -> None:
    assert decode_float(raw) is special
    assert encode_float(special) == raw


def test_float_vectors() -> None:
    assert decode_float(0xFE0004D2) == 12.34  # exponent -2, mantissa 1234
    assert decode_float(0x00FFFFFF) == -1.0
    assert decode_float(0x7F000001) == 1e127
    assert encode_float(12.34) == 0xFE0004D2
    assert encode_float(-1.0) == 0x00FFFFFF


def test_encode_prefers_exponent_zero_and_exact_mantissas() -> None:
    assert encode_sfloat(120) == 0x0078
    assert encode_sfloat(2.0) == 0x0002
    assert encode_sfloat(12.3) == 0xF07B
    assert encode_sfloat(5000) == 0x11F4  # 500 * 10**1
    assert encode_sfloat(-1234) == 0x0B2E
    assert encode_sfloat(0.0) == 0x0000


def test_encode_float_nan_and_inf_map_to_specials() -> None:
    assert encode_sfloat(math.nan) == 0x07FF
    assert encode_sfloat(math.inf) == 0x07FE
    assert encode_sfloat(-math.inf) == 0x0802


def test_encode_with_explicit_exponent_rounds() -> None:
    assert encode_sfloat(12.34, exponent=-1) == 0xF07B
    assert encode_sfloat(120, exponent=-1) == 0xF4B0


@pytest.mark.parametrize(
    ("value", "exponent"),
    [
        (1 / 3, None),  # no exact decimal
        (2047, None),  # mantissa 2047 with exponent 0 is NaN's code
        (-2048, None),  # NRes's code
        (1e-9, None),  # exponent below -8
        (3000, -1),  # mantissa 30000 too big
        (1.0, 8),  # exponent outside -8..7
    ],
)
def test_encode_sfloat_rejects_unrepresentable(value: float, exponent: int | None) -> None:
    with pytest.raises(EncodeError):
        encode_sfloat(value, exponent)


def test_decode_rejects_out_of_range_raw() -> None:
    with pytest.raises(ValueError):
        decode_sfloat(0x10000)
    with pytest.raises(ValueError):
        decode_float(-1)


@given(st.integers(0, 0xFFFF))
def test_sfloat_roundtrip(raw: int) -> None:
    value = decode_sfloat(raw)
    assert decode_sfloat(encode_sfloat(value)) == value


@given(st.integers(0, 0xFFFFFFFF))
def test_float_roundtrip(raw: int) -> None:
    value = decode_float(raw)
    assert decode_float(encode_float(value)) == value


@given(st.integers(-2000, 2000), st.integers(-8, 7))
def test_sfloat_decimal_roundtrip(mantissa: int, exponent: int) -> None:
    value = float(f"{mantissa}e{exponent}")
    assert decode_sfloat(encode_sfloat(value)) == value


def test_special_tables_are_consistent() -> None:
    assert set(SFLOAT_SPECIALS.values()) == set(SpecialValue)
    assert set(FLOAT_SPECIALS.values()) == set(SpecialValue)


# --- Date Time -----------------------------------------------------------------------------


def _dt(year: int, month: int, day: int, h: int = 0, m: int = 0, s: int = 0) -> bytes:
    return year.to_bytes(2, "little") + bytes((month, day, h, m, s))


def test_date_time_vector() -> None:
    data = b"\xaa" + bytes.fromhex("e807021d0d2d1e")
    assert decode_date_time(data, 1, "2A35") == datetime(2024, 2, 29, 13, 45, 30)
    assert encode_date_time(datetime(2024, 2, 29, 13, 45, 30)) == data[1:]


@pytest.mark.parametrize(
    "fields",
    [(0, 1, 1), (2024, 0, 1), (2024, 1, 0), (0, 0, 0)],
    ids=["year", "month", "day", "all"],
)
def test_date_time_unknown_is_none(fields: tuple[int, int, int]) -> None:
    assert decode_date_time(_dt(*fields, 10, 0, 0), 0, "2A35") is None


def test_date_time_none_encodes_to_zeros() -> None:
    assert encode_date_time(None) == bytes(7)


@pytest.mark.parametrize(
    ("data", "offset", "word"),
    [
        (_dt(2024, 13, 1), 2, "month"),
        (_dt(2024, 1, 32), 3, "day"),
        (_dt(2024, 1, 1, 25), 4, "hours"),
        (_dt(2024, 1, 1, 0, 60), 5, "minutes"),
        (_dt(2024, 1, 1, 0, 0, 60), 6, "seconds"),
        (_dt(1000, 1, 1), 0, "year"),
        (_dt(2023, 2, 29), 3, "day"),
        (_dt(0, 13, 1), 2, "month"),  # unknown year does not excuse a bad month
    ],
)
def test_date_time_invalid(data: bytes, offset: int, word: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_date_time(b"\x00\x00" + data, 2, "2A35")
    assert info.value.characteristic == "2A35"
    assert info.value.offset == offset + 2
    assert word in info.value.reason


def test_date_time_truncated() -> None:
    with pytest.raises(DecodeError) as info:
        decode_date_time(b"\x00" * 5, 1, "2A2B")
    assert info.value.offset == 1
    assert str(info.value) == "2A2B at byte 1: truncated Date Time: needs 7 bytes, 4 left"


def test_encode_date_time_rejects_years_outside_spec() -> None:
    with pytest.raises(EncodeError):
        encode_date_time(datetime(1500, 1, 1))


@given(st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_date_time_roundtrip(value: datetime) -> None:
    value = value.replace(microsecond=0)
    assert decode_date_time(encode_date_time(value), 0, "2A35") == value


@given(st.binary(min_size=0, max_size=12), st.integers(0, 6))
def test_date_time_arbitrary_bytes(data: bytes, offset: int) -> None:
    try:
        decode_date_time(data, offset, "2A35")
    except DecodeError:
        pass
