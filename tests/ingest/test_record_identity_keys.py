"""Keys from what a record is (issue 11), through the real ingest store and PostgreSQL.

- A dispenser event received live and again from storage is stored once.
- Readings stored before migration 0007 carry the keys older hubs made (transport bits
  included); after a real `hemhub migrate`, their replay by an upgraded hub is a
  duplicate, and so is a replay by a hub not yet upgraded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from bleak import BleakScanner

from device_drivers.codecs.dispenser import (
    DISPENSER_EVENT_UUID,
    DispenserEvent,
    DispenserEventType,
    encode_dispenser_event,
)
from device_drivers.codecs.pulse_oximeter import (
    PlxDeviceSensorStatus,
    PlxMeasurementStatus,
    PlxSpotCheckMeasurement,
    decode_plx_spot_check,
    encode_plx_spot_check,
)
from device_drivers.drivers.dispenser import (
    MedicationEvent,
    decode_medication_event,
    run_dispenser_session,
)
from device_drivers.drivers.session import ReceivedMeasurement
from device_drivers.simulation.dispenser import SimulatedDispenser
from device_drivers.simulation.radio import SimulatedRadio
from gateway.readings import to_reading
from hemhub.contract import DeviceIdentity, MeasurementType, Reading, ReadingBatch
from ingest.migrations import migrate
from ingest.pipeline import store
from tests.factories import unique_hub_id

ROOT = Path(__file__).resolve().parents[2]
ZONE = ZoneInfo("Europe/Stockholm")
ROBOT = "C4:60:00:00:11:01"
MIGRATION = "0007_record_identity_keys"

pytestmark = pytest.mark.timeout(90)


def _store(url: str, hub_id: str, readings: list[Reading]) -> tuple[int, int]:
    """(stored, duplicates) of one batch through the ingest tier's store."""
    with psycopg.connect(url, autocommit=True) as conn:
        result = store(conn, [ReadingBatch(hub_id=hub_id, readings=readings)])
    return result.stored, result.duplicates


def _rows(url: str, hub_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT device_sequence, idempotency_key FROM readings WHERE hub_id = %s"
            " ORDER BY device_sequence",
            (hub_id,),
        ).fetchall()


async def _dispenser_sessions() -> tuple[list[ReceivedMeasurement], list[ReceivedMeasurement]]:
    """Two sessions of the real driver with a simulated robot that keeps its whole log
    (`replay_backlog`: deletes ignored, the log sent again on every report). The first
    fetches 3 stored events, then receives 2 live; the second gets all 5 from storage."""
    async with SimulatedRadio(address="F0:00:00:00:11:31") as radio:
        backends = radio.bleak_backends()
        robot = SimulatedDispenser(radio, address=ROBOT, serial="MD-KEYS-1", replay_backlog=True)
        await robot.start()
        await robot.run_dose(1, "taken")
        first: list[ReceivedMeasurement] = []
        arrived = asyncio.Event()

        async def on_first(m: ReceivedMeasurement) -> None:
            first.append(m)
            arrived.set()

        async def session(on_measurement: Any, idle_timeout: float) -> None:
            device = await BleakScanner.find_device_by_address(
                ROBOT, timeout=2.0, **backends.scanner_options()
            )
            assert device is not None
            report = await run_dispenser_session(
                device,
                backends=backends,
                on_measurement=on_measurement,
                connect_timeout=2.0,
                idle_timeout=idle_timeout,
            )
            assert report.error is None

        running = asyncio.create_task(session(on_first, 1.0))
        while len(first) < 3:
            arrived.clear()
            await arrived.wait()
        await robot.jam()
        await robot.tamper()
        await running

        second: list[ReceivedMeasurement] = []

        async def on_second(m: ReceivedMeasurement) -> None:
            second.append(m)

        await session(on_second, 0.3)
        await robot.stop()
    return first, second


def _from_storage(m: ReceivedMeasurement) -> bool:
    assert isinstance(m.measurement, MedicationEvent)
    return m.measurement.event.from_storage


async def test_a_dispenser_event_received_live_and_from_storage_is_stored_once(
    database_url: str,
) -> None:
    migrate(database_url)
    first, second = await _dispenser_sessions()
    assert [_from_storage(m) for m in first] == [True, True, True, False, False]
    assert [_from_storage(m) for m in second] == [True] * 5
    assert [m.raw[1:] for m in second] == [m.raw[1:] for m in first]
    assert {m.raw for m in second} != {m.raw for m in first}, "the flag differs on the wire"

    hub_id = unique_hub_id("keys")
    readings = [to_reading(m, zone=ZONE, synced=True) for m in first]
    again = [to_reading(m, zone=ZONE, synced=True) for m in second]
    assert _store(database_url, hub_id, readings) == (5, 0)
    assert _store(database_url, hub_id, again) == (0, 5)
    assert [row[0] for row in _rows(database_url, hub_id)] == [1, 2, 3, 4, 5]


# --- keys stored before 0007 -----------------------------------------------------------

WHEN = datetime(2026, 2, 3, 9, 30, 0)
HUB_RECEIVED = datetime.now(UTC).replace(microsecond=0)


def _old_key(identity: DeviceIdentity, characteristic: str, raw: bytes, seq: int | None) -> str:
    """The key hubs made before this release: the raw bytes as sent, transport bits and all."""
    h = hashlib.sha256()
    for part in (identity.stable_id, characteristic, raw.hex(), "" if seq is None else str(seq)):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def _received(identity: DeviceIdentity, characteristic: str, raw: bytes) -> ReceivedMeasurement:
    """What a driver hands the hub for these bytes (decoded as the drivers decode them)."""
    if characteristic == DISPENSER_EVENT_UUID:
        event = decode_medication_event(raw)
        return ReceivedMeasurement(
            characteristic=characteristic,
            measurement_type=MeasurementType.MEDICATION_EVENT,
            raw=raw,
            measurement=event,
            received_at=HUB_RECEIVED,
            identity=identity,
            clock_written=True,
            device_clock_offset_s=0.0,
            sequence=event.sequence,
            event=event.device_event(),
        )
    return ReceivedMeasurement(
        characteristic=characteristic,
        measurement_type=MeasurementType.PULSE_OXIMETRY,
        raw=raw,
        measurement=decode_plx_spot_check(raw),
        received_at=HUB_RECEIVED,
        identity=identity,
        clock_written=True,
        device_clock_offset_s=0.0,
    )


def _records() -> list[tuple[DeviceIdentity, str, bytes, bytes]]:
    """(device, characteristic, bytes as an old hub stored them, the same record live)."""
    robot = DeviceIdentity(address="C4:60:00:00:11:02", manufacturer="Acme", serial="MD-9")
    oximeter = DeviceIdentity(address="C4:50:00:00:11:03", manufacturer="Acme", serial="OX-9")
    out: list[tuple[DeviceIdentity, str, bytes, bytes]] = []
    for sequence, kind in ((7, DispenserEventType.JAM), (8, DispenserEventType.TAMPER)):
        event = DispenserEvent(event=kind, sequence=sequence, time=WHEN, detail=3)
        out.append(
            (
                robot,
                DISPENSER_EVENT_UUID,
                encode_dispenser_event(event.model_copy(update={"from_storage": True})),
                encode_dispenser_event(event),
            )
        )
    for minute, timestamp in ((1, True), (2, False)):
        status = {"validated": True}
        m = PlxSpotCheckMeasurement(
            spo2=96.0,
            pulse_rate=60.0 + minute,
            timestamp=WHEN + timedelta(minutes=minute) if timestamp else None,
            measurement_status=PlxMeasurementStatus(**status),
            device_sensor_status=PlxDeviceSensorStatus(low_perfusion=True),
        )
        travelled = m.model_copy(
            update={
                "measurement_status": PlxMeasurementStatus(
                    **status, from_storage=True, measurement_ongoing=True
                ),
                "device_sensor_status": PlxDeviceSensorStatus(
                    low_perfusion=True, signal_analysis_ongoing=True
                ),
            }
        )
        out.append((oximeter, "2A5E", encode_plx_spot_check(travelled), encode_plx_spot_check(m)))
    return out


def _hemhub_migrate(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hemhub.cli", "migrate"],
        cwd=ROOT,
        env={**os.environ, "HEMHUB_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _keys(url: str, keys: list[str]) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key FROM reading_keys WHERE idempotency_key = ANY(%s)", (keys,)
        )
        return {r[0] for r in rows}


@pytest.fixture(params=["native", "timescaledb"])
def partitioned_url(request: pytest.FixtureRequest) -> str:
    """A migrated database whose readings are partitioned as the parameter says."""
    mode = request.param
    url: str = request.getfixturevalue(
        "timescaledb_url" if mode == "timescaledb" else "database_url"
    )
    assert migrate(url, partitioning=mode).partitioning == mode
    return url


def _compress_old_chunks(url: str) -> None:
    """TimescaleDB: the old readings in compressed chunks, as the policy leaves them."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM hemhub_meta WHERE key = 'readings_partitioning'")
        if row.fetchone() != ("timescaledb",):
            return
        chunks = conn.execute("SELECT compress_chunk(c) FROM show_chunks('readings') c")
        assert chunks.fetchall(), "the old readings are in a chunk"


def test_an_old_key_reading_replayed_after_migrate_is_a_duplicate(partitioned_url: str) -> None:
    database_url = partitioned_url
    # A database of the previous release: 0007 has not run yet when old hubs store.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (MIGRATION,))
    hub_id = unique_hub_id("old-hub")
    records = _records()
    old = []
    for identity, characteristic, travelled, _live in records:
        reading = to_reading(_received(identity, characteristic, travelled), zone=ZONE, synced=True)
        old.append(
            reading.model_copy(
                update={
                    "idempotency_key": _old_key(
                        identity, characteristic, travelled, reading.device_sequence
                    )
                }
            )
        )
    assert _store(database_url, hub_id, old) == (4, 0)
    new = [
        to_reading(_received(identity, characteristic, travelled), zone=ZONE, synced=True)
        for identity, characteristic, travelled, _live in records
    ]
    live = [
        to_reading(_received(identity, characteristic, raw), zone=ZONE, synced=True)
        for identity, characteristic, _travelled, raw in records
    ]
    assert [r.idempotency_key for r in new] == [r.idempotency_key for r in live]
    assert not {r.idempotency_key for r in new} & {r.idempotency_key for r in old}
    assert _keys(database_url, [r.idempotency_key for r in new]) == set(), "not there before"
    _compress_old_chunks(database_url)

    assert MIGRATION in _hemhub_migrate(database_url)

    assert _keys(database_url, [r.idempotency_key for r in new]) == {r.idempotency_key for r in new}
    upgraded = unique_hub_id("upgraded-hub")
    assert _store(database_url, upgraded, new) == (0, 4)
    assert _store(database_url, upgraded, live) == (0, 4)
    assert _store(database_url, hub_id, old) == (0, 4), "a hub not yet upgraded still dedupes"
    assert len(_rows(database_url, hub_id)) == 4 and _rows(database_url, upgraded) == []

    # Applied once: migrate again is a no-op, the keys stay.
    assert MIGRATION not in _hemhub_migrate(database_url)
    assert _store(database_url, upgraded, new) == (0, 4)
