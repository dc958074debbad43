"""Idempotency keys: the same stored record gets the same key on every connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from bleak import BleakScanner

from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.session import ReceivedMeasurement
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio
from gateway.outbox import Outbox
from gateway.readings import idempotency_key, to_reading
from hemhub.contract import ClockSource, DeviceIdentity, Reading

CUFF = "C4:20:00:00:08:01"
ZONE = ZoneInfo("Europe/Stockholm")
#: Blood pressure without a timestamp (flags: pulse only): 120/80 mmHg, MAP 93, pulse 70.
UNTIMED = bytes.fromhex("04780050005d004600")
#: Another one: 135/85, MAP 102, pulse 72.
UNTIMED_2 = bytes.fromhex("048700550066004800")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:08:11") as r:
        yield r


async def _connection(radio: SimulatedRadio) -> list[Reading]:
    backends = radio.bleak_backends()
    received: list[ReceivedMeasurement] = []

    async def on_measurement(m: ReceivedMeasurement) -> None:
        received.append(m)

    device = await BleakScanner.find_device_by_address(
        CUFF, timeout=2.0, **backends.scanner_options()
    )
    assert device is not None
    report = await run_blood_pressure_session(
        device,
        backends=backends,
        on_measurement=on_measurement,
        connect_timeout=2.0,
        idle_timeout=2.0,
    )
    assert report.error is None
    return [to_reading(m, zone=ZONE, synced=True) for m in received]


async def test_untimed_backlog_replayed_on_every_connection_keeps_its_keys(
    radio: SimulatedRadio, tmp_path: Path
) -> None:
    cuff = SimulatedCuff(
        radio, address=CUFF, serial="NOTIME-1", seed=1, idle_disconnect_s=0.1, replay_backlog=True
    )
    await cuff.start()
    await cuff.store_raw(UNTIMED)
    await cuff.store_raw(UNTIMED_2)
    first = await _connection(radio)
    await cuff.start_advertising()  # the resident wakes the cuff again
    second = await _connection(radio)
    await cuff.stop()

    assert (
        [r.raw_hex for r in first]
        == [r.raw_hex for r in second]
        == [
            UNTIMED.hex(),
            UNTIMED_2.hex(),
        ]
    )
    assert all(r.device_time is None for r in first + second)
    assert all(r.clock.source == ClockSource.NO_DEVICE_TIME for r in first + second)
    assert first[0].hub_received_at != second[0].hub_received_at
    assert [r.idempotency_key for r in first] == [r.idempotency_key for r in second]
    assert first[0].idempotency_key != first[1].idempotency_key

    box = Outbox(tmp_path / "outbox.sqlite3")
    try:
        assert all(box.add(r) for r in first)
        assert not any(box.add(r) for r in second), "a replayed backlog is not queued again"
        assert box.depth() == 2
    finally:
        box.close()


def test_key_includes_the_record_number_where_the_profile_has_one() -> None:
    device = DeviceIdentity(address="C0:FF:EE:00:08:02", serial="GLU-1")
    raw = bytes.fromhex("0a0b0c")
    assert idempotency_key(device, "2A18", raw, 7) == idempotency_key(device, "2A18", raw, 7)
    assert idempotency_key(device, "2A18", raw, 7) != idempotency_key(device, "2A18", raw, 8)
    assert idempotency_key(device, "2A18", raw, 7) != idempotency_key(device, "2A18", raw)
    other = DeviceIdentity(address="C0:FF:EE:00:08:03", serial="GLU-2")
    assert idempotency_key(device, "2A18", raw) != idempotency_key(other, "2A18", raw)
