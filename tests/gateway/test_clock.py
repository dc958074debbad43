"""Clock trust: device time -> measurement time, across DST and reset clocks."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.clock import measurement_time
from hemhub.contract import ClockSource

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def _at(device_time: datetime | None, received: datetime, **kw: object) -> tuple[datetime, str]:
    args: dict[str, object] = {"clock_written": True, "device_clock_offset_s": None}
    args.update(kw)
    result = measurement_time(
        device_time,
        received,
        zone=STOCKHOLM,
        synced=True,
        **args,  # type: ignore[arg-type]
    )
    return result.measured_at.astimezone(UTC), result.clock.source


def test_clock_set_by_hub_uses_device_local_time_in_hub_zone() -> None:
    # Winter: Stockholm is UTC+1.
    at, source = _at(datetime(2026, 1, 10, 8, 30), datetime(2026, 1, 10, 7, 31, tzinfo=UTC))
    assert at == datetime(2026, 1, 10, 7, 30, tzinfo=UTC)
    assert source == ClockSource.SET_BY_HUB


def test_summer_time_offset_applies() -> None:
    at, _ = _at(datetime(2026, 7, 1, 8, 30), datetime(2026, 7, 1, 6, 31, tzinfo=UTC))
    assert at == datetime(2026, 7, 1, 6, 30, tzinfo=UTC)


def test_repeated_hour_when_dst_ends_takes_first_occurrence() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice; the earlier is UTC 00:30.
    at, _ = _at(datetime(2026, 10, 25, 2, 30), datetime(2026, 10, 25, 1, 40, tzinfo=UTC))
    assert at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_skipped_hour_when_dst_starts_is_normalised() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist locally.
    at, _ = _at(datetime(2026, 3, 29, 2, 30), datetime(2026, 3, 29, 1, 40, tzinfo=UTC))
    assert at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_unwritable_clock_applies_measured_offset() -> None:
    # The device clock runs 10 minutes slow: hub - device = +600 s.
    at, source = _at(
        datetime(2026, 1, 10, 8, 20),
        datetime(2026, 1, 10, 7, 31, tzinfo=UTC),
        clock_written=False,
        device_clock_offset_s=600.0,
    )
    assert at == datetime(2026, 1, 10, 7, 30, tzinfo=UTC)
    assert source == ClockSource.OFFSET_MEASURED


def test_clock_reset_to_default_year_is_not_trusted() -> None:
    received = datetime(2026, 1, 10, 7, 31, tzinfo=UTC)
    at, source = _at(datetime(2000, 1, 1, 0, 5), received)
    assert at == received
    assert source == ClockSource.NO_DEVICE_TIME


def test_no_device_time_uses_receive_time() -> None:
    received = datetime(2026, 1, 10, 7, 31, tzinfo=UTC)
    assert _at(None, received) == (received, ClockSource.NO_DEVICE_TIME)


def test_unknown_offset_on_unwritable_clock_falls_back_to_receive_time() -> None:
    received = datetime(2026, 1, 10, 7, 31, tzinfo=UTC)
    at, source = _at(datetime(2026, 1, 10, 8, 20), received, clock_written=False)
    assert (at, source) == (received, ClockSource.NO_DEVICE_TIME)


def test_time_in_the_future_is_not_trusted() -> None:
    received = datetime(2026, 1, 10, 7, 31, tzinfo=UTC)
    at, source = _at(datetime(2026, 1, 11, 8, 20), received)
    assert (at, source) == (received, ClockSource.NO_DEVICE_TIME)
