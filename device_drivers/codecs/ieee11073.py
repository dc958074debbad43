"""IEEE 11073-20601 number formats and the Bluetooth Date Time, as GATT health devices use them.

SFLOAT (16 bit): signed 4-bit exponent, signed 12-bit mantissa. FLOAT (32 bit): signed
8-bit exponent, signed 24-bit mantissa. value = mantissa * 10**exponent. A few raw codes
(with exponent 0) are special values; they are returned as `SpecialValue`, never as a
number, so that a NaN reading can never turn into 2047 mmHg.

Values are computed with `Decimal` so that 0xF07B gives 12.3 and not 12.300000000000001.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from decimal import Decimal

from device_drivers.codecs.errors import DecodeError, EncodeError


class SpecialValue(enum.StrEnum):
    NAN = "nan"
    NRES = "nres"  # "not at this resolution": the value exists but cannot be represented
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"


Measured = float | SpecialValue

SFLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}
FLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
    0x00800001: SpecialValue.RESERVED,
}
_SFLOAT_CODES = {v: k for k, v in SFLOAT_SPECIALS.items()}
_FLOAT_CODES = {v: k for k, v in FLOAT_SPECIALS.items()}


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _decode(raw: int, exp_bits: int, mant_bits: int, specials: dict[int, SpecialValue]) -> Measured:
    total = exp_bits + mant_bits
    if not 0 <= raw < (1 << total):
        raise ValueError(f"raw value {raw!r} is not an unsigned {total}-bit integer")
    special = specials.get(raw)
    if special is not None:
        return special
    mantissa = _signed(raw & ((1 << mant_bits) - 1), mant_bits)
    exponent = _signed(raw >> mant_bits, exp_bits)
    # Decimal -> float is correctly rounded: 0xF07B gives exactly the float 12.3.
    return float(Decimal(mantissa).scaleb(exponent))


def decode_sfloat(raw: int) -> Measured:
    """Decode a 16-bit SFLOAT (as an unsigned integer) to a float or a `SpecialValue`."""
    return _decode(raw, 4, 12, SFLOAT_SPECIALS)


def decode_float(raw: int) -> Measured:
    """Decode a 32-bit FLOAT (as an unsigned integer) to a float or a `SpecialValue`."""
    return _decode(raw, 8, 24, FLOAT_SPECIALS)


def _special_of(value: Measured) -> SpecialValue | None:
    if isinstance(value, SpecialValue):
        return value
    if math.isnan(value):
        return SpecialValue.NAN
    if math.isinf(value):
        return SpecialValue.POSITIVE_INFINITY if value > 0 else SpecialValue.NEGATIVE_INFINITY
    return None


def _encode(
    value: Measured,
    exponent: int | None,
    exp_bits: int,
    mant_bits: int,
    codes: dict[SpecialValue, int],
    name: str,
) -> int:
    special = _special_of(value)
    if special is not None:
        return codes[special]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(f"{name}: {value!r} is not a number")
    e_min, e_max = -(1 << (exp_bits - 1)), (1 << (exp_bits - 1)) - 1
    m_min, m_max = -(1 << (mant_bits - 1)), (1 << (mant_bits - 1)) - 1
    specials = {_signed(code, mant_bits) for code in codes.values()}
    exact = Decimal(repr(float(value)))

    def fits(m: int, e: int) -> bool:
        # With exponent 0 the special codes are taken, so their mantissas cannot be numbers.
        return m_min <= m <= m_max and not (e == 0 and m in specials)

    def pack(m: int, e: int) -> int:
        return ((e & ((1 << exp_bits) - 1)) << mant_bits) | (m & ((1 << mant_bits) - 1))

    if exponent is not None:
        if not e_min <= exponent <= e_max:
            raise EncodeError(f"{name}: exponent {exponent} outside {e_min}..{e_max}")
        m = int(exact.scaleb(-exponent).to_integral_value())  # round half even
        if not fits(m, exponent):
            raise EncodeError(f"{name}: {value!r} does not fit with exponent {exponent}")
        return pack(m, exponent)

    if exact == 0:
        return 0
    sign, digits, e0 = exact.normalize().as_tuple()
    assert isinstance(e0, int)  # finite by now
    m0 = int("".join(map(str, digits))) * (-1 if sign else 1)
    # The exact representations are (m0 * 10**k, e0 - k), k >= 0. Prefer the exponent
    # closest to 0, which is how devices write integers (120 mmHg -> mantissa 120).
    candidates = range(max(0, e0 - 64), min(e0, e_max) + 1) if e0 >= 0 else [e0]
    for e in candidates:
        if e < e_min:
            continue
        m = m0 * 10 ** (e0 - e)
        if fits(m, e):
            return pack(m, e)
    raise EncodeError(f"{name}: {value!r} has no exact representation")


def encode_sfloat(value: Measured, exponent: int | None = None) -> int:
    """Encode to a 16-bit SFLOAT (unsigned int).

    Without `exponent`, the exponent closest to 0 that represents `value` exactly is used
    (EncodeError when there is none); with it, the mantissa is rounded (half even).
    Float NaN/±inf map to the NaN/±INF codes.
    """
    return _encode(value, exponent, 4, 12, _SFLOAT_CODES, "SFLOAT")


def encode_float(value: Measured, exponent: int | None = None) -> int:
    """Encode to a 32-bit FLOAT (unsigned int); same rules as `encode_sfloat`."""
    return _encode(value, exponent, 8, 24, _FLOAT_CODES, "FLOAT")


# --- Date Time (org.bluetooth.characteristic.date_time) ----------------------------------

DATE_TIME_SIZE = 7
MIN_YEAR = 1582  # the spec's range; 1..1581 are reserved
MAX_YEAR = 9999


def decode_date_time(data: bytes, offset: int, characteristic: str) -> datetime | None:
    """Decode the 7-byte Date Time at `offset`: naive device time, None when the date is unknown.

    Year, month or day 0 means "unknown" (a device whose clock was never set). Fields out
    of range (month 13, hour 25, 31 February, year 1..1581) raise `DecodeError`.
    """
    if len(data) - offset < DATE_TIME_SIZE:
        raise DecodeError(
            characteristic,
            offset,
            f"truncated Date Time: needs {DATE_TIME_SIZE} bytes, {max(0, len(data) - offset)} left",
        )
    year = int.from_bytes(data[offset : offset + 2], "little")
    month, day, hour, minute, second = data[offset + 2 : offset + 7]
    checks = (
        (offset, "year", year, year == 0 or MIN_YEAR <= year <= MAX_YEAR),
        (offset + 2, "month", month, month <= 12),
        (offset + 3, "day", day, day <= 31),
        (offset + 4, "hours", hour, hour <= 23),
        (offset + 5, "minutes", minute, minute <= 59),
        (offset + 6, "seconds", second, second <= 59),
    )
    for at, name, value, ok in checks:
        if not ok:
            raise DecodeError(characteristic, at, f"invalid Date Time {name} {value}")
    if year == 0 or month == 0 or day == 0:
        return None
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError as exc:  # e.g. 31 February
        raise DecodeError(characteristic, offset + 3, f"invalid Date Time: {exc}") from None


def encode_date_time(value: datetime | None) -> bytes:
    """Encode a Date Time; None gives the all-zero "unknown" value.

    Sub-second parts are dropped; an aware datetime is written as its own wall-clock time.
    """
    if value is None:
        return bytes(DATE_TIME_SIZE)
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise EncodeError(f"Date Time year {value.year} outside {MIN_YEAR}..{MAX_YEAR}")
    return value.year.to_bytes(2, "little") + bytes(
        (value.month, value.day, value.hour, value.minute, value.second)
    )


# --- a bounds-checked reader shared by the characteristic decoders ------------------------


class ByteReader:
    """Reads little-endian fields in sequence; every failure is a `DecodeError` at its offset."""

    def __init__(self, data: bytes, characteristic: str) -> None:
        self.data = bytes(data)
        self.characteristic = characteristic
        self.offset = 0

    def error(self, reason: str, offset: int | None = None) -> DecodeError:
        return DecodeError(self.characteristic, self.offset if offset is None else offset, reason)

    def take(self, size: int, field: str) -> bytes:
        left = len(self.data) - self.offset
        if left < size:
            noun = "byte" if size == 1 else "bytes"
            raise self.error(f"truncated in {field}: needs {size} {noun}, {left} left")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "little")

    def sfloat(self, field: str) -> Measured:
        return decode_sfloat(self.uint(2, field))

    def float32(self, field: str) -> Measured:
        return decode_float(self.uint(4, field))

    def date_time(self) -> datetime | None:
        value = decode_date_time(self.data, self.offset, self.characteristic)
        self.offset += DATE_TIME_SIZE
        return value

    def finish(self) -> None:
        """Reject bytes after the last expected field: a layout we do not understand."""
        extra = len(self.data) - self.offset
        if extra:
            raise self.error(f"{extra} unexpected byte(s) after the last field")
