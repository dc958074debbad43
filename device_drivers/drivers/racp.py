"""The Record Access Control Point procedure over plain bleak, and the stored-records session.

`RacpProcedure` runs RACP requests against one connected device: it enables
notifications/indications on the record characteristic and indications on the RACP (a
device refuses RACP writes otherwise, ATT error 0xFD), writes a request, and collects the
records that arrive until the response-code indication, with an idle timeout. An abort is
written when the caller is cancelled or the device goes silent mid-transfer. Records that
arrive outside a request (live events of a dispenser) are kept for `next_record()`.

`run_record_session()` / `RecordSession` are the hub's side of a stored-records session,
shared by the glucose and dispenser drivers: fetch the records after the hub's last stored
sequence number, hand them to the caller in sequence order (each `await`ed: it returns once
the record is safe in the hub's store), then delete on the device only the records up to
the last one stored.
A failing consumer or a dropped link therefore never loses a record: what was not stored
stays on the device and is fetched by the next session.

A session connects with retries, runs `session.start_session` (Device Information, quirks,
Current Time, battery) and always disconnects; errors after connecting end up in
`SessionReport.error`. The wire format comes from `device_drivers.codecs.racp`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, TypeVar

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError, BleakGATTProtocolError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.errors import DecodeError, EncodeError
from device_drivers.codecs.racp import (
    RacpNumberOfRecords,
    RacpOpcode,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    abort_operation,
    decode_racp_indication,
    delete_all_records,
    delete_records_in_range,
    delete_records_up_to,
    encode_racp_request,
    report_all_records,
    report_number_of_records,
    report_records_from,
)
from device_drivers.drivers.session import (
    ReceivedMeasurement,
    SecuredLink,
    SessionReport,
    connect_with_retry,
    disconnect_quietly,
    start_session,
    utc_now,
)
from device_drivers.measurement import ClinicalMeasurement
from device_drivers.quirks import apply_byte_quirks
from hemhub.contract import DeviceEvent, MeasurementType

logger = logging.getLogger(__name__)

_M = TypeVar("_M", bound=ClinicalMeasurement)

RECORD_ACCESS_CONTROL_POINT = "00002a52-0000-1000-8000-00805f9b34fb"
#: ATT error of a RACP write before the CCCDs were configured.
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
#: ATT error of a RACP write while another procedure runs.
ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE
#: How long an abort written on the way out (cancel, timeout) may take.
_ABORT_TIMEOUT_S = 1.0

_Kind = Literal["record", "racp", "lost"]


class RacpError(BleakError):
    """A RACP request failed: an error response code, no answer in time, or the link
    dropped. `response` is the device's response code indication when there was one."""

    def __init__(self, message: str, response: RacpResponse | None = None) -> None:
        super().__init__(message)
        self.response = response


@dataclass(frozen=True)
class ReceivedRecord:
    """One record as it arrived on the record characteristic (raw bytes, hub time)."""

    raw: bytes
    received_at: datetime


@dataclass
class RacpTransfer:
    """What a "report stored records" request brought."""

    #: The records in arrival order.
    records: list[ReceivedRecord] = field(default_factory=list)
    #: The response-code indication; None when the transfer ended without one.
    response: RacpResponse | None = None
    #: Why it ended without a response code: "disconnected" or "timeout".
    interrupted: str | None = None

    @property
    def complete(self) -> bool:
        """The device said it sent everything that matched (success or no records)."""
        return self.response is not None and self.response.ok


class RacpProcedure:
    """RACP requests on one connection. Pass `connection_lost` as the client's
    disconnected callback, then `await enable(client, link)` once connected.

    Args:
        record_uuid: the characteristic the records arrive on (notify or indicate).
        control_point_uuid: the RACP characteristic.
        timeout: seconds to wait for the next record or the response (idle timeout).
        now: the hub clock (aware UTC) stamped on each record.
        sequence_size: bytes of a sequence number in operands (2 SIG profiles, 4 ours).
    """

    def __init__(
        self,
        *,
        record_uuid: str,
        control_point_uuid: str = RECORD_ACCESS_CONTROL_POINT,
        timeout: float = 5.0,
        now: Callable[[], datetime] = utc_now,
        sequence_size: int = 2,
    ) -> None:
        self.record_uuid = record_uuid
        self.control_point_uuid = control_point_uuid
        self.timeout = timeout
        self.now = now
        self.sequence_size = sequence_size
        self._events: asyncio.Queue[tuple[_Kind, bytes, datetime]] = asyncio.Queue()
        self._unsolicited: deque[ReceivedRecord] = deque()
        self._client: BleakClient | None = None
        self._link: SecuredLink | None = None
        self._lost = False

    # --- connection -------------------------------------------------------------------

    def connection_lost(self, _client: BleakClient | None = None) -> None:
        """The disconnected callback: ends whatever waits (after what already arrived)."""
        self._lost = True
        self._events.put_nowait(("lost", b"", self.now()))

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._lost and self._client.is_connected

    def _characteristic(self, uuid: str) -> BleakGATTCharacteristic:
        assert self._client is not None
        characteristic = self._client.services.get_characteristic(uuid)
        if characteristic is None:
            raise BleakError(f"{self._client.address} has no characteristic {uuid}")
        return characteristic

    async def enable(self, client: BleakClient, link: SecuredLink) -> None:
        """Enable notifications (or indications) on the records and indications on the
        RACP, pairing if the device asks for it."""
        self._client, self._link = client, link
        record = self._characteristic(self.record_uuid)
        racp = self._characteristic(self.control_point_uuid)

        def on_record(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
            self._events.put_nowait(("record", bytes(data), self.now()))

        def on_racp(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
            self._events.put_nowait(("racp", bytes(data), self.now()))

        await link.run(lambda: client.start_notify(record, on_record))
        await link.run(lambda: client.start_notify(racp, on_racp))

    # --- requests ---------------------------------------------------------------------

    async def _write(self, request: RacpRequest) -> None:
        """Write a request; re-enable the CCCDs once if the device says they are not."""
        client, link = self._client, self._link
        if client is None or link is None:
            raise RacpError("RACP not enabled: call enable() first")
        # Records that came before this request belong to nobody's transfer: keep them.
        while not self._events.empty():
            kind, raw, at = self._events.get_nowait()
            if kind == "record":
                self._unsolicited.append(ReceivedRecord(raw, at))
            elif kind == "lost":
                self._events.put_nowait((kind, raw, at))
                break
            else:
                logger.debug("%s: stale RACP indication %s", client.address, raw.hex())
        value = encode_racp_request(request, sequence_size=self.sequence_size)
        racp = self._characteristic(self.control_point_uuid)
        for attempt in (1, 2):
            try:
                await link.run(lambda: client.write_gatt_char(racp, value, response=True))
                return
            except BleakGATTProtocolError as exc:
                code = int(exc.code)
                if code == ATT_CCCD_IMPROPERLY_CONFIGURED and attempt == 1:
                    logger.info("%s: RACP says CCCDs not configured: enabling", client.address)
                    await self.enable(client, link)
                    continue
                if code == ATT_PROCEDURE_ALREADY_IN_PROGRESS:
                    raise RacpError(f"{client.address}: a RACP procedure is in progress") from exc
                raise

    async def _next_event(self, wait_s: float) -> tuple[_Kind, bytes, datetime] | None:
        """The next record / indication / "lost"; None after `wait_s` seconds of silence."""
        if self._lost and self._events.empty():
            return ("lost", b"", self.now())  # the link is gone: nothing more will come
        try:
            return await asyncio.wait_for(self._events.get(), wait_s)
        except TimeoutError:
            return None

    async def _await_answer(
        self, opcode: RacpOpcode, transfer: RacpTransfer | None = None
    ) -> RacpResponse | RacpNumberOfRecords | str:
        """The response to a request with `opcode` (or a record count); records arriving
        meanwhile go to `transfer` (or are kept as unsolicited). Returns "timeout" or
        "disconnected" when none came."""
        while True:
            event = await self._next_event(self.timeout)
            if event is None:
                return "timeout"
            kind, raw, at = event
            if kind == "lost":
                return "disconnected"
            if kind == "record":
                target = transfer.records if transfer is not None else self._unsolicited
                target.append(ReceivedRecord(raw, at))
                continue
            try:
                answer = decode_racp_indication(raw)
            except DecodeError as exc:
                logger.warning("RACP indication %s undecodable: %s", raw.hex(), exc)
                continue
            if isinstance(answer, RacpNumberOfRecords):
                if opcode is RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS:
                    return answer
            elif answer.request_opcode == opcode:
                return answer
            logger.debug("RACP indication %s answers another request", raw.hex())

    async def _abort_quietly(self) -> None:
        if not self.connected:
            return
        try:
            await asyncio.wait_for(self._write(abort_operation()), _ABORT_TIMEOUT_S)
        except (BleakError, TimeoutError, OSError) as exc:
            logger.debug("RACP abort failed: %s", exc)

    async def report(self, request: RacpRequest) -> RacpTransfer:
        """Run a "report stored records" request; the records and how it ended.

        A transfer that stops (link dropped, idle timeout) returns what arrived with
        `interrupted` set; on a timeout an abort is written. Cancelling the caller writes
        an abort too (best effort), then re-raises.
        """
        transfer = RacpTransfer()
        try:
            await self._write(request)
            answer = await self._await_answer(RacpOpcode.REPORT_STORED_RECORDS, transfer)
        except asyncio.CancelledError:
            await self._abort_quietly()
            raise
        if isinstance(answer, RacpResponse):
            transfer.response = answer
        else:
            transfer.interrupted = str(answer)
            if answer == "timeout":
                await self._abort_quietly()
        return transfer

    async def report_from(self, sequence: int | None) -> RacpTransfer:
        """All stored records (None), or those with sequence number >= `sequence`."""
        request = report_all_records() if sequence is None else report_records_from(sequence)
        return await self.report(request)

    async def _request(self, request: RacpRequest) -> RacpResponse | RacpNumberOfRecords:
        await self._write(request)
        answer = await self._await_answer(request.opcode)
        if isinstance(answer, str):
            raise RacpError(f"RACP {request.opcode.name}: no answer ({answer})")
        return answer

    async def count(self, from_sequence: int | None = None) -> int:
        """The number of stored records (all, or with sequence >= `from_sequence`)."""
        answer = await self._request(report_number_of_records(from_sequence))
        if isinstance(answer, RacpResponse):
            raise RacpError(f"RACP count refused: {answer.response_code.name}", answer)
        return answer.count

    async def delete_up_to(self, sequence: int) -> RacpResponse:
        """Delete the stored records with sequence number <= `sequence`; call it only
        for records already safe in the hub's store. "No records found" is no error."""
        answer = await self._request(delete_records_up_to(sequence))
        if not isinstance(answer, RacpResponse) or not answer.ok:
            code = answer.response_code.name if isinstance(answer, RacpResponse) else answer
            raise RacpError(f"RACP delete <= {sequence} refused: {code}", None)
        return answer

    async def delete_range(self, low: int, high: int) -> RacpResponse:
        """Delete the stored records with low <= sequence <= high (all safe in the hub's
        store). "No records found" is no error."""
        answer = await self._request(delete_records_in_range(low, high))
        if not isinstance(answer, RacpResponse) or not answer.ok:
            code = answer.response_code.name if isinstance(answer, RacpResponse) else answer
            raise RacpError(f"RACP delete {low}..{high} refused: {code}", None)
        return answer

    async def delete_all(self) -> RacpResponse:
        """Delete every stored record (`02 01`): a data reset, never part of a normal
        session (which deletes only what is safe in the hub's store). "No records found"
        is no error."""
        answer = await self._request(delete_all_records())
        if not isinstance(answer, RacpResponse) or not answer.ok:
            code = answer.response_code.name if isinstance(answer, RacpResponse) else answer
            raise RacpError(f"RACP delete all refused: {code}", None)
        return answer

    async def abort(self) -> RacpResponse:
        """Abort the procedure in progress (the device answers success)."""
        answer = await self._request(abort_operation())
        assert isinstance(answer, RacpResponse)
        return answer

    async def next_record(self, wait_s: float) -> ReceivedRecord | None:
        """The next record that arrived outside a request (a live event); None after
        `wait_s` seconds without one or when the link dropped."""
        if self._unsolicited:
            return self._unsolicited.popleft()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            event = await self._next_event(max(deadline - loop.time(), 0.0))
            if event is None:
                return None
            kind, raw, at = event
            if kind == "lost":
                return None
            if kind == "record":
                return ReceivedRecord(raw, at)
            logger.debug("stray RACP indication %s", raw.hex())


# --- the stored-records session --------------------------------------------------------------


@dataclass
class RecordSessionReport(SessionReport):
    """A `SessionReport` of a device with a record log (glucose meter, dispenser)."""

    #: The highest sequence number safe in the hub's store after this session: the
    #: `since_sequence` of the next one (the one passed in when nothing new was stored).
    last_sequence: int | None = None
    #: Records the device sent this session (duplicates included).
    fetched: int = 0
    #: Records skipped because their sequence number was already stored.
    already_stored: int = 0
    #: The device confirmed the end of the transfer (response code success / none found).
    transfer_complete: bool = False
    #: Records up to this sequence number were deleted on the device this session.
    deleted_up_to: int | None = None


@dataclass(frozen=True)
class RecordStream(Generic[_M]):
    """A device's record log: where the records arrive, its RACP, and how to decode them."""

    #: How `ReceivedMeasurement.characteristic` names the records ("2A18", or a 128-bit UUID).
    characteristic: str
    measurement_type: MeasurementType
    #: Decodes one record (raises `DecodeError` when malformed).
    decode: Callable[[bytes], _M]
    #: The record's sequence number.
    sequence_of: Callable[[_M], int]
    #: The characteristic the records arrive on (full UUID).
    record_uuid: str
    control_point_uuid: str = RECORD_ACCESS_CONTROL_POINT
    #: Bytes of a sequence number in RACP operands (2 for SIG profiles, 4 for ours).
    sequence_size: int = 2
    #: The event a record reports (medication robots), for the wire contract.
    event_of: Callable[[_M], DeviceEvent] | None = None


def _note_error(report: SessionReport, message: str) -> None:
    if report.error is None:
        report.error = message


class RecordSession(Generic[_M]):
    """One stored-records session in progress: the RACP, the report, and the hub's rules
    (store in sequence order, each committed before the next; delete only what is stored).
    """

    def __init__(
        self,
        stream: RecordStream[_M],
        report: RecordSessionReport,
        racp: RacpProcedure,
        on_measurement: Callable[[ReceivedMeasurement], Awaitable[None]],
    ) -> None:
        self.stream = stream
        self.report = report
        self.racp = racp
        self.on_measurement = on_measurement

    @property
    def max_sequence(self) -> int:
        """The largest sequence number the RACP operand can carry (65535 for SIG)."""
        return (1 << (8 * self.stream.sequence_size)) - 1

    @property
    def wrapped(self) -> bool:
        """The hub's last stored sequence is the largest there is: the device's counter
        rolls over (or was reset) after it, so `since + 1` does not exist."""
        stored = self.report.last_sequence
        return stored is not None and stored >= self.max_sequence

    def is_stored(self, sequence: int) -> bool:
        """Whether the record with `sequence` is already in the hub's store.

        Normally: sequence <= the last stored one. After a wrap (the last stored one is
        the largest sequence number) serial-number arithmetic (RFC 1982) decides: the
        records numbered from 0 up to half the range follow the last stored one (the
        counter rolled over: new), the upper half precede it (old records the device
        still holds because an earlier delete failed)."""
        stored = self.report.last_sequence
        if stored is None:
            return False
        if self.wrapped:
            return sequence >= (self.max_sequence + 1) // 2
        return sequence <= stored

    def decode(self, raw: bytes) -> _M:
        """The record, after the model's byte quirks (`raw` stays as received)."""
        characteristic = self.stream.characteristic
        return self.stream.decode(apply_byte_quirks(characteristic, raw, self.report.quirks))

    async def deliver(self, record: ReceivedRecord, measurement: _M) -> None:
        report = self.report
        await self.on_measurement(
            ReceivedMeasurement(
                characteristic=self.stream.characteristic,
                measurement_type=self.stream.measurement_type,
                raw=record.raw,
                measurement=measurement,
                received_at=record.received_at,
                identity=report.identity,
                clock_written=report.clock_written,
                device_clock_offset_s=report.device_clock_offset_s,
                device_clock_at_connect=report.device_clock_at_connect,
                quirks=report.quirks,
                sequence=self.stream.sequence_of(measurement),
                event=self.stream.event_of(measurement) if self.stream.event_of else None,
            )
        )

    async def store(self, records: Iterable[ReceivedRecord]) -> bool:
        """Decode, drop what is already stored (`is_stored`: sequence <=
        `report.last_sequence`, or repeated), and deliver the rest in sequence order,
        advancing `last_sequence` after each. Undecodable payloads go to
        `report.rejected`. False when `on_measurement` failed (then `report.error` says
        why and the rest stays on the device)."""
        report = self.report
        decoded: dict[int, tuple[ReceivedRecord, _M]] = {}
        for record in records:
            report.fetched += 1
            try:
                measurement = self.decode(record.raw)
            except DecodeError as exc:
                address, raw = report.identity.address, record.raw.hex()
                logger.warning("%s: rejected %s: %s", address, raw, exc)
                report.rejected.append(f"{raw}: {exc}")
                continue
            sequence = self.stream.sequence_of(measurement)
            if self.is_stored(sequence) or sequence in decoded:
                report.already_stored += 1
                continue
            decoded[sequence] = (record, measurement)
        for sequence in sorted(decoded):
            try:
                await self.deliver(*decoded[sequence])
            except Exception as exc:
                logger.exception("%s: on_measurement failed", report.identity.address)
                _note_error(report, f"on_measurement failed: {type(exc).__name__}: {exc}")
                return False
            report.received += 1
            report.last_sequence = sequence
        return True

    async def fetch(self) -> None:
        """Fetch the records after `report.last_sequence` (all when None), store them in
        sequence order, then delete on the device up to the last one stored.

        When the last stored sequence is the largest there is (65535), there is no
        `since + 1` to ask from: the device's counter has rolled over, so all its
        records are fetched and `is_stored` tells the new ones from the old."""
        report = self.report
        since = report.last_sequence
        if since is not None and self.wrapped:
            logger.info(
                "%s: last stored sequence %d is the largest: counter rolled over, fetching all",
                report.identity.address,
                since,
            )
        start = None if since is None or self.wrapped else since + 1
        transfer = await self.racp.report_from(start)
        report.transfer_complete = transfer.complete
        stored_all = await self.store(transfer.records)
        if transfer.interrupted is not None:
            _note_error(report, f"record transfer interrupted ({transfer.interrupted})")
        elif transfer.response is not None and not transfer.response.ok:
            code = transfer.response.response_code.name
            _note_error(report, f"record transfer refused: {code}")
        if stored_all or report.last_sequence != since:
            await self.delete_stored()

    async def delete_stored(self) -> None:
        """Delete on the device the records up to `report.last_sequence` (all safe in the
        hub's store), once per sequence number and only while connected.

        Near the top of the sequence range the device's counter may already have rolled
        over: records 0, 1… made after 65535 were not fetched yet, and "<= 65535" would
        delete them unstored. So when the last stored sequence is in the upper half of
        the range, only the half-range window ending at it is deleted (the records that
        precede it in serial-number order); below, `<= last stored` as usual."""
        report = self.report
        up_to = report.last_sequence
        if up_to is None or up_to == report.deleted_up_to or not self.racp.connected:
            return
        half = (self.max_sequence + 1) // 2
        if up_to >= half:
            response = await self.racp.delete_range(up_to - half + 1, up_to)
        else:
            response = await self.racp.delete_up_to(up_to)
        report.deleted_up_to = up_to
        if response.response_code is RacpResponseCode.NO_RECORDS_FOUND:
            logger.debug("%s: nothing left to delete <= %d", report.identity.address, up_to)


async def run_record_session(
    device: BLEDevice,
    stream: RecordStream[_M],
    report: RecordSessionReport,
    *,
    on_measurement: Callable[[ReceivedMeasurement], Awaitable[None]],
    backends: BleakBackends,
    now: Callable[[], datetime],
    connect_timeout: float,
    idle_timeout: float,
    attempts: int,
    bond: bool,
    retry_backoff_s: float,
    kind: str,
    prepare: Callable[[RecordSession[_M], BleakClient, SecuredLink], Awaitable[None]] | None = None,
    follow_up: Callable[[RecordSession[_M]], Awaitable[None]] | None = None,
) -> None:
    """A whole stored-records session, filling `report` (whose `last_sequence` is the
    hub's last stored sequence number on entry): connect (retrying; raises
    `DeviceUnreachableError` when every attempt failed), `start_session` (Device
    Information, quirks, Current Time, battery), `prepare`, enable the CCCDs, fetch /
    store / delete, then `follow_up` if the transfer went well, and disconnect. BLE
    errors after connecting end the session with `report.error` set instead of raising.
    `idle_timeout` bounds every wait for a record or a RACP answer."""
    racp = RacpProcedure(
        record_uuid=stream.record_uuid,
        control_point_uuid=stream.control_point_uuid,
        timeout=idle_timeout,
        now=now,
        sequence_size=stream.sequence_size,
    )
    session = RecordSession(stream, report, racp, on_measurement)
    client = await connect_with_retry(
        device,
        backends=backends,
        connect_timeout=connect_timeout,
        attempts=attempts,
        backoff_s=retry_backoff_s,
        pair=bond,
        disconnected_callback=racp.connection_lost,
    )
    link = SecuredLink(client)
    try:
        await start_session(client, link, report, now)
        if prepare is not None:
            await prepare(session, client, link)
        await racp.enable(client, link)
        await session.fetch()
        if follow_up is not None and report.error is None:
            await follow_up(session)
    except (BleakError, TimeoutError, OSError, EncodeError) as exc:
        # EncodeError: a request the RACP cannot carry; the session ends, the hub goes on.
        _note_error(report, f"{type(exc).__name__}: {exc}")
        logger.warning("%s session with %s ended early: %s", kind, report.identity.address, exc)
    finally:
        report.paired = link.paired
        await disconnect_quietly(client)


__all__ = [
    "ATT_CCCD_IMPROPERLY_CONFIGURED",
    "RECORD_ACCESS_CONTROL_POINT",
    "RacpError",
    "RacpProcedure",
    "RacpTransfer",
    "ReceivedRecord",
    "RecordSession",
    "RecordSessionReport",
    "RecordStream",
    "run_record_session",
]
