"""The session manager on the simulated radio: per-device backoff after failures, and
recovery of the scanner when the adapter stops answering (status on the real broker)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bleak.exc import BleakError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.drivers.session import SessionReport
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio
from gateway import hub as hub_module
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub.contract import AllowedDevice, DeviceProfile, HubAlarm, topic_status
from tests.factories import unique_hub_id
from tests.gateway.test_status import next_status
from tests.mqtt_helpers import Listener, clear_retained_status

CUFF = "C0:FF:EE:00:06:01"


async def until(check: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s"
        await asyncio.sleep(0.02)


def _config(hub: str, mqtt_url: str, tmp_path: Path, profile: DeviceProfile) -> GatewayConfig:
    return GatewayConfig(
        hub_id=hub,
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        status_interval_s=0.3,
        min_disk_free_bytes=0,  # no disk alarm from a test machine's own full disk
        min_disk_free_percent=0.0,
        devices=[AllowedDevice(address=CUFF, profile=profile)],
    )


@pytest.mark.timeout(60)
async def test_failing_device_backs_off_doubling_up_to_the_max(
    tmp_path: Path, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "BACKOFF_START_S", 0.4)
    monkeypatch.setattr(hub_module, "BACKOFF_MAX_S", 1.6)
    hub = unique_hub_id()
    # A cuff on the list as a scale: it advertises all along, and every session fails.
    config = _config(hub, mqtt_url, tmp_path, DeviceProfile.WEIGHT_SCALE)
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(radio, address=CUFF, serial="BO-1", seed=1)
            await cuff.start()
            connections: list[float] = []
            cuff.device.on("connection", lambda _c: connections.append(time.monotonic()))
            await cuff.measure()
            gateway = HubGateway(config, radio.bleak_backends(), clock_synced=lambda: True)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            state = gateway.devices[CUFF]
            await until(lambda: len(connections) >= 6)
            assert state.consecutive_failures >= 5 and state.last_error is not None

            # Fixed: the next session succeeds and the count of consecutive failures resets.
            state.allowed = AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE)
            await until(lambda: state.readings == 1 and state.consecutive_failures == 0)
            failed = state.sessions_failed
            assert state.consecutive_failures == 0 and state.last_error is None
            stop.set()
            await asyncio.wait_for(task, 30)
            await cuff.stop()
    finally:
        clear_retained_status(mqtt_url, hub)

    gaps = [b - a for a, b in itertools.pairwise(connections)][:5]
    # Each wait at least the backoff after the failure before it: 0.4, 0.8, 1.6, then
    # the maximum (1.6); a session itself takes well under a second here.
    for gap, backoff in zip(gaps, (0.4, 0.8, 1.6, 1.6, 1.6), strict=True):
        assert backoff - 0.05 <= gap <= backoff + 1.0, (gaps, backoff)
    assert failed == len(connections) - 1


def _flaky(backends: BleakBackends, failures: int) -> tuple[BleakBackends, type[Any]]:
    """The radio's backends with a scanner whose first `failures` starts fail like a
    BlueZ adapter that is not ready; the scanner class counts its starts."""
    assert backends.scanner is not None
    base: type[Any] = backends.scanner

    class Flaky(base):  # type: ignore[valid-type,misc]
        starts = 0
        left = failures

        async def start(self) -> None:
            type(self).starts += 1
            if type(self).left > 0:
                type(self).left -= 1
                raise BleakError("org.bluez.Error.NotReady: Resource Not Ready")
            await super().start()

    return BleakBackends(scanner=Flaky, client=backends.client), Flaky


@pytest.mark.timeout(60)
async def test_scanner_that_fails_to_start_marks_the_adapter_and_recovers(
    tmp_path: Path, mqtt_url: str
) -> None:
    hub = unique_hub_id()
    config = _config(hub, mqtt_url, tmp_path, DeviceProfile.BLOOD_PRESSURE)
    listener = Listener(mqtt_url, topic_status(hub))
    try:
        async with SimulatedRadio() as radio:
            backends, flaky = _flaky(radio.bleak_backends(), failures=2)
            cuff = SimulatedCuff(radio, address=CUFF, serial="AD-1", seed=2)
            await cuff.start()
            await cuff.measure()
            gateway = HubGateway(config, backends, clock_synced=lambda: True)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                down = await next_status(listener, lambda s: s.adapter == "unresponsive")
                assert down.alarms == [HubAlarm.ADAPTER_UNRESPONSIVE]
                assert not gateway.started.is_set()
                # Backoff 1 s, then 2 s: the third start works.
                up = await next_status(
                    listener, lambda s: s.adapter == "ok" and s.devices[0].readings == 1
                )
                assert up.alarms == []
                assert flaky.starts == 3 and gateway.started.is_set()
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            await cuff.stop()
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)


@pytest.mark.timeout(60)
async def test_repeated_adapter_errors_restart_the_scanner(
    tmp_path: Path,
    mqtt_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(hub_module, "BACKOFF_START_S", 0.05)
    real = hub_module.DRIVERS[DeviceProfile.BLOOD_PRESSURE]
    calls = 0

    async def stuck_adapter_then_well(device: Any, **kwargs: Any) -> SessionReport:
        nonlocal calls
        calls += 1
        if calls <= hub_module.ADAPTER_FAILURE_LIMIT:
            # What BlueZ answers while the adapter is wedged in another operation.
            raise BleakError("org.bluez.Error.InProgress: Operation already in progress")
        return await real(device, **kwargs)

    monkeypatch.setitem(hub_module.DRIVERS, DeviceProfile.BLOOD_PRESSURE, stuck_adapter_then_well)
    hub = unique_hub_id()
    config = _config(hub, mqtt_url, tmp_path, DeviceProfile.BLOOD_PRESSURE)
    caplog.set_level(logging.WARNING, logger="gateway.hub")
    try:
        async with SimulatedRadio() as radio:
            backends, counting = _flaky(radio.bleak_backends(), failures=0)
            cuff = SimulatedCuff(radio, address=CUFF, serial="AD-2", seed=3)
            await cuff.start()
            await cuff.measure()
            gateway = HubGateway(config, backends, clock_synced=lambda: True)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            state = gateway.devices[CUFF]
            await until(lambda: state.readings == 1, within_s=30)
            assert counting.starts == 2, "the scanner was started again after the 5th error"
            assert gateway._adapter_state == "ok"
            assert gateway._adapter_failures == 0
            assert state.sessions_failed == hub_module.ADAPTER_FAILURE_LIMIT
            assert any("restarting the scanner" in r.getMessage() for r in caplog.records)
            stop.set()
            await asyncio.wait_for(task, 30)
            await cuff.stop()
    finally:
        clear_retained_status(mqtt_url, hub)
