"""The dispenser driver (plain bleak, RACP, live events) against a simulated robot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakGATTProtocolError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.dispenser import (
    DISPENSER_EVENT_UUID,
    DispenserEventType,
    DoseSchedule,
    ScheduledDose,
)
from device_drivers.drivers.dispenser import (
    DispenserSessionReport,
    MedicationEvent,
    read_schedule,
    run_dispenser_session,
    update_schedule,
    write_schedule,
)
from device_drivers.drivers.session import ReceivedMeasurement
from device_drivers.measurement import ClinicalMeasurement
from device_drivers.simulation.dispenser import SimulatedDispenser
from device_drivers.simulation.radio import SimulatedRadio
from hemhub.contract import MeasurementType

ROBOT = "C4:60:00:00:00:01"
DAY = date(2025, 3, 10)
pytestmark = pytest.mark.timeout(30)

T = DispenserEventType


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:31") as r:
        yield r


class Harness:
    def __init__(self, radio: SimulatedRadio, **options: Any) -> None:
        self.backends: BleakBackends = radio.bleak_backends()
        self.produced: list[dict[str, Any]] = []
        self.received: list[ReceivedMeasurement] = []
        self.last_sequence: int | None = None
        settings: dict[str, Any] = {
            "address": ROBOT,
            "serial": "MD-2024-0007",
            "seed": 5,
            "on_produced": self.produced.append,
        }
        settings.update(options)
        self.robot = SimulatedDispenser(radio, **settings)
        #: Set whenever on_measurement stored an event.
        self.arrived = asyncio.Event()

    async def on_measurement(self, m: ReceivedMeasurement) -> None:
        self.received.append(m)
        self.arrived.set()

    async def find(self) -> BLEDevice:
        device = await BleakScanner.find_device_by_address(
            ROBOT, timeout=2.0, **self.backends.scanner_options()
        )
        assert device is not None
        return device

    async def session(self, **options: Any) -> DispenserSessionReport:
        settings: dict[str, Any] = {
            "connect_timeout": 2.0,
            "idle_timeout": 0.3,
            "on_measurement": self.on_measurement,
            "since_sequence": self.last_sequence,
        }
        settings.update(options)
        report = await run_dispenser_session(await self.find(), backends=self.backends, **settings)
        self.last_sequence = report.last_sequence
        return report

    def events(self) -> list[MedicationEvent]:
        out = []
        for m in self.received:
            assert isinstance(m.measurement, MedicationEvent)
            out.append(m.measurement)
        return out


async def test_skipping_patient_late_and_missed_events_in_order(radio: SimulatedRadio) -> None:
    h = Harness(radio, scenario="skips_doses")
    await h.robot.start()
    played = await h.robot.run_day(DAY)

    report = await h.session()

    assert report.error is None and report.rejected == [] and report.transfer_complete
    events = h.events()
    assert [e.sequence for e in events] == list(range(1, len(played) + 1))
    assert [e.event_type for e in events] == [
        T.DOSE_DUE, T.DOSE_DISPENSED, T.DOSE_TAKEN,  # 08:00 taken
        T.DOSE_DUE, T.DOSE_LATE, T.DOSE_DISPENSED, T.DOSE_TAKEN,  # 13:00 late
        T.DOSE_DUE, T.DOSE_DISPENSED, T.DOSE_TAKEN,  # 18:00 taken
        T.DOSE_DUE, T.DOSE_LATE, T.DOSE_MISSED,  # 21:30 missed: locked away
    ]  # fmt: skip
    late = events[4].event
    assert late.dose_id == 2 and late.detail == 30
    assert late.time == datetime.combine(DAY, time(13, 30))
    missed = events[-1]
    assert missed.event.dose_id == 4 and missed.event.detail == 90
    assert missed.timestamp == datetime.combine(DAY, time(23, 0))
    assert missed.status_names() == ["dose_missed", "needs_staff_attention", "from_storage"]
    assert not missed.is_device_error and missed.quantities() == []
    taken_late = events[6].event
    assert taken_late.detail is not None and 30 <= taken_late.detail < 90
    assert all(e.event.from_storage for e in events)  # fetched through the RACP
    for m in h.received:
        assert m.measurement_type is MeasurementType.MEDICATION_EVENT
        assert m.characteristic == DISPENSER_EVENT_UUID
        assert isinstance(m.measurement, ClinicalMeasurement)
    assert report.last_sequence == 13 and report.deleted_up_to == 13
    assert h.robot.records == []  # deleted after they were stored
    assert report.status is not None and report.status.last_sequence == 13
    assert report.status.doses_remaining == 52
    assert report.identity.model == "MDR-SIM-1"
    assert report.paired  # the robot asked for encryption: Just Works bond
    # 32-bit sequence numbers on the wire: fetch all, then delete <= 13.
    assert h.robot.racp_requests == [bytes.fromhex("0101"), bytes.fromhex("0202010d000000")]


async def test_adherent_days_each_event_once_across_sessions(radio: SimulatedRadio) -> None:
    h = Harness(radio, scenario="adherent")
    await h.robot.start()
    await h.robot.run_day(DAY)
    first = await h.session()
    assert first.received == 12 and first.last_sequence == 12
    await h.robot.run_day()  # the next day
    second = await h.session()
    assert second.received == 12 and second.last_sequence == 24
    assert h.robot.racp_requests[-2] == bytes.fromhex("0103010d000000")  # >= 13
    third = await h.session()
    assert third.received == 0 and third.error is None and third.last_sequence == 24
    events = h.events()
    assert [e.sequence for e in events] == list(range(1, 25))
    assert {e.event_type for e in events} == {T.DOSE_DUE, T.DOSE_DISPENSED, T.DOSE_TAKEN}
    assert events[12].timestamp == datetime.combine(DAY + timedelta(days=1), time(8, 0))
    # The log sends the bytes it produced, with the from-storage flag (bit 2) set.
    for m, p in zip(h.received, h.produced, strict=True):
        live = bytes.fromhex(p["raw_hex"])
        assert m.raw == bytes((live[0] | 0x04,)) + live[1:]
    assert [e.event for e in events] == [
        e.model_copy(update={"from_storage": True}) for e in h.robot.history
    ]


async def test_live_events_arrive_during_a_session(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.robot.start()
    await h.robot.run_dose(1, "taken", day=DAY)  # 3 stored events

    async def meanwhile() -> None:
        while len(h.received) < 3:
            h.arrived.clear()
            await h.arrived.wait()
        await h.robot.jam(code=0x0042)
        await h.robot.tamper()
        await h.robot.low_battery(9)

    session = asyncio.create_task(h.session(idle_timeout=1.0))
    await meanwhile()
    report = await session

    assert report.error is None
    assert report.received == 6 and report.live_events == 3
    live = h.events()[3:]
    assert [e.event_type for e in live] == [T.JAM, T.TAMPER, T.LOW_BATTERY]
    assert [e.sequence for e in live] == [4, 5, 6]
    assert all(not e.event.from_storage for e in live)
    jam, tamper, battery = live
    assert jam.is_device_error and jam.event.detail == 0x42
    assert jam.status_names() == ["jam", "needs_staff_attention"]
    assert not tamper.is_device_error and "needs_staff_attention" in tamper.status_names()
    assert not battery.is_device_error and battery.event.detail == 9
    assert h.robot.live_indications == 3
    assert report.last_sequence == 6 and report.deleted_up_to == 6
    assert h.robot.records == []
    status = h.robot.status.status
    assert status.jam and status.tamper_detected and status.battery_low


async def test_schedule_round_trip_and_change_event(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.robot.start()
    device = await h.find()
    new = DoseSchedule(
        late_after_minutes=20,
        missed_after_minutes=60,
        doses=(
            ScheduledDose(dose_id=7, at=time(7, 15)),
            ScheduledDose(dose_id=9, at=time(19, 45)),
        ),
    )
    assert await update_schedule(device, backends=h.backends, connect_timeout=2.0) == (
        h.robot.schedule
    )
    assert await update_schedule(device, new, backends=h.backends, connect_timeout=2.0) == new
    assert h.robot.schedule == new
    await asyncio.sleep(0.05)
    assert [e.event for e in h.robot.events] == [T.SCHEDULE_CHANGED]

    async with BleakClient(device, backend=h.backends.client, timeout=2.0) as client:
        assert await read_schedule(client) == new  # bonded by update_schedule
        with pytest.raises(BleakGATTProtocolError) as refused:
            # late after 0 minutes: not a valid schedule.
            await client.write_gatt_char(
                "48454d48-0003-4d45-4449-53504e535201", bytes.fromhex("0000010000"), response=True
            )
        assert int(refused.value.code) == 0x13
        await write_schedule(client, new)
    events = await h.robot.run_day(DAY)
    assert {e.dose_id for e in events} == {7, 9}
    assert events[0].time == datetime.combine(DAY, time(7, 15))


async def test_failing_consumer_keeps_events_on_the_robot(radio: SimulatedRadio) -> None:
    h = Harness(radio, scenario="skips_doses")
    await h.robot.start()
    await h.robot.run_dose(1, "missed", day=DAY)

    async def broken(_m: ReceivedMeasurement) -> None:
        raise RuntimeError("outbox unavailable")

    failed = await h.session(on_measurement=broken)
    assert failed.error is not None and "outbox unavailable" in failed.error
    assert failed.last_sequence is None and failed.deleted_up_to is None
    assert len(h.robot.records) == 3

    retry = await h.session()
    assert retry.error is None and retry.received == 3
    assert [e.event_type for e in h.events()] == [T.DOSE_DUE, T.DOSE_LATE, T.DOSE_MISSED]
    assert h.robot.records == []


async def test_disconnect_mid_transfer_then_rest_next_session(radio: SimulatedRadio) -> None:
    h = Harness(radio, disconnect_mid_transfer=5)
    await h.robot.start()
    await h.robot.run_day(DAY)  # 12 events
    sessions = [await h.session() for _ in range(3)]
    assert [s.received for s in sessions] == [5, 5, 2]
    assert sessions[-1].transfer_complete and sessions[-1].deleted_up_to == 12
    assert [e.sequence for e in h.events()] == list(range(1, 13))


async def test_reset_robot_log_is_fetched_again(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.robot.start()
    await h.robot.run_dose(1, day=DAY)
    report = await h.session(since_sequence=500)  # the hub knew a previous life of it
    assert report.sequence_reset
    assert report.received == 3 and report.last_sequence == 3


async def test_racp_without_indications_is_refused(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.robot.start()
    await h.robot.refill_low(5)
    async with BleakClient(await h.find(), backend=h.backends.client, timeout=2.0) as client:
        with pytest.raises(BleakGATTProtocolError) as unencrypted:
            await client.write_gatt_char(
                "48454d48-0005-4d45-4449-53504e535201", bytes.fromhex("0101"), response=True
            )
        assert int(unencrypted.value.code) == 0x0F  # insufficient encryption: bond first
        await client.pair()
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char(
                "48454d48-0005-4d45-4449-53504e535201", bytes.fromhex("0101"), response=True
            )
        assert int(refused.value.code) == 0xFD
    report = await h.session()
    assert report.received == 1
    [event] = h.events()
    assert event.event_type is T.REFILL_LOW and event.event.detail == 5


async def test_restarted_robot_log_is_fetched_whole(radio: SimulatedRadio) -> None:
    """Reconditioned: its numbering restarts at 1, below the hub's last stored event."""
    h = Harness(radio)
    await h.robot.start()
    await h.robot.run_dose(1, day=DAY)
    assert (await h.session()).last_sequence == 3
    h.robot.restart_log()
    await h.robot.refill_low(5)  # sequence 1 of the new log
    report = await h.session()
    assert report.sequence_reset and report.status is not None
    assert report.status.last_sequence == 1
    assert report.received == 1 and report.last_sequence == 1 and report.deleted_up_to == 1
    assert [e.sequence for e in h.events()] == [1, 2, 3, 1]
    assert h.events()[-1].event_type is T.REFILL_LOW
    again = await h.session()
    assert not again.sequence_reset and again.received == 0 and again.last_sequence == 1
