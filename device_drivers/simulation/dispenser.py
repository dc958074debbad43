"""A simulated medication dispenser (robot) serving the hemhub Medication Dispenser Service.

The service (`device_drivers.codecs.dispenser`, 128-bit UUIDs `48454d48-xxxx-4d45-4449-
53504e535201`): Dispenser Event (indicate), Dose Schedule (read, write), Dispenser Status
(read, notify) and a Record Access Control Point with 32-bit sequence numbers, served by
`RacpPeripheral` (see `glucose_meter.py`: 0xFD until the CCCDs are configured, report /
delete / count / abort by sequence number), and the Dispenser Control Point (`…0006`):
its data reset (`01 57 49 50 45`) indicates success, then erases the log, the schedule
and every bond, restarts numbering at 1 (`data_reset()`), and drops the link.

Every event gets the next sequence number (from 1) and the device time, is kept in the
log until a hub deletes it through the RACP, and is indicated at once to every connected
central that enabled indications on Dispenser Event ("live"; events sent from the log in
answer to a RACP report carry the from-storage flag instead).

Simulated time: `run_dose(dose_id, outcome, day=...)` plays one scheduled dose of `day`
(default: today on the device clock) with device times derived from the schedule:
- "taken": dose due, dispensed and taken within the late window;
- "late": dose due, late (after `late_after_minutes`), then dispensed and taken;
- "missed": dose due, late, missed (after `missed_after_minutes`: locked away).
`run_day()` plays every scheduled dose of a day with the scenario's outcomes ("adherent":
all taken; "skips_doses": the 2nd dose of every 4 late, the 4th missed) and moves the
simulated day on. `refill_low()`, `refill()`, `jam()`, `clear_jam()`, `tamper()`,
`low_battery()` and `device_error()` produce their events and update the status.
A dispensed or locked-away dose uses one pouch; reaching `refill_threshold` doses
remaining produces a refill-low event by itself.

Fault switches: those of `RacpPeripheral` (`bond_required`, on by default; `replay`,
`replay_backlog`, `disconnect_mid_transfer`, `restart_log()`) and `SimulatedPeripheral`
(`clock_writable=False`, `clock_unset`, `clock_write_ignored`, `set_battery_level`,
`set_in_range`, `power_off`), and `inject_error_readings(n)`: the next n events are
logged as `device_error` (code `ERROR_READING_CODE`, status bit `sensor_fault`) instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any, Literal

from bumble import att, gatt
from bumble.core import UUID
from bumble.device import Connection

from device_drivers.codecs.dispenser import (
    DISPENSER_EVENT_UUID,
    DISPENSER_RACP_UUID,
    DISPENSER_SEQUENCE_SIZE,
    DISPENSER_SERVICE_UUID,
    DISPENSER_STATUS_UUID,
    DOSE_SCHEDULE_UUID,
    DispenserEvent,
    DispenserEventType,
    DispenserStatus,
    DispenserStatusBits,
    DoseSchedule,
    ScheduledDose,
    decode_dispenser_event,
    decode_dose_schedule,
    encode_dispenser_event,
    encode_dispenser_status,
    encode_dose_schedule,
)
from device_drivers.codecs.dispenser_control import (
    DISPENSER_CONTROL_POINT_UUID,
    DispenserControlRequestError,
    DispenserControlResult,
    decode_control_request,
    encode_control_response,
)
from device_drivers.codecs.errors import DecodeError
from device_drivers.simulation.glucose_meter import RacpPeripheral, RacpRecord
from device_drivers.simulation.peripheral import ATT_VALUE_NOT_ALLOWED
from device_drivers.simulation.radio import SimulatedRadio

logger = logging.getLogger(__name__)

Scenario = Literal["adherent", "skips_doses"]
SCENARIOS: tuple[Scenario, ...] = ("adherent", "skips_doses")
Outcome = Literal["taken", "late", "missed"]
OUTCOMES: tuple[Outcome, ...] = ("taken", "late", "missed")

#: Outcomes of "skips_doses", cycling over the doses played.
_SKIPPING: tuple[Outcome, ...] = ("taken", "late", "taken", "missed")
#: Pouch slots of the carousel.
SLOTS = 28
#: Vendor code of the `device_error` event an injected error reading logs (sensor fault).
ERROR_READING_CODE = 0x0301

DEFAULT_SCHEDULE = DoseSchedule(
    late_after_minutes=30,
    missed_after_minutes=90,
    doses=(
        ScheduledDose(dose_id=1, at=dtime(8, 0)),
        ScheduledDose(dose_id=2, at=dtime(13, 0)),
        ScheduledDose(dose_id=3, at=dtime(18, 0)),
        ScheduledDose(dose_id=4, at=dtime(21, 30)),
    ),
)

#: The schedule of a dispenser after a data reset: no doses.
EMPTY_SCHEDULE = DoseSchedule(late_after_minutes=30, missed_after_minutes=90, doses=())


class SimulatedDispenser(RacpPeripheral):
    """A simulated medication robot (mains powered: it always advertises).

    As docs/dispenser-gatt.md asks, its characteristics and CCCDs need an encrypted link
    (`bond_required=True` unless told otherwise): a hub pairs (Just Works) on first use.

    Args:
        radio: the simulated radio (started) whose link the dispenser joins.
        address: its random static address, "C4:..." (first byte C0-FF).
        serial: the serial number string (DIS 0x2A25).
        scenario: "adherent" or "skips_doses" (outcomes of `run_day`).
        seed: seed of the minute offsets (same seed, same times).
        schedule: the initial dose schedule.
        doses_remaining: pouches loaded.
        refill_threshold: doses remaining at which it reports refill low by itself.
        on_produced: called with a JSON-serialisable record for every event.
        options: the RACP server's switches (`bond_required`, `replay`,
            `disconnect_mid_transfer`, `record_interval_s`: see `RacpPeripheral`), those
            of `SimulatedPeripheral` (`clock_writable`, `device_clock_offset`,
            `clock_unset`, `battery_level`...) and the identity (`name`, `model`...).
    """

    MANUFACTURER = "Hemhub Simulated Devices"
    MODEL = "MDR-SIM-1"
    SEQUENCE_SIZE = DISPENSER_SEQUENCE_SIZE

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        serial: str,
        scenario: Scenario = "adherent",
        seed: int = 0,
        schedule: DoseSchedule = DEFAULT_SCHEDULE,
        doses_remaining: int = 56,
        refill_threshold: int = 7,
        on_produced: Callable[[dict[str, Any]], None] | None = None,
        **options: Any,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        options.setdefault("name", f"MedRobot {serial[-4:]}")
        options.setdefault("manufacturer", self.MANUFACTURER)
        options.setdefault("model", self.MODEL)
        options.setdefault("firmware", "3.0.1")
        options.setdefault("hardware", "rev C")
        options.setdefault("bond_required", True)  # docs/dispenser-gatt.md: encrypted only
        super().__init__(radio, address=address, serial=serial, **options)
        self.scenario: Scenario = scenario
        self.schedule = schedule
        self.doses_remaining = doses_remaining
        self.refill_threshold = refill_threshold
        self.on_produced = on_produced
        self.status_bits = DispenserStatusBits()
        self.next_sequence = 1
        #: The simulated day `run_day` plays next (None: today on the device clock).
        self.day: date | None = None
        #: Every event produced, also those a hub already deleted from the log.
        self.history: list[DispenserEvent] = []
        #: Live event indications confirmed by a central.
        self.live_indications = 0
        self._rng = random.Random(seed)
        self._doses_played = 0
        self._slot = 0
        self._status_characteristic: gatt.Characteristic[bytes] | None = None
        self._control_characteristic: gatt.Characteristic[bytes] | None = None
        #: Every Dispenser Control Point request written by a central, as written.
        self.control_requests: list[bytes] = []
        #: Data resets carried out.
        self.data_resets = 0

    # --- GATT -------------------------------------------------------------------------

    def extra_services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        event = self.record_characteristic(UUID(DISPENSER_EVENT_UUID), props.INDICATE)
        access = gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE
        if self.bond_required:
            access |= (
                gatt.Characteristic.READ_REQUIRES_ENCRYPTION
                | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION
            )
        schedule: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID(DOSE_SCHEDULE_UUID),
            props.READ | props.WRITE,
            access,
            gatt.CharacteristicValue(
                read=lambda _c: encode_dose_schedule(self.schedule), write=self._write_schedule
            ),
        )
        status: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID(DISPENSER_STATUS_UUID),
            props.READ | props.NOTIFY,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=lambda _c: encode_dispenser_status(self.status)),
        )
        self._status_characteristic = status
        racp = self.racp_characteristic(UUID(DISPENSER_RACP_UUID))
        control_access = gatt.Characteristic.WRITEABLE
        if self.bond_required:
            control_access |= gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION
        control: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID(DISPENSER_CONTROL_POINT_UUID),
            props.WRITE | props.INDICATE,
            control_access,
            gatt.CharacteristicValue(write=self._write_control),
        )
        control.descriptors = [self._cccd(control)]
        self._control_characteristic = control
        return [
            gatt.Service(UUID(DISPENSER_SERVICE_UUID), [event, schedule, status, racp, control])
        ]

    # --- Dispenser Control Point: the data reset (docs/dispenser-gatt.md) ---------------

    def _write_control(self, connection: Connection, value: bytes) -> None:
        data = bytes(value)
        self.control_requests.append(data)
        control = self._control_characteristic
        assert control is not None
        if not self.cccd_bits(connection, control) & 0x02:
            raise att.ATT_Error(0xFD)  # CCCD improperly configured, as the RACP says
        self.spawn_for(connection, self._control(connection, data))

    async def _control(self, connection: Connection, data: bytes) -> None:
        control = self._control_characteristic
        assert control is not None
        try:
            opcode = decode_control_request(data)
        except DispenserControlRequestError as exc:
            logger.info("%s: control request %s refused: %s", self.name, data.hex(), exc)
            response = encode_control_response(exc.request_opcode, exc.result)
            await self.device.indicate_subscriber(connection, control, response)
            return
        response = encode_control_response(opcode, DispenserControlResult.SUCCESS)
        await self.device.indicate_subscriber(connection, control, response)
        await self.data_reset()
        await self._disconnect(connection)  # its bond is gone: the link with it

    async def data_reset(self) -> None:
        """Erase the event log, the dose schedule and every bond; numbering restarts at 1
        (docs/dispenser-gatt.md, "Security": reconditioning). Doses still loaded stay:
        they are in the machine, not in its memory."""
        self.records_erased(self.records)
        self.records = []
        self.next_sequence = 1
        self.log_restarts += 1
        self.schedule = EMPTY_SCHEDULE
        self.status_bits = DispenserStatusBits()
        self.data_resets += 1
        keystore = self.device.keystore
        if keystore is not None:
            for name, _keys in await keystore.get_all():
                await keystore.delete(name)
        self.memory_changed()

    def _write_schedule(self, _connection: Connection, value: bytes) -> None:
        try:
            schedule = decode_dose_schedule(bytes(value))
        except DecodeError as exc:
            logger.info("%s: schedule refused: %s", self.name, exc)
            raise att.ATT_Error(ATT_VALUE_NOT_ALLOWED) from exc
        self.schedule = schedule
        self.spawn(self._schedule_changed())

    async def _schedule_changed(self) -> None:
        await self._emit(DispenserEventType.SCHEDULE_CHANGED)

    async def send_stored(self, connection: Connection, stored: RacpRecord) -> None:
        """From the log: the event with the from-storage flag (live ones have it clear)."""
        event: DispenserEvent = stored.model
        raw = encode_dispenser_event(event.model_copy(update={"from_storage": True}))
        await self.device.indicate_subscriber(connection, self._event_characteristic, raw)

    @property
    def _event_characteristic(self) -> gatt.Characteristic[bytes]:
        characteristic = self._record_characteristic
        assert characteristic is not None
        return characteristic

    # --- state ------------------------------------------------------------------------

    @property
    def status(self) -> DispenserStatus:
        bits = self.status_bits.model_copy(
            update={
                "battery_low": self.battery_low,
                "refill_low": self.doses_remaining <= self.refill_threshold,
                "clock_not_set": not self.clock_is_set,
            }
        )
        return DispenserStatus(
            battery_percent=self.battery_level,
            doses_remaining=self.doses_remaining,
            status=bits,
            last_sequence=self.next_sequence - 1,
        )

    @property
    def events(self) -> list[DispenserEvent]:
        """The events still in the log (not deleted by a hub)."""
        return [r.model for r in self.records]

    async def _status_changed(self) -> None:
        self.memory_changed()
        if self._device is not None and self._status_characteristic is not None:
            await self.device.notify_subscribers(self._status_characteristic)

    # --- memory -----------------------------------------------------------------------

    def decode_record(self, raw: bytes) -> DispenserEvent:
        return decode_dispenser_event(raw)

    def memory_state(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {
            **super().memory_state(),
            "schedule_hex": encode_dose_schedule(self.schedule).hex(),
            "doses_remaining": self.doses_remaining,
            "status_bits": self.status_bits.to_bits(),
            "day": None if self.day is None else self.day.isoformat(),
            "doses_played": self._doses_played,
            "slot": self._slot,
            "rng": [version, list(internal), gauss],
        }

    def restore_memory(self, state: dict[str, Any]) -> None:
        super().restore_memory(state)
        self.schedule = decode_dose_schedule(bytes.fromhex(state["schedule_hex"]))
        self.doses_remaining = state["doses_remaining"]
        self.status_bits = DispenserStatusBits.from_bits(state["status_bits"])
        self.day = None if state["day"] is None else date.fromisoformat(state["day"])
        self._doses_played = state["doses_played"]
        self._slot = state["slot"]
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))

    # --- events -----------------------------------------------------------------------

    async def _emit(
        self,
        kind: DispenserEventType,
        *,
        at: datetime | None = None,
        dose_id: int | None = None,
        slot: int | None = None,
        detail: int | None = None,
    ) -> DispenserEvent:
        """Log an event with the next sequence number and indicate it live.

        After `inject_error_readings(n)` the next n events are logged as `device_error`
        (vendor code `ERROR_READING_CODE`, sensor fault) in their place: the robot's
        sensor failed to register what happened (its "all NaN" reading)."""
        error = self.take_error_reading()
        if error:
            kind, detail = DispenserEventType.DEVICE_ERROR, ERROR_READING_CODE
            self.status_bits = self.status_bits.model_copy(update={"sensor_fault": True})
        sequence = self.next_sequence
        self.next_sequence += 1
        event = DispenserEvent(
            event=kind,
            sequence=sequence,
            time=(at if at is not None else self.device_now()).replace(microsecond=0),
            dose_id=dose_id,
            slot=slot,
            detail=detail,
            clock_not_set=not self.clock_is_set,
        )
        raw = encode_dispenser_event(event)
        record: dict[str, Any] = {
            "address": self.address,
            "serial": self.serial,
            "characteristic": DISPENSER_EVENT_UUID,
            "sequence": sequence,
            "event": kind.value,
            "dose_id": dose_id,
            "slot": slot,
            "detail": detail,
            "raw_hex": raw.hex(),
            "error": error,
            "device_time": event.time.isoformat() if event.time is not None else None,
            "produced_at": datetime.now(UTC).isoformat(),
        }
        self.history.append(event)
        await self.store_record(RacpRecord(sequence, raw, event, record))
        if self.on_produced is not None:
            self.on_produced(dict(record))
        for connection in list(self.connections):
            if self.cccd_bits(connection, self._event_characteristic) & 0x02:
                await self._indicate_live(connection, raw)
        return event

    async def _indicate_live(self, connection: Connection, raw: bytes) -> None:
        characteristic = self._event_characteristic
        try:
            await self._on_link(
                connection, self.device.indicate_subscriber(connection, characteristic, raw)
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return  # the link dropped: the event stays in the log for the next session
        self.live_indications += 1

    def _dose(self, dose_id: int) -> ScheduledDose:
        for dose in self.schedule.doses:
            if dose.dose_id == dose_id:
                return dose
        raise ValueError(f"dose {dose_id} is not in the schedule")

    async def _use_pouch(self) -> None:
        self.doses_remaining = max(0, self.doses_remaining - 1)
        if self.doses_remaining == self.refill_threshold:
            await self._emit(DispenserEventType.REFILL_LOW, detail=self.doses_remaining)
        await self._status_changed()

    async def run_dose(
        self, dose_id: int, outcome: Outcome = "taken", *, day: date | None = None
    ) -> list[DispenserEvent]:
        """Play one scheduled dose of `day` (default: the simulated day, else today on the
        device clock) with the given outcome; returns its events in order."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        dose = self._dose(dose_id)
        day = day or self.day or self.device_now().date()
        due = datetime.combine(day, dose.at)
        late, missed = self.schedule.late_after_minutes, self.schedule.missed_after_minutes
        self._slot = self._slot % SLOTS + 1
        slot = self._slot
        events = [await self._emit(DispenserEventType.DOSE_DUE, at=due, dose_id=dose_id, slot=slot)]
        if outcome != "taken":
            events.append(
                await self._emit(
                    DispenserEventType.DOSE_LATE,
                    at=due + timedelta(minutes=late),
                    dose_id=dose_id,
                    slot=slot,
                    detail=late,
                )
            )
        if outcome == "missed":
            events.append(
                await self._emit(
                    DispenserEventType.DOSE_MISSED,  # locked away: staff are alerted
                    at=due + timedelta(minutes=missed),
                    dose_id=dose_id,
                    slot=slot,
                    detail=missed,
                )
            )
        else:
            low, high = (0, late - 1) if outcome == "taken" else (late, max(late, missed - 1))
            after = self._rng.randint(low, high)
            when = due + timedelta(minutes=after)
            for kind, extra in (
                (DispenserEventType.DOSE_DISPENSED, None),
                (DispenserEventType.DOSE_TAKEN, after),
            ):
                events.append(
                    await self._emit(kind, at=when, dose_id=dose_id, slot=slot, detail=extra)
                )
        self._doses_played += 1
        await self._use_pouch()
        return events

    def outcome_of_next_dose(self) -> Outcome:
        """The scenario's outcome for the next dose `run_day` plays."""
        if self.scenario == "skips_doses":
            return _SKIPPING[self._doses_played % len(_SKIPPING)]
        return "taken"

    async def run_day(self, day: date | None = None) -> list[DispenserEvent]:
        """Play every scheduled dose of `day` (default: the simulated day) in time order
        with the scenario's outcomes, then move the simulated day on by one."""
        day = day or self.day or self.device_now().date()
        events: list[DispenserEvent] = []
        for dose in sorted(self.schedule.doses, key=lambda d: d.at):
            events += await self.run_dose(dose.dose_id, self.outcome_of_next_dose(), day=day)
        self.day = day + timedelta(days=1)
        self.memory_changed()
        return events

    async def refill_low(self, remaining: int | None = None) -> DispenserEvent:
        """Report refill low (`remaining` doses left; default: the threshold)."""
        if remaining is not None:
            self.doses_remaining = remaining
        else:
            self.doses_remaining = min(self.doses_remaining, self.refill_threshold)
        event = await self._emit(DispenserEventType.REFILL_LOW, detail=self.doses_remaining)
        await self._status_changed()
        return event

    async def refill(self, doses: int = 56) -> DispenserEvent:
        self.doses_remaining = doses
        event = await self._emit(DispenserEventType.REFILLED, detail=doses)
        await self._status_changed()
        return event

    async def _fault(self, kind: DispenserEventType, detail: int, **bits: bool) -> DispenserEvent:
        self.status_bits = self.status_bits.model_copy(update=bits)
        event = await self._emit(kind, detail=detail)
        await self._status_changed()
        return event

    async def jam(self, code: int = 0x0101) -> DispenserEvent:
        """The mechanism jammed (vendor error `code`): it cannot dispense until cleared."""
        return await self._fault(DispenserEventType.JAM, code, jam=True)

    async def clear_jam(self) -> None:
        self.status_bits = self.status_bits.model_copy(update={"jam": False})
        await self._status_changed()

    async def device_error(self, code: int = 0x0201) -> DispenserEvent:
        return await self._fault(DispenserEventType.DEVICE_ERROR, code, mechanism_fault=True)

    async def tamper(self, kind: int = 1) -> DispenserEvent:
        """Someone forced the lid or the carousel (`kind`: vendor tamper kind)."""
        return await self._fault(DispenserEventType.TAMPER, kind, tamper_detected=True)

    async def low_battery(self, percent: int = 12) -> DispenserEvent:
        """Mains lost and the backup battery is low."""
        self.battery_level = percent
        await self.set_battery_level(percent)
        return await self._fault(DispenserEventType.LOW_BATTERY, percent, mains_power_lost=True)


__all__ = [
    "DEFAULT_SCHEDULE",
    "ERROR_READING_CODE",
    "OUTCOMES",
    "SCENARIOS",
    "Outcome",
    "Scenario",
    "SimulatedDispenser",
]
