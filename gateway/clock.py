"""Clock trust: turning a device's own timestamp into a measurement time the hub stands by.

Devices keep naive local time. The hub writes its local time to the device on each
connection where it can; where it cannot, it measures the device clock's offset from
Current Time and applies it. A device clock that was reset (battery change) to a
default year is not trusted at all: the hub's receive time is used instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from hemhub.contract import ClockSource, ClockTrust

#: A device time before this year is a reset clock, never a real measurement time.
EARLIEST_PLAUSIBLE_YEAR = 2015
#: A corrected time this far after the hub's receive time is impossible (clock error).
MAX_FUTURE = timedelta(minutes=5)


def hub_clock_synced() -> bool:
    """Whether the hub's clock is NTP-synchronised (systemd-timesyncd's flag file)."""
    return os.path.exists("/run/systemd/timesync/synchronized")


@dataclass(frozen=True)
class MeasurementTime:
    measured_at: datetime
    clock: ClockTrust


def local_zone(name: str | None) -> tzinfo:
    """The hub's zone: the configured IANA name, else the system's local zone."""
    if name:
        return ZoneInfo(name)
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def measurement_time(
    device_time: datetime | None,
    received_at: datetime,
    *,
    clock_written: bool,
    device_clock_offset_s: float | None,
    zone: tzinfo,
    synced: bool,
) -> MeasurementTime:
    """The measurement time of one reading, and how far to trust it.

    `device_time` is naive device-local time; `received_at` is the hub's aware time;
    `device_clock_offset_s` is hub time minus device time, measured on this connection.
    """
    if device_time is not None and device_time.year >= EARLIEST_PLAUSIBLE_YEAR:
        if clock_written:
            candidate = _localize(device_time, zone)
            source, offset = ClockSource.SET_BY_HUB, 0.0
        elif device_clock_offset_s is not None:
            candidate = _localize(device_time + timedelta(seconds=device_clock_offset_s), zone)
            source, offset = ClockSource.OFFSET_MEASURED, device_clock_offset_s
        else:
            candidate = None
        if candidate is not None and candidate <= received_at + MAX_FUTURE:
            return MeasurementTime(
                candidate, ClockTrust(source=source, offset_s=offset, hub_clock_synced=synced)
            )
    return MeasurementTime(
        received_at,
        ClockTrust(source=ClockSource.NO_DEVICE_TIME, offset_s=0.0, hub_clock_synced=synced),
    )


def _localize(naive: datetime, zone: tzinfo) -> datetime:
    """Attach the hub's zone to a naive device time.

    In the hour that repeats when daylight saving ends, fold=0 picks the first (summer)
    occurrence; a time in the hour skipped in spring is normalised forward by the
    round-trip through UTC.
    """
    aware = naive.replace(tzinfo=zone, fold=0)
    return aware.astimezone(ZoneInfo("UTC")).astimezone(zone)
