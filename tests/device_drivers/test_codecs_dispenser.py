"""Our medication dispenser service (docs/dispenser-gatt.md): events, schedule, status, RACP."""

from __future__ import annotations

from datetime import datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from device_drivers.codecs import (
    DISPENSER_EVENT_UUID,
    DISPENSER_RACP_UUID,
    DISPENSER_SERVICE_UUID,
    DISPENSER_STATUS_UUID,
    DOSE_SCHEDULE_UUID,
    EVENT_TYPE_CODES,
    DecodeError,
    DispenserEvent,
    DispenserEventType,
    DispenserStatus,
    DispenserStatusBits,
    DoseSchedule,
    RacpNumberOfRecords,
    RacpRequestError,
    RacpResponse,
    RacpResponseCode,
    ScheduledDose,
    decode_dispenser_event,
    decode_dispenser_racp,
    decode_dispenser_status,
    decode_dose_schedule,
    delete_records_up_to,
    dispenser_uuid,
    encode_dispenser_event,
    encode_dispenser_racp,
    encode_dispenser_status,
    encode_dose_schedule,
    report_records_from,
)

# flags 01 (detail) | sequence 0x0000012C = 300 | type 05 dose missed | 2025-01-02 08:30:00
# | dose id 0x0002 | slot 7 | detail 0x003C = 60 minutes after the due time
MISSED = bytes.fromhex("01 2c010000 05 e9070102081e00 0200 07 3c00")
EVENT_STARTS = [0, 1, 5, 6, 13, 15, 16]


def test_uuids() -> None:
    assert DISPENSER_SERVICE_UUID == "48454d48-0001-4d45-4449-53504e535201"
    assert DISPENSER_EVENT_UUID == "48454d48-0002-4d45-4449-53504e535201"
    assert DOSE_SCHEDULE_UUID == "48454d48-0003-4d45-4449-53504e535201"
    assert DISPENSER_STATUS_UUID == "48454d48-0004-4d45-4449-53504e535201"
    assert DISPENSER_RACP_UUID == "48454d48-0005-4d45-4449-53504e535201"
    assert bytes.fromhex("48454d48").decode() == "HEMH"
    with pytest.raises(ValueError):
        dispenser_uuid(0x10000)


def test_event_codes() -> None:
    assert {t.value: c for t, c in EVENT_TYPE_CODES.items()} == {
        "dose_due": 1,
        "dose_dispensed": 2,
        "dose_taken": 3,
        "dose_late": 4,
        "dose_missed": 5,
        "refill_low": 6,
        "jam": 7,
        "device_error": 8,
        "tamper": 9,
        "low_battery": 10,
        "refilled": 11,
        "schedule_changed": 12,
    }


def test_dose_missed() -> None:
    e = decode_dispenser_event(MISSED)
    assert e == DispenserEvent(
        event=DispenserEventType.DOSE_MISSED,
        sequence=300,
        time=datetime(2025, 1, 2, 8, 30),
        dose_id=2,
        slot=7,
        detail=60,
    )
    assert e.needs_staff_attention
    assert encode_dispenser_event(e) == MISSED


def test_low_battery_without_dose_and_flags() -> None:
    # flags 07 (detail, clock not set, from storage) | seq 1 | type 0A | unknown date
    # | no dose | no slot | detail 15 %
    data = bytes.fromhex("07 01000000 0a 00000000000000 0000 00 0f00")
    e = decode_dispenser_event(data)
    assert e == DispenserEvent(
        event=DispenserEventType.LOW_BATTERY,
        sequence=1,
        time=None,
        detail=15,
        clock_not_set=True,
        from_storage=True,
    )
    assert not e.needs_staff_attention
    assert encode_dispenser_event(e) == data


@pytest.mark.parametrize("event", list(DispenserEventType))
def test_every_event_type(event: DispenserEventType) -> None:
    data = (
        bytes.fromhex("00 ffffffff")
        + bytes((EVENT_TYPE_CODES[event],))
        + bytes.fromhex("e9070102081e00 0100 01")
    )
    e = decode_dispenser_event(data)
    assert (e.event, e.sequence, e.dose_id, e.slot, e.detail) == (event, 0xFFFFFFFF, 1, 1, None)
    assert encode_dispenser_event(e) == data


@pytest.mark.parametrize("length", range(len(MISSED)))
def test_event_truncated_at_every_length(length: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_dispenser_event(MISSED[:length])
    expected = max(start for start in EVENT_STARTS if start <= length)
    assert (info.value.characteristic, info.value.offset) == (DISPENSER_EVENT_UUID, expected)


@pytest.mark.parametrize(
    ("data", "offset", "word"),
    [
        (bytes((0x08,)) + MISSED[1:], 0, "reserved"),
        (bytes((0x80,)) + MISSED[1:], 0, "reserved"),
        (MISSED[:1] + bytes(4) + MISSED[5:], 1, "sequence number 0"),
        (MISSED[:5] + b"\x00" + MISSED[6:], 5, "unknown event type 0"),
        (MISSED[:5] + b"\x0d" + MISSED[6:], 5, "unknown event type 13"),
        (MISSED[:10] + b"\x20" + MISSED[11:], 10, "Date Time hours"),
        (MISSED[:13] + b"\x00\x00" + MISSED[15:], 13, "without a dose id"),
        (MISSED + b"\x00", len(MISSED), "unexpected"),
        (b"\x00" + MISSED[1:], len(MISSED) - 2, "unexpected"),
    ],
)
def test_event_malformed(data: bytes, offset: int, word: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_dispenser_event(data)
    assert info.value.offset == offset
    assert word in info.value.reason
    assert str(info.value).startswith(f"{DISPENSER_EVENT_UUID} at byte {offset}: ")


def test_event_model_rules() -> None:
    with pytest.raises(ValidationError):
        DispenserEvent(event=DispenserEventType.DOSE_TAKEN, sequence=1, time=None)
    with pytest.raises(ValidationError):
        DispenserEvent(event=DispenserEventType.JAM, sequence=0, time=None)
    with pytest.raises(ValidationError):
        DispenserEvent(event=DispenserEventType.JAM, sequence=1, time=None, slot=0)


# --- Dose Schedule -------------------------------------------------------------------------

# late after 30 min | missed after 120 min | 3 doses: id 1 08:00, id 2 13:30, id 3 20:00
SCHEDULE = bytes.fromhex("1e00 7800 03 0100 0800 0200 0d1e 0300 1400")


def test_schedule() -> None:
    s = decode_dose_schedule(SCHEDULE)
    assert s == DoseSchedule(
        late_after_minutes=30,
        missed_after_minutes=120,
        doses=(
            ScheduledDose(dose_id=1, at=time(8, 0)),
            ScheduledDose(dose_id=2, at=time(13, 30)),
            ScheduledDose(dose_id=3, at=time(20, 0)),
        ),
    )
    assert encode_dose_schedule(s) == SCHEDULE


def test_empty_schedule() -> None:
    s = decode_dose_schedule(bytes.fromhex("0f00 3c00 00"))
    assert s.doses == ()
    assert encode_dose_schedule(s) == bytes.fromhex("0f00 3c00 00")


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("", 0),
        ("1e", 0),
        ("1e00", 2),
        ("1e00 7800", 4),
        ("0000 7800 00", 0),  # late after 0
        ("a105 a105 00", 0),  # late after 1441
        ("1e00 1d00 00", 2),  # missed before late
        ("1e00 7800 19", 4),  # 25 doses
        ("1e00 7800 01", 5),  # count 1, no entry
        ("1e00 7800 01 0100 08", 8),  # minute missing
        ("1e00 7800 01 0000 0800", 5),  # dose id 0
        ("1e00 7800 02 0100 0800 0100 0900", 9),  # repeated id
        ("1e00 7800 01 0100 1800", 7),  # hour 24
        ("1e00 7800 01 0100 083c", 8),  # minute 60
        ("1e00 7800 00 00", 5),  # over-long
    ],
)
def test_schedule_malformed(hex_: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_dose_schedule(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == (DOSE_SCHEDULE_UUID, offset)


def test_schedule_model_rules() -> None:
    with pytest.raises(ValidationError):
        DoseSchedule(late_after_minutes=60, missed_after_minutes=30)
    with pytest.raises(ValidationError):
        ScheduledDose(dose_id=1, at=time(8, 0, 30))
    dose = ScheduledDose(dose_id=1, at=time(8, 0))
    with pytest.raises(ValidationError):
        DoseSchedule(late_after_minutes=30, missed_after_minutes=60, doses=(dose, dose))


# --- Dispenser Status ----------------------------------------------------------------------


def test_status() -> None:
    # battery 80 % | 12 doses left | jam + refill low (0x0041) | last sequence 300
    data = bytes.fromhex("50 0c00 4100 2c010000")
    s = decode_dispenser_status(data)
    assert s == DispenserStatus(
        battery_percent=80,
        doses_remaining=12,
        status=DispenserStatusBits(jam=True, refill_low=True),
        last_sequence=300,
    )
    assert s.is_device_error
    assert s.status.names() == ["jam", "refill_low"]
    assert encode_dispenser_status(s) == data


def test_status_unknowns() -> None:
    data = bytes.fromhex("ff ffff 0000 00000000")
    s = decode_dispenser_status(data)
    assert (s.battery_percent, s.doses_remaining, s.last_sequence) == (None, None, 0)
    assert not s.is_device_error
    assert encode_dispenser_status(s) == data


@pytest.mark.parametrize(
    ("bit", "name"), [(1 << i, name) for i, name in enumerate(DispenserStatusBits.BITS)]
)
def test_each_status_bit(bit: int, name: str) -> None:
    data = bytes.fromhex("64 0000") + bit.to_bytes(2, "little") + bytes(4)
    assert decode_dispenser_status(data).status.names() == [name]


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("", 0),
        ("65 0000 0000 00000000", 0),  # battery 101 %
        ("fe 0000 0000 00000000", 0),
        ("64 0000 0004 00000000", 3),  # reserved bit 10
        ("64 0000 0080 00000000", 3),
        ("64 0000 0000 000000", 5),
        ("64 0000 0000 00000000 00", 9),
    ],
)
def test_status_malformed(hex_: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_dispenser_status(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == (DISPENSER_STATUS_UUID, offset)


# --- RACP with 32-bit sequence numbers -----------------------------------------------------


def test_racp_fetch_from_sequence() -> None:
    data = encode_dispenser_racp(report_records_from(301))
    assert data == bytes.fromhex("0103 01 2d010000")
    assert decode_dispenser_racp(data) == report_records_from(301)
    assert encode_dispenser_racp(delete_records_up_to(300)) == bytes.fromhex("0202 01 2c010000")


def test_racp_indications() -> None:
    assert decode_dispenser_racp(bytes.fromhex("0500 0300")) == RacpNumberOfRecords(count=3)
    assert decode_dispenser_racp(bytes.fromhex("0600 0106")) == RacpResponse(
        request_opcode=1, response_code=RacpResponseCode.NO_RECORDS_FOUND
    )


def test_racp_errors_name_the_dispenser_racp() -> None:
    with pytest.raises(RacpRequestError) as info:
        decode_dispenser_racp(bytes.fromhex("0103 01 2d0100"))  # a 16-bit-plus sequence
    assert (info.value.characteristic, info.value.offset) == (DISPENSER_RACP_UUID, 3)
    assert info.value.response_code is RacpResponseCode.INVALID_OPERAND


# --- properties ----------------------------------------------------------------------------

events = st.builds(
    DispenserEvent,
    event=st.sampled_from(list(DispenserEventType)),
    sequence=st.integers(1, 0xFFFFFFFF),
    time=st.none()
    | st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    ),
    dose_id=st.integers(1, 0xFFFF),
    slot=st.none() | st.integers(1, 255),
    detail=st.none() | st.integers(0, 0xFFFF),
    clock_not_set=st.booleans(),
    from_storage=st.booleans(),
)


@given(events)
def test_event_identity(e: DispenserEvent) -> None:
    assert decode_dispenser_event(encode_dispenser_event(e)) == e


@st.composite
def schedules(draw: st.DrawFn) -> DoseSchedule:
    late = draw(st.integers(1, 1440))
    ids = draw(st.lists(st.integers(1, 0xFFFF), unique=True, max_size=24))
    doses = tuple(
        ScheduledDose(dose_id=i, at=time(draw(st.integers(0, 23)), draw(st.integers(0, 59))))
        for i in ids
    )
    return DoseSchedule(
        late_after_minutes=late,
        missed_after_minutes=draw(st.integers(late, 1440)),
        doses=doses,
    )


@given(schedules())
def test_schedule_identity(s: DoseSchedule) -> None:
    assert decode_dose_schedule(encode_dose_schedule(s)) == s


@given(
    st.builds(
        DispenserStatus,
        battery_percent=st.none() | st.integers(0, 100),
        doses_remaining=st.none() | st.integers(0, 0xFFFE),
        status=st.integers(0, 0x3FF).map(DispenserStatusBits.from_bits),
        last_sequence=st.integers(0, 0xFFFFFFFF),
    )
)
def test_status_identity(s: DispenserStatus) -> None:
    assert decode_dispenser_status(encode_dispenser_status(s)) == s
