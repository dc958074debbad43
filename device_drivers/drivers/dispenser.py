"""Medication-dispenser driver over plain bleak (hemhub Medication Dispenser Service).

A session connects (retrying with backoff), reads Device Information, reads then writes
Current Time, reads the Dispenser Status, enables indications on Dispenser Event and on
the dispenser's RACP, fetches the events after the hub's last stored one (RACP, 32-bit
sequence numbers), hands each to `on_measurement` in sequence order, then stays to receive
live event indications until the dispenser is silent for `idle_timeout` (or hangs up).
Events are deleted on the dispenser only up to the last one `on_measurement` stored.

Each event reaches `on_measurement` as a `ReceivedMeasurement` with measurement type
MEDICATION_EVENT whose `measurement` is a `MedicationEvent`, the `ClinicalMeasurement`
adapter of the codec's `DispenserEvent`:
- `quantities()` is [] (an event carries no measured value);
- `status_names()` is the event type first ("dose_missed"...), then the flags that are
  set: "needs_staff_attention" (missed, jam, device error, tamper), "clock_not_set",
  "from_storage";
- `is_device_error` is True for the events that mean the device cannot dispense (jam,
  device error) and False for everything else, also for tamper and low battery (they are
  alerts about the device, not failed measurements).
`ReceivedMeasurement.characteristic` is the Dispenser Event's full 128-bit UUID.

`read_schedule` / `write_schedule` read and write the Dose Schedule on a connected client
(HMC configuration); `update_schedule` is a whole connection for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from device_drivers.bleak_backends import PLATFORM_BACKENDS, BleakBackends
from device_drivers.codecs.dispenser import (
    DISPENSER_EVENT_UUID,
    DISPENSER_RACP_UUID,
    DISPENSER_SEQUENCE_SIZE,
    DISPENSER_STATUS_UUID,
    DOSE_SCHEDULE_UUID,
    DispenserEvent,
    DispenserEventType,
    DispenserStatus,
    DoseSchedule,
    decode_dispenser_event,
    decode_dispenser_status,
    decode_dose_schedule,
    encode_dose_schedule,
)
from device_drivers.codecs.errors import DecodeError
from device_drivers.drivers.racp import (
    RecordSession,
    RecordSessionReport,
    RecordStream,
    run_record_session,
)
from device_drivers.drivers.record_numbers import LogExtent, log_was_reset
from device_drivers.drivers.session import (
    ReceivedMeasurement,
    SecuredLink,
    connect_with_retry,
    disconnect_quietly,
    utc_now,
)
from hemhub.contract import DeviceEvent, DeviceIdentity, MeasurementType, Quantity

logger = logging.getLogger(__name__)

#: Events after which the dispenser cannot dispense (`is_device_error`).
DEVICE_ERROR_EVENTS = frozenset({DispenserEventType.JAM, DispenserEventType.DEVICE_ERROR})


@dataclass(frozen=True)
class MedicationEvent:
    """A `DispenserEvent` as a `ClinicalMeasurement` (see the module doc)."""

    event: DispenserEvent

    @property
    def timestamp(self) -> datetime | None:
        return self.event.time

    @property
    def is_device_error(self) -> bool:
        return self.event.event in DEVICE_ERROR_EVENTS

    @property
    def sequence(self) -> int:
        return self.event.sequence

    @property
    def event_type(self) -> DispenserEventType:
        return self.event.event

    def quantities(self) -> list[Quantity]:
        return []

    def device_event(self) -> DeviceEvent:
        """The event as the wire contract carries it."""
        e = self.event
        return DeviceEvent(
            kind=e.event.value,
            dose_id=e.dose_id,
            slot=e.slot,
            needs_staff_attention=e.needs_staff_attention,
        )

    def status_names(self) -> list[str]:
        e = self.event
        flags = {
            "needs_staff_attention": e.needs_staff_attention,
            "clock_not_set": e.clock_not_set,
            "from_storage": e.from_storage,
        }
        return [e.event.value, *(name for name, on in flags.items() if on)]


def _sequence(event: MedicationEvent) -> int:
    return event.sequence


def decode_medication_event(raw: bytes) -> MedicationEvent:
    """Decode a Dispenser Event into the adapter; raises `DecodeError` when malformed."""
    return MedicationEvent(decode_dispenser_event(raw))


@dataclass
class DispenserSessionReport(RecordSessionReport):
    """What one session with a dispenser achieved (`last_sequence`: persist it)."""

    #: The Dispenser Status read at connect; None if unreadable.
    status: DispenserStatus | None = None
    #: Events that arrived as live indications and were stored.
    live_events: int = 0
    #: The dispenser's newest sequence number (Dispenser Status) precedes the hub's:
    #: its log was reset (reconditioned, factory reset), so everything it holds was
    #: fetched (`record_numbers.log_was_reset`, the rule the glucose driver uses too).
    sequence_reset: bool = False


async def read_schedule(client: BleakClient, link: SecuredLink | None = None) -> DoseSchedule:
    """The dispenser's Dose Schedule (raises `DecodeError` when malformed)."""
    link = link or SecuredLink(client)
    raw = await link.run(lambda: client.read_gatt_char(DOSE_SCHEDULE_UUID))
    return decode_dose_schedule(bytes(raw))


async def write_schedule(
    client: BleakClient, schedule: DoseSchedule, link: SecuredLink | None = None
) -> None:
    """Write the Dose Schedule (with response; an ATT error raises `BleakGATTProtocolError`)."""
    link = link or SecuredLink(client)
    value = encode_dose_schedule(schedule)
    await link.run(lambda: client.write_gatt_char(DOSE_SCHEDULE_UUID, value, response=True))


async def read_status(client: BleakClient, link: SecuredLink) -> DispenserStatus | None:
    try:
        raw = await link.run(lambda: client.read_gatt_char(DISPENSER_STATUS_UUID))
        return decode_dispenser_status(bytes(raw))
    except (DecodeError, BleakError) as exc:
        logger.warning("%s: Dispenser Status unreadable: %s", client.address, exc)
        return None


async def update_schedule(
    device: BLEDevice,
    schedule: DoseSchedule | None = None,
    *,
    backends: BleakBackends = PLATFORM_BACKENDS,
    connect_timeout: float = 15.0,
    attempts: int = 3,
    bond: bool = False,
    retry_backoff_s: float = 1.0,
) -> DoseSchedule:
    """Connect, write `schedule` (None: only read), read it back, disconnect; returns
    the schedule the dispenser now holds. Raises `BleakError` / `DecodeError` on failure."""
    client = await connect_with_retry(
        device,
        backends=backends,
        connect_timeout=connect_timeout,
        attempts=attempts,
        backoff_s=retry_backoff_s,
        pair=bond,
    )
    try:
        link = SecuredLink(client)
        if schedule is not None:
            await write_schedule(client, schedule, link)
        return await read_schedule(client, link)
    finally:
        await disconnect_quietly(client)


#: The dispenser's event log: Dispenser Event indications, its own RACP, u32 sequences.
DISPENSER_EVENTS = RecordStream(
    characteristic=DISPENSER_EVENT_UUID,
    measurement_type=MeasurementType.MEDICATION_EVENT,
    decode=decode_medication_event,
    sequence_of=_sequence,
    record_uuid=DISPENSER_EVENT_UUID,
    control_point_uuid=DISPENSER_RACP_UUID,
    sequence_size=DISPENSER_SEQUENCE_SIZE,
    event_of=MedicationEvent.device_event,
)


async def run_dispenser_session(
    device: BLEDevice,
    *,
    backends: BleakBackends = PLATFORM_BACKENDS,
    on_measurement: Callable[[ReceivedMeasurement], Awaitable[None]],
    now: Callable[[], datetime] = utc_now,
    connect_timeout: float = 15.0,
    idle_timeout: float = 5.0,
    attempts: int = 3,
    bond: bool = False,
    retry_backoff_s: float = 1.0,
    since_sequence: int | None = None,
) -> DispenserSessionReport:
    """Run one session with a medication dispenser; returns what it achieved.

    `since_sequence` is the last event sequence number the hub already stored from this
    dispenser (None: fetch the whole log). `on_measurement` must return only once the event
    is committed; if it raises, the session stops there and nothing after the last
    committed event is deleted. Live events are received until the dispenser is silent for
    `idle_timeout`. Raises `DeviceUnreachableError` when all `attempts` to connect failed;
    other failures after connecting end the session with `error` set.
    """
    report = DispenserSessionReport(
        identity=DeviceIdentity(address=device.address.upper()), last_sequence=since_sequence
    )

    async def prepare(
        _session: RecordSession[MedicationEvent], client: BleakClient, link: SecuredLink
    ) -> None:
        report.status = await read_status(client, link)
        newest = report.status.last_sequence if report.status is not None else None
        log = LogExtent(newest=newest)
        if log_was_reset(since_sequence, log, sequence_size=DISPENSER_SEQUENCE_SIZE):
            logger.warning(
                "%s: newest event %s precedes the hub's %s: log reset, fetching all",
                report.identity.address,
                newest,
                since_sequence,
            )
            report.sequence_reset = True
            report.last_sequence = None

    async def follow_up(session: RecordSession[MedicationEvent]) -> None:
        await _receive_live(session, report, idle_timeout)
        await session.delete_stored()

    await run_record_session(
        device,
        DISPENSER_EVENTS,
        report,
        on_measurement=on_measurement,
        backends=backends,
        now=now,
        connect_timeout=connect_timeout,
        idle_timeout=idle_timeout,
        attempts=attempts,
        bond=bond,
        retry_backoff_s=retry_backoff_s,
        kind="dispenser",
        prepare=prepare,
        follow_up=follow_up,
    )
    return report


async def _receive_live(
    session: RecordSession[MedicationEvent], report: DispenserSessionReport, idle_timeout: float
) -> None:
    """Store live events until `idle_timeout` of silence; a gap in the sequence numbers
    (an event the hub never saw) is filled from the log through the RACP."""
    while (record := await session.racp.next_record(idle_timeout)) is not None:
        try:
            sequence: int | None = session.decode(record.raw).sequence
        except DecodeError:
            sequence = None  # rejected (and listed) by `store`
        last = report.last_sequence
        if sequence is not None and last is not None and sequence > last + 1:
            address = report.identity.address
            logger.info("%s: live event %d after %d: fetching the gap", address, sequence, last)
            await session.fetch()
        else:
            before = report.received
            stored = await session.store([record])
            report.live_events += report.received - before
            if not stored:
                return
        if report.error is not None:
            return
    logger.debug("%s: no live event for %.3g s", report.identity.address, idle_timeout)


__all__ = [
    "DEVICE_ERROR_EVENTS",
    "DISPENSER_EVENTS",
    "DispenserSessionReport",
    "MedicationEvent",
    "decode_medication_event",
    "read_schedule",
    "read_status",
    "run_dispenser_session",
    "update_schedule",
    "write_schedule",
]
