"""Glucose driver over plain bleak: one session with a meter (Glucose Service 0x1808).

A session connects (retrying with backoff), reads Device Information, reads then writes
Current Time, enables notifications on Glucose Measurement 0x2A18 and indications on the
Record Access Control Point 0x2A52, asks for the records after the hub's last stored one
(`01 03 01 <since_sequence + 1>`, or all), hands each to `on_measurement` in sequence order
and, once they are stored, deletes them on the meter (`02 02 01 <last stored>`). Records
the hub has not stored are never deleted: a failing consumer or a dropped link leaves them
on the meter for the next session. It runs unchanged against a real radio
(`BleakBackends()`) or a `SimulatedRadio`.

Every record is delivered, control-solution tests too (so they are deleted on the meter
like the rest); a control-solution record's quantity has `value=None` and its status
names start with `control_solution` (`GlucoseMeasurement.quantities()`), so it never
counts as the patient's glucose. When the hub's last stored sequence is 65535 the
meter's counter has rolled over: all records are fetched (see `RecordSession.fetch`).

A meter whose log restarted (battery change, factory reset: numbering from 1 again)
would have its new records skipped by `01 03 01 <since_sequence + 1>`. So when the hub
has a `since_sequence`, the session first asks the meter about its log (number of
records `04 01`, first record `01 05`, last record `01 06`) and lets
`record_numbers.log_was_reset` decide; on a reset it fetches every record
(`sequence_reset` in the report) instead.

Glucose Measurement Context 0x2A34 is not subscribed (the contract has no field for it
yet); meters send it only to centrals that enabled it.
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
from device_drivers.codecs.errors import DecodeError
from device_drivers.codecs.glucose import GlucoseMeasurement, decode_glucose_measurement
from device_drivers.codecs.racp import RacpRequest, report_first_record, report_last_record
from device_drivers.drivers.racp import (
    RacpError,
    RecordSession,
    RecordSessionReport,
    RecordStream,
    run_record_session,
)
from device_drivers.drivers.record_numbers import LogExtent, log_was_reset
from device_drivers.drivers.session import ReceivedMeasurement, SecuredLink, utc_now
from hemhub.contract import DeviceIdentity, MeasurementType

logger = logging.getLogger(__name__)

GLUCOSE_SERVICE = "00001808-0000-1000-8000-00805f9b34fb"
GLUCOSE_MEASUREMENT = "00002a18-0000-1000-8000-00805f9b34fb"


def _sequence(measurement: GlucoseMeasurement) -> int:
    return measurement.sequence


#: The meter's record log: 0x2A18 notifications, the SIG RACP 0x2A52, u16 sequences.
GLUCOSE_RECORDS = RecordStream(
    characteristic="2A18",
    measurement_type=MeasurementType.GLUCOSE,
    decode=decode_glucose_measurement,
    sequence_of=_sequence,
    record_uuid=GLUCOSE_MEASUREMENT,
)


@dataclass
class GlucoseSessionReport(RecordSessionReport):
    """What one session with a glucose meter achieved; `last_sequence` is the highest
    sequence number now safe in the hub (persist it, pass it as the next `since_sequence`)."""

    #: What the meter said about its log before the fetch (None: not asked).
    log: LogExtent | None = None
    #: The meter's log restarted (`record_numbers.log_was_reset`): every record it holds
    #: was fetched, not only those after `since_sequence`.
    sequence_reset: bool = False


async def _sequence_of_one(
    session: RecordSession[GlucoseMeasurement], request: RacpRequest
) -> int | None:
    """The sequence number of the one record a first/last-record report brings."""
    transfer = await session.racp.report(request)
    for record in transfer.records:
        try:
            return session.decode(record.raw).sequence
        except DecodeError:
            continue
    return None


async def probe_log(
    session: RecordSession[GlucoseMeasurement], client: BleakClient, link: SecuredLink
) -> LogExtent:
    """Ask the meter how many records it holds and the numbers of its first and last.

    Enables the RACP for the questions and disables it again (the session enables it
    for the fetch). A question the meter does not answer leaves that field None."""
    racp = session.racp
    await racp.enable(client, link)
    count: int | None = None
    oldest: int | None = None
    newest: int | None = None
    try:
        try:
            count = await racp.count()
        except RacpError as exc:
            logger.info("%s: record count unavailable: %s", client.address, exc)
        if count != 0:
            oldest = await _sequence_of_one(session, report_first_record())
            newest = await _sequence_of_one(session, report_last_record())
    finally:
        for uuid in (racp.record_uuid, racp.control_point_uuid):
            try:
                await client.stop_notify(uuid)
            except BleakError as exc:
                logger.debug("%s: stop_notify %s: %s", client.address, uuid, exc)
    return LogExtent(newest=newest, oldest=oldest, count=count)


async def run_glucose_session(
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
    deleted_up_to: int | None = None,
) -> GlucoseSessionReport:
    """Run one session with a glucose meter; returns what it achieved.

    `since_sequence` is the last sequence number the hub already stored from this meter
    (None: fetch everything). `on_measurement` must return only once the record is
    committed (the hub's outbox); if it raises, the session stops there, nothing after
    the last committed record is deleted and `error` says why. `idle_timeout` bounds the
    wait for each record and RACP answer. Raises `DeviceUnreachableError` (a
    `BleakError`) when all `attempts` to connect failed; other failures after connecting
    end the session with `error` set. A payload that does not decode is logged and listed
    in `rejected`. The client is always disconnected at the end.

    `deleted_up_to` (optional): the meter confirmed deleting its records up to this
    sequence number in an earlier session; a record numbered within that window on the
    meter again means its log restarted. With `since_sequence`, the meter's log is probed
    first and a restarted log is fetched whole (`sequence_reset`).
    """
    report = GlucoseSessionReport(
        identity=DeviceIdentity(address=device.address.upper()), last_sequence=since_sequence
    )

    async def prepare(
        session: RecordSession[GlucoseMeasurement], client: BleakClient, link: SecuredLink
    ) -> None:
        if since_sequence is None or session.wrapped:
            return  # everything is fetched anyway
        report.log = await probe_log(session, client, link)
        if log_was_reset(since_sequence, report.log, deleted_up_to=deleted_up_to):
            logger.warning(
                "%s: log %s does not follow the hub's %d: meter reset, fetching all",
                report.identity.address,
                report.log,
                since_sequence,
            )
            report.sequence_reset = True
            report.last_sequence = None

    await run_record_session(
        device,
        GLUCOSE_RECORDS,
        report,
        on_measurement=on_measurement,
        backends=backends,
        now=now,
        connect_timeout=connect_timeout,
        idle_timeout=idle_timeout,
        attempts=attempts,
        bond=bond,
        retry_backoff_s=retry_backoff_s,
        kind="glucose",
        prepare=prepare,
    )
    return report


__all__ = [
    "GLUCOSE_RECORDS",
    "GlucoseSessionReport",
    "ReceivedMeasurement",
    "probe_log",
    "run_glucose_session",
]
