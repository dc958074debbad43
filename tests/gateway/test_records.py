"""Devices with numbered records (glucose meters, dispensers) through the real gateway on
the simulated radio and the real broker: the record number after the meter's 16-bit
counter rolls over, and the clock of records taken during a session after the hub set
the device clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device_drivers.simulation.dispenser import SimulatedDispenser
from device_drivers.simulation.glucose_meter import SimulatedGlucoseMeter
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub.contract import AllowedDevice, ClockSource, DeviceProfile, Reading, topic_readings
from tests.factories import unique_hub_id
from tests.mqtt_helpers import Listener, clear_retained_status

METER = "C0:FF:EE:00:07:01"
DISPENSER = "C0:FF:EE:00:07:02"


async def until(check: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s"
        await asyncio.sleep(0.05)


Script = Callable[[SimulatedGlucoseMeter, HubGateway], Awaitable[None]]


async def meter_through_gateway(
    tmp_path: Path, mqtt_url: str, first_sequence: int, script: Script, readings: int
) -> list[int | None]:
    """A glucose meter holding two records numbered from `first_sequence`, read by the
    real gateway while `script` drives both; the record numbers the hub published."""
    hub = unique_hub_id()
    config = GatewayConfig(
        hub_id=hub,
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        devices=[AllowedDevice(address=METER, profile=DeviceProfile.GLUCOSE)],
    )
    listener = Listener(mqtt_url, topic_readings(hub))
    try:
        async with SimulatedRadio() as radio:
            meter = SimulatedGlucoseMeter(
                radio, address=METER, serial="SEQ-1", seed=4, first_sequence=first_sequence
            )
            await meter.start()
            await meter.measure()
            await meter.measure()
            gateway = HubGateway(config, radio.bleak_backends(), clock_synced=lambda: True)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                await script(meter, gateway)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            await meter.stop()
        batches = await asyncio.to_thread(listener.batches, readings, 20.0)
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)
    return [r.device_sequence for b in batches for r in b.readings]


async def fetched(meter: SimulatedGlucoseMeter, gateway: HubGateway, readings: int) -> None:
    """Until the hub committed `readings` in all and the meter deleted them."""
    state = gateway.devices[METER]
    await until(lambda: state.readings == readings and meter.records == [])


@pytest.mark.timeout(120)
async def test_record_number_follows_the_meter_over_the_rollover(
    tmp_path: Path, mqtt_url: str
) -> None:
    async def script(meter: SimulatedGlucoseMeter, gateway: HubGateway) -> None:
        await fetched(meter, gateway, 2)  # 65534, 65535
        assert gateway.outbox.last_sequence(METER) == 65535

        # The meter's counter rolls over: 0, 1.
        await meter.measure()
        await meter.measure()
        await fetched(meter, gateway, 4)
        assert gateway.outbox.last_sequence(METER) == 1, "not stuck at 65535"

        # And the next session asks only for what follows 1.
        asked = len(meter.racp_requests)
        await meter.measure()  # 2
        await fetched(meter, gateway, 5)
        assert gateway.outbox.last_sequence(METER) == 2
        assert bytes.fromhex("0103010200") in meter.racp_requests[asked:]

    sequences = await meter_through_gateway(tmp_path, mqtt_url, 65534, script, 5)
    assert sequences == [65534, 65535, 0, 1, 2], "each once, in the meter's counting order"


@pytest.mark.timeout(120)
async def test_record_number_restarts_with_a_restarted_meter_log(
    tmp_path: Path, mqtt_url: str
) -> None:
    """A meter whose log restarts (battery change, reset) numbers from 1 again: the hub
    fetches the new log and keeps its numbers, so records of the new log below the old
    number are never skipped once the new log outgrows it."""

    async def script(meter: SimulatedGlucoseMeter, gateway: HubGateway) -> None:
        await fetched(meter, gateway, 2)  # 500, 501
        assert gateway.outbox.last_sequence(METER) == 501

        meter.restart_log()  # numbers from 1 again
        await meter.measure()  # 1
        await meter.measure()  # 2
        await fetched(meter, gateway, 4)
        # kept when the session that found the restart ends, just after the delete
        await until(lambda: gateway.outbox.last_sequence(METER) == 2)  # the new log's

        await meter.measure()  # 3
        await fetched(meter, gateway, 5)
        assert gateway.outbox.last_sequence(METER) == 3

    sequences = await meter_through_gateway(tmp_path, mqtt_url, 500, script, 5)
    assert sequences == [500, 501, 1, 2, 3], "each record once, none skipped"


@pytest.mark.timeout(90)
async def test_dispenser_event_after_the_clock_write_is_not_corrected_by_the_old_offset(
    tmp_path: Path, mqtt_url: str
) -> None:
    hub = unique_hub_id()
    config = GatewayConfig(
        hub_id=hub,
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        timezone="UTC",
        devices=[AllowedDevice(address=DISPENSER, profile=DeviceProfile.DISPENSER, bond=True)],
    )
    listener = Listener(mqtt_url, topic_readings(hub))
    try:
        async with SimulatedRadio() as radio:
            # Its clock runs two hours behind the hub's zone until the hub writes it. (A
            # clock that ran ahead cannot tell a record stamped after the write from one
            # stamped before it by time alone: see docs/gateway.md, clock trust.)
            behind = datetime.now(UTC).replace(tzinfo=None) - datetime.now() - timedelta(hours=2)
            robot = SimulatedDispenser(
                radio, address=DISPENSER, serial="CLK-1", seed=5, device_clock_offset=behind
            )
            await robot.start()
            stored_at = datetime.now(UTC)
            await robot.refill_low()  # stamped by the clock as the hub will find it
            gateway = HubGateway(config, radio.bleak_backends(), clock_synced=lambda: True)
            state = gateway.devices[DISPENSER]
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                # The backlog is stored; the session goes on, receiving live events.
                await until(lambda: state.readings == 1 and bool(robot.connections))
                assert robot.clock_write_count >= 1
                live_at = datetime.now(UTC)
                await robot.jam()  # stamped by the clock the hub wrote on this connection
                await until(lambda: state.readings == 2)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            await robot.stop()
        batches = await asyncio.to_thread(listener.batches, 2, 20.0)
    finally:
        listener.close()
        clear_retained_status(mqtt_url, hub)
    readings: dict[str, Reading] = {
        r.event.kind: r for b in batches for r in b.readings if r.event is not None
    }
    backlog, live = readings["refill_low"], readings["jam"]
    assert backlog.clock.source == ClockSource.OFFSET_MEASURED
    assert abs(backlog.clock.offset_s - 7200) < 3
    assert abs((backlog.measured_at - stored_at).total_seconds()) < 3
    assert live.clock.source == ClockSource.SET_BY_HUB, live.clock
    assert live.clock.offset_s == 0
    assert abs((live.measured_at - live_at).total_seconds()) < 3, (live.measured_at, live_at)
