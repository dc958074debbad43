"""Clock trust: turning a device's own timestamp into a measurement time the hub stands by.

Devices keep naive local time and know nothing of daylight saving: once written, a device
clock runs at the fixed UTC offset the hub's zone had when it was written. On each
connection the driver reads Current Time (the offset hub - device, both in the hub's
zone), then writes the hub's time where the device allows it.

- A record stamped by the clock as the hub found it (every stored record when the clock
  is not writable, and the backlog stored before this connection's write when it is) is
  corrected by the offset measured before the write: its instant is the hub's time at
  connect minus how long before that the device clock says it was taken. That holds
  across a daylight-saving change between two connections, and for a clock reset to a
  default year (battery change) when the reset clock was read.
- A record stamped after this connection's write is the device time in the hub's zone.
- Without a usable time (none, a reset clock whose offset is unknown, a corrected time
  in the future) the hub's receive time is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    """The hub's zone: the configured IANA name, else the system's local zone.

    The system's zone is taken by name ($TZ, else /etc/localtime's link into the zone
    database) so that daylight saving applies; a fixed offset is the last resort.
    """
    if name:
        return ZoneInfo(name)
    for candidate in (os.environ.get("TZ", "").lstrip(":"), _etc_localtime_key()):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def _etc_localtime_key() -> str | None:
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return None
    _, found, key = target.partition("zoneinfo/")
    return key if found else None


def measurement_time(
    device_time: datetime | None,
    received_at: datetime,
    *,
    clock_written: bool,
    device_clock_offset_s: float | None,
    zone: tzinfo,
    synced: bool,
    device_clock_at_connect: datetime | None = None,
) -> MeasurementTime:
    """The measurement time of one reading, and how far to trust it.

    `device_time` is naive device-local time; `received_at` is the hub's aware time;
    `device_clock_offset_s` is hub time minus device time (both naive in `zone`), read
    on this connection before any write; `device_clock_at_connect` is the device clock
    that read returned. A record stamped at or before `device_clock_at_connect` was
    stamped by the clock as the hub found it; a later one by the clock the hub wrote.
    When the hub wrote the clock but that reading is unknown, records count as stored
    before the write (drivers subscribe and fetch records only after writing the clock).
    """
    candidate: datetime | None = None
    source, offset = ClockSource.NO_DEVICE_TIME, 0.0
    if device_time is not None:
        if clock_written and (
            device_clock_offset_s is None
            or (device_clock_at_connect is not None and device_time > device_clock_at_connect)
        ):
            # Stamped by the clock the hub wrote (on this connection, or on an earlier one
            # when Current Time cannot be read back).
            source = ClockSource.SET_BY_HUB
            if device_time.year >= EARLIEST_PLAUSIBLE_YEAR:
                if device_clock_at_connect is not None:
                    candidate = _at_offset_of(device_time, received_at, zone)
                else:
                    candidate = _localize(device_time, zone)
        elif device_clock_offset_s is not None:
            source, offset = ClockSource.OFFSET_MEASURED, device_clock_offset_s
            corrected = device_time + timedelta(seconds=device_clock_offset_s)
            if corrected.year >= EARLIEST_PLAUSIBLE_YEAR:
                candidate = _at_offset_of(corrected, received_at, zone)
    if candidate is not None and candidate <= received_at + MAX_FUTURE:
        return MeasurementTime(
            candidate, ClockTrust(source=source, offset_s=offset, hub_clock_synced=synced)
        )
    return MeasurementTime(
        received_at,
        ClockTrust(source=ClockSource.NO_DEVICE_TIME, offset_s=0.0, hub_clock_synced=synced),
    )


def _at_offset_of(naive: datetime, reference: datetime, zone: tzinfo) -> datetime:
    """A naive hub-zone time read against a clock that ran at the zone's UTC offset at
    `reference` (the connection): device clocks do not observe daylight saving."""
    utc_offset = reference.astimezone(zone).utcoffset() or timedelta(0)
    return (naive - utc_offset).replace(tzinfo=UTC).astimezone(zone)


def _localize(naive: datetime, zone: tzinfo) -> datetime:
    """Attach the hub's zone to a naive device time.

    In the hour that repeats when daylight saving ends, fold=0 picks the first (summer)
    occurrence; a time in the hour skipped in spring is normalised forward by the
    round-trip through UTC.
    """
    aware = naive.replace(tzinfo=zone, fold=0)
    return aware.astimezone(ZoneInfo("UTC")).astimezone(zone)
