"""Current Time 2A2B: decode, encode, and what the hub writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from device_drivers.codecs import (
    AdjustReason,
    CurrentTime,
    DecodeError,
    current_time_from_datetime,
    decode_current_time,
    encode_current_time,
)

# 2024-02-29 13:45:30, Thursday, 128/256 s, manual + DST change
VECTOR = bytes.fromhex("e807021d0d2d1e 04 80 09")


def test_vector() -> None:
    ct = decode_current_time(VECTOR)
    assert ct == CurrentTime(
        time=datetime(2024, 2, 29, 13, 45, 30),
        day_of_week=4,
        fractions256=128,
        adjust_reason=AdjustReason(manual=True, dst_change=True),
    )
    assert encode_current_time(ct) == VECTOR


def test_unknown_time() -> None:
    ct = decode_current_time(bytes(10))
    assert ct.time is None and ct.day_of_week == 0
    assert encode_current_time(ct) == bytes(10)


@pytest.mark.parametrize(
    ("data", "offset", "word"),
    [
        (VECTOR[:7] + b"\x08" + VECTOR[8:], 7, "day of week"),
        (VECTOR[:9] + b"\x10", 9, "reserved"),
        (VECTOR + b"\x00", 10, "unexpected"),
        (bytes.fromhex("e807021d192d1e") + VECTOR[7:], 4, "hours"),  # hour 25
    ],
)
def test_invalid(data: bytes, offset: int, word: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_current_time(data)
    assert (info.value.characteristic, info.value.offset) == ("2A2B", offset)
    assert word in info.value.reason


@pytest.mark.parametrize("length", range(len(VECTOR)))
def test_truncated_at_every_length(length: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_current_time(VECTOR[:length])
    assert info.value.offset == (0 if length < 7 else length)


def test_from_datetime() -> None:
    ct = current_time_from_datetime(datetime(2025, 3, 30, 2, 30, 15, 500_000))
    assert ct.time == datetime(2025, 3, 30, 2, 30, 15)
    assert ct.day_of_week == 7  # a Sunday
    assert ct.fractions256 == 128
    assert ct.adjust_reason == AdjustReason(manual=True)
    assert encode_current_time(ct) == bytes.fromhex("e907031e021e0f 07 80 01")


def test_from_aware_datetime_keeps_wall_time() -> None:
    tz = timezone(timedelta(hours=2))
    ct = current_time_from_datetime(
        datetime(2025, 6, 1, 8, 0, tzinfo=tz), AdjustReason(external_reference=True)
    )
    assert ct.time == datetime(2025, 6, 1, 8, 0)
    assert ct.adjust_reason.to_bits() == 0x02


def test_model_rejects_aware_or_subsecond_time() -> None:
    with pytest.raises(ValidationError):
        CurrentTime(time=datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError):
        CurrentTime(time=datetime(2025, 1, 1, 0, 0, 0, 1))
    with pytest.raises(ValidationError):
        CurrentTime(time=None, day_of_week=8)


current_times = st.builds(
    CurrentTime,
    time=st.none()
    | st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    ),
    day_of_week=st.integers(0, 7),
    fractions256=st.integers(0, 255),
    adjust_reason=st.builds(
        AdjustReason,
        manual=st.booleans(),
        external_reference=st.booleans(),
        time_zone_change=st.booleans(),
        dst_change=st.booleans(),
    ),
)


@given(current_times)
def test_encode_decode_identity(ct: CurrentTime) -> None:
    assert decode_current_time(encode_current_time(ct)) == ct


@given(st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)))
def test_from_datetime_roundtrip(dt: datetime) -> None:
    ct = current_time_from_datetime(dt)
    back = decode_current_time(encode_current_time(ct))
    assert back.time == dt.replace(microsecond=0)
    assert back.day_of_week == dt.isoweekday()
    assert abs(back.fractions256 / 256 - dt.microsecond / 1e6) < 1 / 256
