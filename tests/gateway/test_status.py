"""The hub's status as a running gateway publishes it on the real broker: every field,
the outbox alarms (near full, full: no new device sessions), the disk alarm, and the
publisher's error count."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio
from gateway import failpoints, health
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub import __version__
from hemhub.contract import (
    AllowedDevice,
    DeviceProfile,
    HubAlarm,
    HubStatus,
    topic_status,
)
from tests.factories import bp_reading, unique_hub_id
from tests.mqtt_helpers import Listener, clear_retained_status

CUFF = "C0:FF:EE:00:05:01"
BROKEN = "C0:FF:EE:00:05:02"  # a cuff on the list as a scale: every session fails


async def next_status(
    listener: Listener, check: Callable[[HubStatus], bool], within_s: float = 20.0
) -> HubStatus:
    """The first status from the broker for which `check` holds."""
    deadline = time.monotonic() + within_s
    seen: HubStatus | None = None
    while time.monotonic() < deadline:
        try:
            msg = await asyncio.to_thread(listener.messages.get, True, 0.2)
        except queue.Empty:
            continue
        if not msg.payload:
            continue
        seen = HubStatus.model_validate_json(msg.payload)
        if seen.online and check(seen):
            return seen
    raise AssertionError(f"no such status within {within_s} s; last: {seen}")


def _config(hub: str, mqtt_url: str, data_dir: Path, **kw: object) -> GatewayConfig:
    # No disk alarm from a test machine's own full disk, unless a test asks for one.
    options: dict[str, object] = {"min_disk_free_bytes": 0, "min_disk_free_percent": 0.0}
    return GatewayConfig(
        hub_id=hub,
        mqtt_url=mqtt_url,
        data_dir=data_dir,
        status_interval_s=0.3,
        **{**options, **kw},  # type: ignore[arg-type]
    )


@pytest.mark.timeout(90)
async def test_periodic_status_carries_every_field(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    config = _config(
        hub,
        mqtt_url,
        tmp_path,
        devices=[
            AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE),
            AllowedDevice(address=BROKEN, profile=DeviceProfile.WEIGHT_SCALE),
        ],
    )
    listener = Listener(mqtt_url, topic_status(hub))
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(
                radio, address=CUFF, serial="ST-1", seed=1, battery_level=67, firmware="2.7.1"
            )
            broken = SimulatedCuff(radio, address=BROKEN, serial="ST-2", seed=2)
            await cuff.start()
            await broken.start()
            await cuff.measure()
            await broken.measure()
            gateway = HubGateway(config, radio.bleak_backends(), clock_synced=lambda: False)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                status = await next_status(
                    listener,
                    lambda s: (
                        s.last_publish_at is not None
                        # the session reads firmware and battery after the reading: a
                        # status may fall in between under load
                        and any(
                            d.address == CUFF
                            and d.readings == 1
                            and d.firmware is not None
                            and d.battery_level is not None
                            for d in s.devices
                        )
                        and any(d.address == BROKEN and d.sessions_failed >= 1 for d in s.devices)
                    ),
                    within_s=40,
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            await cuff.stop()
            await broken.stop()
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)

    assert status.hub_id == hub and status.online
    assert status.software_version == __version__
    assert status.at is not None and status.uptime_s is not None and status.uptime_s > 0
    assert status.outbox_depth == 0 and status.outbox_oldest_age_s is None
    assert status.outbox_bytes is not None and status.outbox_bytes > 0
    assert status.config_version is None  # the bootstrap list: nothing from the backend yet
    assert status.clock_synced is False
    assert status.adapter == "ok"
    assert status.disk_free_bytes is not None and status.disk_free_bytes > 0
    assert status.memory_rss_bytes is not None and status.memory_rss_bytes > 10 << 20
    # Where the kernel exposes a thermal zone it is reported, else left out.
    expected_temperature = health.cpu_temperature_c()
    assert (status.cpu_temperature_c is None) == (expected_temperature is None)
    assert status.alarms == [HubAlarm.CLOCK_NOT_SYNCED]
    assert status.publish_errors == 0 and status.last_publish_error is None

    by_address = {d.address: d for d in status.devices}
    good, bad = by_address[CUFF], by_address[BROKEN]
    assert good.profile == DeviceProfile.BLOOD_PRESSURE
    assert good.last_seen_at is not None and good.rssi is not None
    assert good.last_reading_at is not None and good.readings == 1
    assert good.firmware == "2.7.1" and good.battery_level == 67
    assert (good.sessions_failed, good.consecutive_failures, good.last_error) == (0, 0, None)
    assert bad.profile == DeviceProfile.WEIGHT_SCALE
    assert bad.last_seen_at is not None and bad.readings == 0 and bad.last_reading_at is None
    assert bad.sessions_failed >= 1 and bad.consecutive_failures >= 1
    assert bad.last_error is not None and "2A9D" in bad.last_error


@pytest.mark.timeout(90)
async def test_outbox_alarms_and_no_sessions_while_full(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    # One reading a minute leaves the backlog in the outbox while the test looks.
    config = _config(
        hub,
        mqtt_url,
        tmp_path,
        max_readings_per_s=1 / 60,
        devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE)],
    )
    listener = Listener(mqtt_url, topic_status(hub))
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(radio, address=CUFF, serial="FULL-1", seed=3)
            connections: list[float] = []
            await cuff.start()
            cuff.device.on("connection", lambda _c: connections.append(time.monotonic()))
            gateway = HubGateway(config, radio.bleak_backends(), clock_synced=lambda: True)
            for i in range(40):
                gateway.outbox.add(bp_reading(120 + i, 80, salt=f"backlog-{i}"))
            used = gateway.outbox.size_bytes()
            # The thresholds relative to what the backlog uses (the limit is only read,
            # never validated again): 90 % of the limit is near full.
            gateway.config.max_outbox_bytes = int(used / 0.9)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                near = await next_status(listener, lambda s: bool(s.alarms))
                assert near.alarms == [HubAlarm.OUTBOX_NEAR_FULL]
                assert near.outbox_depth is not None and near.outbox_depth >= 39
                assert near.outbox_oldest_age_s is not None and near.outbox_oldest_age_s > 0

                gateway.config.max_outbox_bytes = used // 2
                full = await next_status(listener, lambda s: HubAlarm.OUTBOX_FULL in s.alarms)
                assert HubAlarm.OUTBOX_NEAR_FULL not in full.alarms
                await asyncio.sleep(1.2)  # the outbox's size is cached for a second
                await cuff.measure()  # advertises until someone reads it
                await asyncio.sleep(2.0)
                assert connections == [], "no session starts while the outbox is full"
                assert len(cuff.undelivered) == 1, "the cuff keeps its reading"

                gateway.config.max_outbox_bytes = 512 << 20  # space again
                clear = await next_status(
                    listener, lambda s: not s.alarms and s.devices[0].readings == 1
                )
                assert clear.outbox_depth is not None and clear.outbox_depth >= 39
                assert len(connections) == 1 and cuff.undelivered == []
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            await cuff.stop()
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)


@pytest.mark.timeout(60)
async def test_disk_low_alarm_raised_below_threshold_and_cleared(
    tmp_path: Path, mqtt_url: str
) -> None:
    hub = unique_hub_id()
    free = health.disk_free_bytes(tmp_path)
    # A threshold above the space this filesystem has free.
    config = _config(hub, mqtt_url, tmp_path, min_disk_free_bytes=free + (1 << 30))
    listener = Listener(mqtt_url, topic_status(hub))
    try:
        async with SimulatedRadio() as radio:
            gateway = HubGateway(config, radio.bleak_backends(), clock_synced=lambda: True)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                low = await next_status(listener, lambda s: bool(s.alarms))
                assert low.alarms == [HubAlarm.DISK_LOW]
                assert low.disk_free_bytes is not None

                gateway.config.min_disk_free_bytes = 0  # recovered (bytes)
                await next_status(listener, lambda s: not s.alarms)

                gateway.config.min_disk_free_percent = 100.0  # below a percentage
                low = await next_status(listener, lambda s: bool(s.alarms))
                assert low.alarms == [HubAlarm.DISK_LOW]
                gateway.config.min_disk_free_percent = 0.0
                await next_status(listener, lambda s: not s.alarms)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)


@pytest.mark.timeout(60)
async def test_status_counts_publish_errors(tmp_path: Path, mqtt_url: str) -> None:
    hub = unique_hub_id()
    config = _config(hub, mqtt_url, tmp_path)
    listener = Listener(mqtt_url, topic_status(hub))
    failpoints.configure("outbox.mark_sent=raise")  # the disk is full
    try:
        async with SimulatedRadio() as radio:
            gateway = HubGateway(config, radio.bleak_backends(), clock_synced=lambda: True)
            gateway.outbox.add(bp_reading(150, 90, salt="errors"))
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                failing = await next_status(
                    listener, lambda s: s.publish_errors is not None and s.publish_errors >= 2
                )
                assert failing.last_publish_error is not None
                assert "No space left" in failing.last_publish_error
                failpoints.configure("")
                recovered = await next_status(listener, lambda s: s.outbox_depth == 0)
                # A count since start: it stays, and says what the last failure was.
                assert recovered.publish_errors is not None and recovered.publish_errors >= 2
                assert recovered.last_publish_error == failing.last_publish_error
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        failpoints.configure("")
        listener.close()
        clear_retained_status(mqtt_url, hub)
