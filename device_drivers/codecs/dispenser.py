"""hemhub Medication Dispenser Service: our own vendor-neutral GATT profile.

The full profile is in docs/dispenser-gatt.md.

No public standard exists for medication robots, so this one is ours. Its 128-bit UUIDs
share one fixed base, `48454d48-xxxx-4d45-4449-53504e535201` (ASCII "HEMH", "ME", "DI",
"SPNSR", 0x01), with xxxx = 0001 for the service and 0002-0005 for its characteristics:

- Dispenser Event (indicate): flags u8 | sequence u32 | event type u8 | Date Time 7
  | dose id u16 | slot u8 | [detail u16]
- Dose Schedule (read, write): late after u16 min | missed after u16 min | count u8
  | count x (dose id u16 | hour u8 | minute u8)
- Dispenser Status (read, notify): battery u8 % | doses remaining u16 | status bits u16
  | last sequence u32
- Dispenser Record Access Control Point (write, indicate): the SIG RACP (0x2A52) opcodes,
  operators and response codes with 32-bit sequence numbers (filter type 1 only).

Errors of these codecs name the characteristic by its full lower-case 128-bit UUID.
"""

from __future__ import annotations

import enum
from datetime import time as dtime
from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from device_drivers.codecs.common import BitFlags, Frozen, NaiveDatetime
from device_drivers.codecs.errors import DecodeError
from device_drivers.codecs.ieee11073 import ByteReader, encode_date_time
from device_drivers.codecs.racp import RacpMessage, decode_racp, encode_racp

#: The fixed base of every UUID of the service; {:04x} is the 16-bit part that varies.
DISPENSER_UUID_TEMPLATE = "48454d48-{:04x}-4d45-4449-53504e535201"
DISPENSER_UUID_PREFIX = "48454d48-"
DISPENSER_UUID_SUFFIX = "-4d45-4449-53504e535201"


def dispenser_uuid(short: int) -> str:
    """The 128-bit UUID (lower case) with `short` in the varying 16 bits."""
    if not 0 <= short <= 0xFFFF:
        raise ValueError(f"{short!r} is not a 16-bit value")
    return DISPENSER_UUID_TEMPLATE.format(short)


DISPENSER_SERVICE_UUID = dispenser_uuid(0x0001)
DISPENSER_EVENT_UUID = dispenser_uuid(0x0002)
DOSE_SCHEDULE_UUID = dispenser_uuid(0x0003)
DISPENSER_STATUS_UUID = dispenser_uuid(0x0004)
DISPENSER_RACP_UUID = dispenser_uuid(0x0005)

#: RACP sequence numbers of this service are 32 bit.
DISPENSER_SEQUENCE_SIZE = 4
MAX_SEQUENCE = 0xFFFFFFFF


# --- Dispenser Event -----------------------------------------------------------------------

EVENT_FLAG_DETAIL = 0x01
EVENT_FLAG_CLOCK_NOT_SET = 0x02
EVENT_FLAG_FROM_STORAGE = 0x04
EVENT_FLAGS_RESERVED = 0xF8
#: Flags that say how an event travelled, not what happened: masked for its identity.
EVENT_TRANSPORT_FLAGS = {"from_storage": EVENT_FLAG_FROM_STORAGE}


class DispenserEventType(enum.StrEnum):
    """What happened. The wire code of each is in `EVENT_TYPE_CODES` (1-12)."""

    DOSE_DUE = "dose_due"
    DOSE_DISPENSED = "dose_dispensed"
    DOSE_TAKEN = "dose_taken"
    DOSE_LATE = "dose_late"
    DOSE_MISSED = "dose_missed"
    REFILL_LOW = "refill_low"
    JAM = "jam"
    DEVICE_ERROR = "device_error"
    TAMPER = "tamper"
    LOW_BATTERY = "low_battery"
    REFILLED = "refilled"
    SCHEDULE_CHANGED = "schedule_changed"


EVENT_TYPE_CODES: dict[DispenserEventType, int] = {
    t: code for code, t in enumerate(DispenserEventType, start=1)
}
_EVENT_TYPES_BY_CODE = {code: t for t, code in EVENT_TYPE_CODES.items()}

#: Events about one scheduled dose: they must name it (dose id 1-65535).
DOSE_EVENTS = frozenset(
    {
        DispenserEventType.DOSE_DUE,
        DispenserEventType.DOSE_DISPENSED,
        DispenserEventType.DOSE_TAKEN,
        DispenserEventType.DOSE_LATE,
        DispenserEventType.DOSE_MISSED,
    }
)
#: Events that need a person: the dose was locked away, or the device cannot dispense.
STAFF_ATTENTION_EVENTS = frozenset(
    {
        DispenserEventType.DOSE_MISSED,
        DispenserEventType.JAM,
        DispenserEventType.DEVICE_ERROR,
        DispenserEventType.TAMPER,
    }
)


class DispenserEvent(Frozen):
    """One event of the dispenser's log, live or fetched from storage through the RACP.

    `sequence` (1..2**32-1) increases by one per event and is the key for fetching what a
    hub missed and for deduplication. `time` is the device's wall clock (naive), None if
    unknown. `dose_id` / `slot` are None when the event concerns no dose / no slot (0 on
    the wire). `detail` depends on the event type: minutes after the due time (taken,
    late, missed), doses remaining (refill low), vendor error code (jam, device error),
    tamper kind (tamper), battery % (low battery).
    """

    event: DispenserEventType
    sequence: Annotated[int, Field(ge=1, le=MAX_SEQUENCE)]
    time: NaiveDatetime
    dose_id: Annotated[int, Field(ge=1, le=0xFFFF)] | None = None
    slot: Annotated[int, Field(ge=1, le=255)] | None = None
    detail: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    #: The device's clock was never set (e.g. after a battery change): `time` is unreliable.
    clock_not_set: bool = False
    #: Sent from the device's store in answer to a RACP request, not as it happened.
    from_storage: bool = False

    @model_validator(mode="after")
    def _dose_events_name_a_dose(self) -> DispenserEvent:
        if self.event in DOSE_EVENTS and self.dose_id is None:
            raise ValueError(f"a {self.event.value} event names its dose (dose_id)")
        return self

    @property
    def needs_staff_attention(self) -> bool:
        return self.event in STAFF_ATTENTION_EVENTS


def decode_dispenser_event(data: bytes) -> DispenserEvent:
    """Decode a Dispenser Event. Raises `DecodeError` (and nothing else) when malformed."""
    r = ByteReader(data, DISPENSER_EVENT_UUID)
    flags = r.uint(1, "flags")
    if flags & EVENT_FLAGS_RESERVED:
        raise r.error(f"reserved flag bits set (flags 0x{flags:02X})", 0)
    sequence = r.uint(4, "sequence number")
    if sequence == 0:
        raise r.error("sequence number 0 (sequence numbers start at 1)", 1)
    code = r.uint(1, "event type")
    event = _EVENT_TYPES_BY_CODE.get(code)
    if event is None:
        raise r.error(f"unknown event type {code}", 5)
    when = r.date_time()
    at = r.offset
    dose_id = r.uint(2, "dose id")
    if event in DOSE_EVENTS and dose_id == 0:
        raise r.error(f"{event.value} without a dose id", at)
    slot = r.uint(1, "slot")
    detail = r.uint(2, "detail") if flags & EVENT_FLAG_DETAIL else None
    r.finish()
    return DispenserEvent(
        event=event,
        sequence=sequence,
        time=when,
        dose_id=dose_id or None,
        slot=slot or None,
        detail=detail,
        clock_not_set=bool(flags & EVENT_FLAG_CLOCK_NOT_SET),
        from_storage=bool(flags & EVENT_FLAG_FROM_STORAGE),
    )


def dispenser_event_identity(data: bytes) -> bytes:
    """The event's bytes with its transport flags cleared (`EVENT_TRANSPORT_FLAGS`): the
    same event indicated live and again from storage has one identity. `DecodeError`
    when `data` is not a Dispenser Event."""
    decode_dispenser_event(data)
    mask = sum(EVENT_TRANSPORT_FLAGS.values())
    return bytes((data[0] & ~mask,)) + data[1:]


def encode_dispenser_event(e: DispenserEvent) -> bytes:
    """Encode a Dispenser Event (the simulator's side): 17 bytes, 19 with a detail."""
    flags = (
        (EVENT_FLAG_DETAIL if e.detail is not None else 0)
        | (EVENT_FLAG_CLOCK_NOT_SET if e.clock_not_set else 0)
        | (EVENT_FLAG_FROM_STORAGE if e.from_storage else 0)
    )
    out = (
        bytes((flags,))
        + e.sequence.to_bytes(4, "little")
        + bytes((EVENT_TYPE_CODES[e.event],))
        + encode_date_time(e.time)
        + (e.dose_id or 0).to_bytes(2, "little")
        + bytes((e.slot or 0,))
    )
    if e.detail is not None:
        out += e.detail.to_bytes(2, "little")
    return out


# --- Dose Schedule -------------------------------------------------------------------------

MAX_SCHEDULED_DOSES = 24
MINUTES_PER_DAY = 1440


class ScheduledDose(Frozen):
    """One daily dose: its id (1-65535) and the local wall-clock time it is due."""

    dose_id: Annotated[int, Field(ge=1, le=0xFFFF)]
    at: dtime

    @model_validator(mode="after")
    def _whole_minutes(self) -> ScheduledDose:
        if self.at.second or self.at.microsecond or self.at.tzinfo is not None:
            raise ValueError("dose times are naive whole minutes")
        return self


class DoseSchedule(Frozen):
    """The daily dose plan. A dose not taken `late_after_minutes` after its time is late;
    `missed_after_minutes` after it, the device locks it away and reports it missed.
    """

    late_after_minutes: Annotated[int, Field(ge=1, le=MINUTES_PER_DAY)]
    missed_after_minutes: Annotated[int, Field(ge=1, le=MINUTES_PER_DAY)]
    doses: Annotated[tuple[ScheduledDose, ...], Field(max_length=MAX_SCHEDULED_DOSES)] = ()

    @model_validator(mode="after")
    def _consistent(self) -> DoseSchedule:
        if self.missed_after_minutes < self.late_after_minutes:
            raise ValueError("a dose is late before it is missed")
        ids = [d.dose_id for d in self.doses]
        if len(set(ids)) != len(ids):
            raise ValueError("dose ids must be unique")
        return self


def decode_dose_schedule(data: bytes) -> DoseSchedule:
    """Decode a Dose Schedule value (read from, or written to, the device)."""
    r = ByteReader(data, DOSE_SCHEDULE_UUID)
    late = r.uint(2, "late after")
    if not 1 <= late <= MINUTES_PER_DAY:
        raise r.error(f"late after {late} min outside 1..{MINUTES_PER_DAY}", 0)
    missed = r.uint(2, "missed after")
    if not late <= missed <= MINUTES_PER_DAY:
        raise r.error(f"missed after {missed} min outside {late}..{MINUTES_PER_DAY}", 2)
    count = r.uint(1, "dose count")
    if count > MAX_SCHEDULED_DOSES:
        raise r.error(f"{count} doses, at most {MAX_SCHEDULED_DOSES}", 4)
    doses = []
    seen: set[int] = set()
    for i in range(count):
        at = r.offset
        dose_id = r.uint(2, f"dose {i} id")
        if dose_id == 0 or dose_id in seen:
            raise r.error(f"dose {i}: dose id {dose_id} is 0 or repeated", at)
        seen.add(dose_id)
        hour = r.uint(1, f"dose {i} hour")
        if hour > 23:
            raise r.error(f"dose {i}: hour {hour}", at + 2)
        minute = r.uint(1, f"dose {i} minute")
        if minute > 59:
            raise r.error(f"dose {i}: minute {minute}", at + 3)
        doses.append(ScheduledDose(dose_id=dose_id, at=dtime(hour, minute)))
    r.finish()
    return DoseSchedule(late_after_minutes=late, missed_after_minutes=missed, doses=tuple(doses))


def encode_dose_schedule(s: DoseSchedule) -> bytes:
    out = (
        s.late_after_minutes.to_bytes(2, "little")
        + s.missed_after_minutes.to_bytes(2, "little")
        + bytes((len(s.doses),))
    )
    for d in s.doses:
        out += d.dose_id.to_bytes(2, "little") + bytes((d.at.hour, d.at.minute))
    return out


# --- Dispenser Status ----------------------------------------------------------------------

BATTERY_UNKNOWN = 0xFF
DOSES_REMAINING_UNKNOWN = 0xFFFF


class DispenserStatusBits(BitFlags):
    """Status bits (u16) of the Dispenser Status. Bits 10-15 are reserved (rejected)."""

    BITS: ClassVar[dict[str, int]] = {
        "jam": 1 << 0,
        "mechanism_fault": 1 << 1,
        "sensor_fault": 1 << 2,
        "lid_open": 1 << 3,
        "tamper_detected": 1 << 4,
        "battery_low": 1 << 5,
        "refill_low": 1 << 6,
        "clock_not_set": 1 << 7,
        "storage_nearly_full": 1 << 8,
        "mains_power_lost": 1 << 9,
    }
    WIDTH: ClassVar[int] = 16

    jam: bool = False
    mechanism_fault: bool = False
    sensor_fault: bool = False
    lid_open: bool = False
    tamper_detected: bool = False
    battery_low: bool = False
    refill_low: bool = False
    clock_not_set: bool = False
    storage_nearly_full: bool = False
    mains_power_lost: bool = False


class DispenserStatus(Frozen):
    """The Dispenser Status (9 bytes). `battery_percent` / `doses_remaining` are None when
    the device does not know (0xFF / 0xFFFF). `last_sequence` is the sequence number of
    the newest event in the device's log (0: none yet); a hub whose own last stored
    sequence is lower fetches the rest through the RACP.
    """

    battery_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    doses_remaining: Annotated[int, Field(ge=0, le=0xFFFE)] | None = None
    status: DispenserStatusBits = DispenserStatusBits()
    last_sequence: Annotated[int, Field(ge=0, le=MAX_SEQUENCE)] = 0

    @property
    def is_device_error(self) -> bool:
        """The device cannot dispense: jammed, mechanism or sensor fault."""
        s = self.status
        return s.jam or s.mechanism_fault or s.sensor_fault


def decode_dispenser_status(data: bytes) -> DispenserStatus:
    r = ByteReader(data, DISPENSER_STATUS_UUID)
    battery = r.uint(1, "battery level")
    if 100 < battery < BATTERY_UNKNOWN:
        raise r.error(f"battery level {battery} % outside 0..100 (255 unknown)", 0)
    remaining = r.uint(2, "doses remaining")
    at = r.offset
    bits = r.uint(2, "status bits")
    if DispenserStatusBits.reserved_bits(bits):
        raise r.error(f"reserved status bits set (0x{bits:04X})", at)
    last_sequence = r.uint(4, "last sequence number")
    r.finish()
    return DispenserStatus(
        battery_percent=None if battery == BATTERY_UNKNOWN else battery,
        doses_remaining=None if remaining == DOSES_REMAINING_UNKNOWN else remaining,
        status=DispenserStatusBits.from_bits(bits),
        last_sequence=last_sequence,
    )


def encode_dispenser_status(s: DispenserStatus) -> bytes:
    battery = BATTERY_UNKNOWN if s.battery_percent is None else s.battery_percent
    remaining = DOSES_REMAINING_UNKNOWN if s.doses_remaining is None else s.doses_remaining
    return (
        bytes((battery,))
        + remaining.to_bytes(2, "little")
        + s.status.to_bits().to_bytes(2, "little")
        + s.last_sequence.to_bytes(4, "little")
    )


# --- Dispenser Record Access Control Point -------------------------------------------------


def decode_dispenser_racp(data: bytes) -> RacpMessage:
    """A request or an indication of the dispenser's RACP (32-bit sequence numbers)."""
    return decode_racp(
        data, sequence_size=DISPENSER_SEQUENCE_SIZE, characteristic=DISPENSER_RACP_UUID
    )


def encode_dispenser_racp(message: RacpMessage) -> bytes:
    return encode_racp(message, sequence_size=DISPENSER_SEQUENCE_SIZE)


#: Characteristic UUID -> human name, for the registry.
DISPENSER_CHARACTERISTICS: dict[str, str] = {
    DISPENSER_EVENT_UUID: "Dispenser Event",
    DOSE_SCHEDULE_UUID: "Dose Schedule",
    DISPENSER_STATUS_UUID: "Dispenser Status",
    DISPENSER_RACP_UUID: "Dispenser Record Access Control Point",
}


__all__ = [
    "DISPENSER_CHARACTERISTICS",
    "DISPENSER_EVENT_UUID",
    "DISPENSER_RACP_UUID",
    "DISPENSER_SERVICE_UUID",
    "DISPENSER_STATUS_UUID",
    "DISPENSER_UUID_TEMPLATE",
    "DOSE_SCHEDULE_UUID",
    "EVENT_TRANSPORT_FLAGS",
    "EVENT_TYPE_CODES",
    "STAFF_ATTENTION_EVENTS",
    "DecodeError",
    "DispenserEvent",
    "DispenserEventType",
    "DispenserStatus",
    "DispenserStatusBits",
    "DoseSchedule",
    "ScheduledDose",
    "decode_dispenser_event",
    "decode_dispenser_racp",
    "decode_dispenser_status",
    "decode_dose_schedule",
    "dispenser_event_identity",
    "dispenser_uuid",
    "encode_dispenser_event",
    "encode_dispenser_racp",
    "encode_dispenser_status",
    "encode_dose_schedule",
]
