"""Clock trust: device time -> measurement time, across DST and reset clocks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bleak import BleakScanner

from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.session import (
    DEVICE_CLOCK_ZONE,
    ReceivedMeasurement,
    SessionReport,
)
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio
from gateway.clock import measurement_time
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from gateway.readings import to_reading
from hemhub.contract import AllowedDevice, ClockSource, DeviceProfile, Reading, topic_readings
from tests.factories import unique_hub_id
from tests.mqtt_helpers import Listener, clear_retained_status

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


# -- the backlog stored before the hub wrote the clock ----------------------------------


def _trust(
    device_time: datetime | None, received: datetime, **kw: object
) -> tuple[datetime, str, float]:
    result = measurement_time(device_time, received, zone=STOCKHOLM, synced=True, **kw)  # type: ignore[arg-type]
    return result.measured_at.astimezone(UTC), result.clock.source, result.clock.offset_s


def test_backlog_stored_before_the_write_is_corrected_by_the_offset_read_before_it() -> None:
    # The cuff ran 3 h slow; the hub read it (08:30:00 -> 05:30:00 on the cuff), then set it.
    received = datetime(2026, 1, 10, 7, 30, 5, tzinfo=UTC)
    at, source, offset = _trust(
        datetime(2026, 1, 10, 5, 10),  # measured 20 min before the connection
        received,
        clock_written=True,
        device_clock_offset_s=10800.0,
        device_clock_at_connect=datetime(2026, 1, 10, 5, 30),
    )
    assert at == datetime(2026, 1, 10, 7, 10, tzinfo=UTC)
    assert (source, offset) == (ClockSource.OFFSET_MEASURED, 10800.0)


def test_record_stamped_after_the_write_is_set_by_hub() -> None:
    received = datetime(2026, 1, 10, 7, 32, tzinfo=UTC)
    at, source, offset = _trust(
        datetime(2026, 1, 10, 8, 31),  # on the clock the hub wrote at 08:30 local
        received,
        clock_written=True,
        device_clock_offset_s=10800.0,
        device_clock_at_connect=datetime(2026, 1, 10, 5, 30),
    )
    assert at == datetime(2026, 1, 10, 7, 31, tzinfo=UTC)
    assert (source, offset) == (ClockSource.SET_BY_HUB, 0.0)


def test_written_clock_without_its_earlier_reading_counts_records_as_stored_before() -> None:
    # Drivers that do not pass the clock read at connect (records fetched after the write).
    at, source, _ = _trust(
        datetime(2026, 1, 10, 5, 10),
        datetime(2026, 1, 10, 7, 30, 5, tzinfo=UTC),
        clock_written=True,
        device_clock_offset_s=10800.0,
    )
    assert (at, source) == (datetime(2026, 1, 10, 7, 10, tzinfo=UTC), ClockSource.OFFSET_MEASURED)


def test_reset_clock_with_known_offset_is_corrected_not_replaced() -> None:
    # Battery change: the clock restarted at 2000-01-01 00:00; read at 00:30 on it while
    # the hub showed 2026-01-10 08:30 local; a reading at 00:05 on it was 25 min earlier.
    read_at = datetime(2000, 1, 1, 0, 30)
    offset = (datetime(2026, 1, 10, 8, 30) - read_at).total_seconds()
    for written in (True, False):
        at, source, applied = _trust(
            datetime(2000, 1, 1, 0, 5),
            datetime(2026, 1, 10, 7, 30, 2, tzinfo=UTC),
            clock_written=written,
            device_clock_offset_s=offset,
            device_clock_at_connect=read_at,
        )
        assert at == datetime(2026, 1, 10, 7, 5, tzinfo=UTC)
        assert (source, applied) == (ClockSource.OFFSET_MEASURED, offset)


def test_reset_clock_with_unknown_offset_falls_back_to_receive_time() -> None:
    received = datetime(2026, 1, 10, 7, 31, tzinfo=UTC)
    at, source, _ = _trust(
        datetime(2000, 1, 1, 0, 5), received, clock_written=False, device_clock_offset_s=None
    )
    assert (at, source) == (received, ClockSource.NO_DEVICE_TIME)


def test_daylight_saving_starts_between_two_connections() -> None:
    # Connection 1, Saturday 2026-03-28 12:00 UTC: the hub writes 13:00 (CET, UTC+1).
    # Sunday 02:00 CET the zone moves to CEST (UTC+2); the cuff's clock does not.
    # Connection 2, Monday 2026-03-30 08:00 UTC: the hub shows 10:00, the cuff 09:00.
    offset = (datetime(2026, 3, 30, 10, 0) - datetime(2026, 3, 30, 9, 0)).total_seconds()
    connection = {
        "clock_written": True,
        "device_clock_offset_s": offset,
        "device_clock_at_connect": datetime(2026, 3, 30, 9, 0),
    }
    received = datetime(2026, 3, 30, 8, 0, 3, tzinfo=UTC)
    saturday, source, _ = _trust(datetime(2026, 3, 28, 20, 0), received, **connection)
    assert saturday == datetime(2026, 3, 28, 19, 0, tzinfo=UTC)  # 20:00 CET
    assert source == ClockSource.OFFSET_MEASURED
    monday, _, _ = _trust(datetime(2026, 3, 30, 7, 30), received, **connection)
    assert monday == datetime(2026, 3, 30, 6, 30, tzinfo=UTC)  # 08:30 CEST
    # In the hour the zone skipped (02:00-03:00 local does not exist), the cuff ran on.
    night, _, _ = _trust(datetime(2026, 3, 29, 2, 30), received, **connection)
    assert night == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_daylight_saving_ends_between_two_connections() -> None:
    # Written Saturday 2026-10-24 in CEST (UTC+2); Monday the zone is CET (UTC+1): the
    # cuff shows 10:00 when the hub shows 09:00 local (08:00 UTC).
    connection = {
        "clock_written": True,
        "device_clock_offset_s": -3600.0,
        "device_clock_at_connect": datetime(2026, 10, 26, 10, 0),
    }
    received = datetime(2026, 10, 26, 8, 0, 3, tzinfo=UTC)
    # Both "02:30" that the zone had on Sunday are distinct on the cuff: 02:30 and 03:30.
    first, _, _ = _trust(datetime(2026, 10, 25, 2, 30), received, **connection)
    second, _, _ = _trust(datetime(2026, 10, 25, 3, 30), received, **connection)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert second == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    saturday, _, _ = _trust(datetime(2026, 10, 24, 20, 0), received, **connection)
    assert saturday == datetime(2026, 10, 24, 18, 0, tzinfo=UTC)  # 20:00 CEST


# -- over the simulated radio: the driver writes and measures clocks in the hub's zone ----

CUFF = "C4:20:00:00:07:01"


@pytest.fixture
def host_on_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The hub's operating system runs on UTC (as hubs do), the hub's zone is Stockholm."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:07:11") as r:
        yield r


async def _session(
    radio: SimulatedRadio, now: Callable[[], datetime] | None = None
) -> tuple[SessionReport, list[Reading]]:
    """One session of the blood-pressure driver as the hub runs it: zone set for its task."""
    backends = radio.bleak_backends()
    received: list[ReceivedMeasurement] = []

    async def on_measurement(m: ReceivedMeasurement) -> None:
        received.append(m)

    device = await BleakScanner.find_device_by_address(
        CUFF, timeout=2.0, **backends.scanner_options()
    )
    assert device is not None
    options: dict[str, Any] = {"now": now} if now is not None else {}
    DEVICE_CLOCK_ZONE.set(STOCKHOLM)  # what HubGateway._session does
    report = await run_blood_pressure_session(
        device,
        backends=backends,
        on_measurement=on_measurement,
        connect_timeout=2.0,
        idle_timeout=2.0,
        **options,
    )
    return report, [to_reading(m, zone=STOCKHOLM, synced=True) for m in received]


def _stockholm_now() -> datetime:
    return datetime.now(STOCKHOLM).replace(tzinfo=None)


@pytest.mark.timeout(60)
async def test_driver_writes_the_hub_zone_not_the_system_zone(
    host_on_utc: None, radio: SimulatedRadio
) -> None:
    # The cuff's clock runs 3 h slow against Stockholm time; a reading waits in it.
    slow = _stockholm_now() - timedelta(hours=3) - datetime.now()
    cuff = SimulatedCuff(
        radio, address=CUFF, serial="TZ-1", seed=5, idle_disconnect_s=0.1, device_clock_offset=slow
    )
    await cuff.start()
    await cuff.measure()
    measured = datetime.now(UTC)
    report, readings = await _session(radio)
    assert report.clock_written and report.error is None
    # Measured in Stockholm time (not the system's UTC), and written in it.
    assert report.device_clock_offset_s is not None
    assert abs(report.device_clock_offset_s - 10800) < 2
    assert abs((cuff.device_now() - _stockholm_now()).total_seconds()) < 2
    # The stored reading was stamped by the slow clock: corrected by the offset.
    (reading,) = readings
    assert reading.clock.source == ClockSource.OFFSET_MEASURED
    assert abs((reading.measured_at - measured).total_seconds()) < 3

    # Next connection: a reading on the clock the hub wrote, in the hub's zone.
    await cuff.measure()
    measured = datetime.now(UTC)
    report, readings = await _session(radio)
    assert report.device_clock_offset_s is not None and abs(report.device_clock_offset_s) < 2
    (reading,) = readings
    assert abs((reading.measured_at - measured).total_seconds()) < 3
    await cuff.stop()


@pytest.mark.timeout(60)
async def test_unwritable_clock_on_hub_zone_time_has_no_offset(
    host_on_utc: None, radio: SimulatedRadio
) -> None:
    # Set to Stockholm time by its owner; the hub cannot write it and must not find
    # (or apply) the hour or two between Stockholm and the system's UTC.
    cuff = SimulatedCuff(
        radio,
        address=CUFF,
        serial="TZ-2",
        seed=6,
        idle_disconnect_s=0.1,
        clock_writable=False,
        device_clock_offset=_stockholm_now() - datetime.now(),
    )
    await cuff.start()
    await cuff.measure()
    measured = datetime.now(UTC)
    report, readings = await _session(radio)
    assert not report.clock_written
    assert report.device_clock_offset_s is not None and abs(report.device_clock_offset_s) < 2
    (reading,) = readings
    assert reading.clock.source == ClockSource.OFFSET_MEASURED
    assert abs((reading.measured_at - measured).total_seconds()) < 3
    await cuff.stop()


@pytest.mark.timeout(60)
async def test_daylight_saving_change_between_two_simulated_connections(
    radio: SimulatedRadio,
) -> None:
    # The hub's clock (and with it the cuff's) starts on Saturday 2026-03-28 12:00 UTC.
    shift = datetime(2026, 3, 28, 12, 0, tzinfo=UTC) - datetime.now(UTC)

    def hub_now() -> datetime:
        return datetime.now(UTC) + shift

    cuff = SimulatedCuff(radio, address=CUFF, serial="DST-1", seed=7, idle_disconnect_s=0.1)
    await cuff.start()
    await cuff.measure()  # on a clock nobody set yet: the first connection fixes it
    first, readings = await _session(radio, hub_now)
    assert first.clock_written and len(readings) == 1
    assert abs((cuff.device_now() - datetime(2026, 3, 28, 13, 0)).total_seconds()) < 3  # CET

    saturday = await cuff.measure()
    saturday_at = hub_now()
    # Two days pass on the hub's clock and on the cuff's; the zone moves to CEST on Sunday,
    # the cuff's clock does not.
    two_days = timedelta(days=2)
    shift += two_days
    cuff._clock_offset += two_days  # the simulator has no other way to let days pass
    monday = await cuff.measure()
    monday_at = hub_now()
    second, readings = await _session(radio, hub_now)
    assert second.clock_written
    assert second.device_clock_offset_s is not None
    assert abs(second.device_clock_offset_s - 3600) < 2  # the cuff is an hour behind now
    by_raw = {r.raw_hex: r for r in readings}
    for produced, at in ((saturday, saturday_at), (monday, monday_at)):
        reading = by_raw[produced["raw_hex"]]
        assert reading.clock.source == ClockSource.OFFSET_MEASURED
        assert abs((reading.measured_at - at).total_seconds()) < 3, (produced, reading)
    assert (
        abs(
            (
                cuff.device_now() - (hub_now() + timedelta(hours=2)).replace(tzinfo=None)
            ).total_seconds()
        )
        < 3
    )
    await cuff.stop()


@pytest.mark.timeout(60)
async def test_gateway_sets_device_clocks_in_its_configured_zone(
    host_on_utc: None, tmp_path: Path, mqtt_url: str
) -> None:
    hub = unique_hub_id()
    config = GatewayConfig(
        hub_id=hub,
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        timezone="Europe/Stockholm",
        devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE)],
    )
    listener = Listener(mqtt_url, topic_readings(hub))
    try:
        async with SimulatedRadio() as radio:
            # Left on UTC by a previous hub: an hour or two behind Stockholm.
            cuff = SimulatedCuff(
                radio,
                address=CUFF,
                serial="TZ-3",
                seed=8,
                idle_disconnect_s=0.1,
                device_clock_offset=datetime.now(UTC).replace(tzinfo=None) - datetime.now(),
            )
            await cuff.start()
            await cuff.measure()
            measured = datetime.now(UTC)
            gateway = HubGateway(config, radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            batches = await asyncio.to_thread(listener.batches, 1, 20.0)
            stop.set()
            await asyncio.wait_for(task, 30)
            assert abs((cuff.device_now() - _stockholm_now()).total_seconds()) < 3
            await cuff.stop()
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)
    (reading,) = [r for b in batches for r in b.readings]
    assert reading.clock.source == ClockSource.OFFSET_MEASURED
    assert abs((reading.measured_at - measured).total_seconds()) < 3
