"""Current Time 0x2A2B (Current Time Service 0x1805).

Layout: Date Time (7) | day of week u8 (0 unknown, 1 Monday .. 7 Sunday) |
fractions256 u8 (1/256 s) | adjust reason u8 (bit0 manual, bit1 external reference,
bit2 time zone change, bit3 DST change, bits 4-7 reserved). 10 bytes in all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from device_drivers.codecs.ieee11073 import ByteReader, encode_date_time

CURRENT_TIME = "2A2B"

ADJUST_MANUAL = 0x01
ADJUST_EXTERNAL_REFERENCE = 0x02
ADJUST_TIME_ZONE_CHANGE = 0x04
ADJUST_DST_CHANGE = 0x08
ADJUST_RESERVED = 0xF0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AdjustReason(_Frozen):
    """Why the time was last adjusted (all False: no reason given)."""

    manual: bool = False
    external_reference: bool = False
    time_zone_change: bool = False
    dst_change: bool = False

    @classmethod
    def from_bits(cls, bits: int) -> AdjustReason:
        return cls(
            manual=bool(bits & ADJUST_MANUAL),
            external_reference=bool(bits & ADJUST_EXTERNAL_REFERENCE),
            time_zone_change=bool(bits & ADJUST_TIME_ZONE_CHANGE),
            dst_change=bool(bits & ADJUST_DST_CHANGE),
        )

    def to_bits(self) -> int:
        return (
            (ADJUST_MANUAL if self.manual else 0)
            | (ADJUST_EXTERNAL_REFERENCE if self.external_reference else 0)
            | (ADJUST_TIME_ZONE_CHANGE if self.time_zone_change else 0)
            | (ADJUST_DST_CHANGE if self.dst_change else 0)
        )


class CurrentTime(_Frozen):
    """A decoded 0x2A2B. `time` is the device's naive wall-clock time, None if unknown.

    `day_of_week` is not checked against `time`: devices send what they hold.
    """

    time: datetime | None
    day_of_week: Annotated[int, Field(ge=0, le=7)] = 0
    fractions256: Annotated[int, Field(ge=0, le=255)] = 0
    adjust_reason: AdjustReason = AdjustReason()

    @field_validator("time")
    @classmethod
    def _naive_whole_seconds(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            raise ValueError("device time is naive (the device clock has no zone)")
        if value.microsecond:
            raise ValueError("sub-seconds belong in fractions256")
        return value


def decode_current_time(data: bytes) -> CurrentTime:
    """Decode 0x2A2B. Raises `DecodeError` (and nothing else) for a malformed payload."""
    r = ByteReader(data, CURRENT_TIME)
    time = r.date_time()
    at = r.offset
    day_of_week = r.uint(1, "day of week")
    if day_of_week > 7:
        raise r.error(f"invalid day of week {day_of_week}", at)
    fractions256 = r.uint(1, "fractions256")
    at = r.offset
    reason = r.uint(1, "adjust reason")
    if reason & ADJUST_RESERVED:
        raise r.error(f"reserved adjust reason bits set (0x{reason:02X})", at)
    r.finish()
    return CurrentTime(
        time=time,
        day_of_week=day_of_week,
        fractions256=fractions256,
        adjust_reason=AdjustReason.from_bits(reason),
    )


def encode_current_time(ct: CurrentTime) -> bytes:
    """Encode 0x2A2B (10 bytes); `time` None gives the all-zero "unknown" date."""
    return encode_date_time(ct.time) + bytes(
        (ct.day_of_week, ct.fractions256, ct.adjust_reason.to_bits())
    )


#: What phone apps write and what devices accept most widely.
HUB_ADJUST_REASON = AdjustReason(manual=True)


def current_time_from_datetime(
    dt: datetime, reason: AdjustReason = HUB_ADJUST_REASON
) -> CurrentTime:
    """The Current Time a hub writes to a device, from the wall-clock time it should show.

    Devices have no time zone: pass local time. An aware `dt` is written as its own wall
    time (tzinfo dropped, not converted). The default reason is "manual time update".
    """
    return CurrentTime(
        time=dt.replace(tzinfo=None, microsecond=0),
        day_of_week=dt.isoweekday(),
        fractions256=dt.microsecond * 256 // 1_000_000,
        adjust_reason=reason,
    )
