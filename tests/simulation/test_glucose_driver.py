"""The glucose driver (plain bleak, RACP) against simulated meters on a simulated radio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakGATTProtocolError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.codecs.glucose import GlucoseMeasurement
from device_drivers.codecs.ieee11073 import SpecialValue
from device_drivers.codecs.racp import RacpResponse, RacpResponseCode, decode_racp_indication
from device_drivers.drivers.glucose import GlucoseSessionReport, run_glucose_session
from device_drivers.drivers.racp import (
    RECORD_ACCESS_CONTROL_POINT,
    RacpProcedure,
)
from device_drivers.drivers.session import ReceivedMeasurement, SecuredLink
from device_drivers.simulation.glucose_meter import (
    ATT_CCCD_IMPROPERLY_CONFIGURED,
    SimulatedGlucoseMeter,
)
from device_drivers.simulation.radio import SimulatedRadio
from hemhub.contract import MeasurementType

METER = "C4:50:00:00:00:01"
#: What a session with a last stored sequence asks first: count, first and last record.
PROBE = [bytes.fromhex("0401"), bytes.fromhex("0105"), bytes.fromhex("0106")]
GLUCOSE_MEASUREMENT = "00002a18-0000-1000-8000-00805f9b34fb"
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:21") as r:
        yield r


class Harness:
    """A meter, what it produced, and what the driver handed over (the hub's store)."""

    def __init__(self, radio: SimulatedRadio, **meter_options: Any) -> None:
        self.backends: BleakBackends = radio.bleak_backends()
        self.produced: list[dict[str, Any]] = []
        self.received: list[ReceivedMeasurement] = []
        self.last_sequence: int | None = None
        options: dict[str, Any] = {
            "address": METER,
            "serial": "GL-5521-0042",
            "seed": 7,
            "on_produced": self.produced.append,
        }
        options.update(meter_options)
        self.meter = SimulatedGlucoseMeter(radio, **options)

    async def on_measurement(self, m: ReceivedMeasurement) -> None:
        self.received.append(m)

    async def find(self) -> BLEDevice:
        device = await BleakScanner.find_device_by_address(
            METER, timeout=2.0, **self.backends.scanner_options()
        )
        assert device is not None
        return device

    async def session(self, *, keep_sequence: bool = True, **options: Any) -> GlucoseSessionReport:
        """One session as the gateway runs it: since the last stored sequence."""
        settings: dict[str, Any] = {
            "connect_timeout": 2.0,
            "idle_timeout": 1.0,
            "on_measurement": self.on_measurement,
            "since_sequence": self.last_sequence,
        }
        settings.update(options)
        report = await run_glucose_session(await self.find(), backends=self.backends, **settings)
        if keep_sequence:
            self.last_sequence = report.last_sequence
        return report

    def sequences(self) -> list[int]:
        return [glucose(m).sequence for m in self.received]


def glucose(m: ReceivedMeasurement) -> GlucoseMeasurement:
    assert isinstance(m.measurement, GlucoseMeasurement)
    return m.measurement


async def test_diabetic_meter_records_in_order_then_deleted(radio: SimulatedRadio) -> None:
    h = Harness(radio, scenario="diabetic")
    await h.meter.start()
    for _ in range(14):
        await h.meter.measure()

    report = await h.session()

    assert report.error is None and report.rejected == []
    assert report.transfer_complete
    assert report.received == report.fetched == 14
    assert h.sequences() == list(range(1, 15))
    assert report.last_sequence == 14 and report.deleted_up_to == 14
    assert h.meter.records == []  # deleted after they were stored
    for produced, got in zip(h.produced, h.received, strict=True):
        assert got.raw.hex() == produced["raw_hex"]
        assert got.characteristic == "2A18"
        assert got.measurement_type is MeasurementType.GLUCOSE
        m = glucose(got)
        assert m.concentration == produced["glucose"]
        assert m.timestamp is not None and m.timestamp.isoformat() == produced["device_time"]
        assert not m.is_device_error
        [q] = m.quantities()
        assert (q.loinc, q.unit, q.value) == ("2339-0", "mg/dL", produced["glucose"])
        assert got.clock_written
    values = [p["glucose"] for p in h.produced]
    assert any(v < 70 for v in values) and any(v > 250 for v in values)
    assert all(45 <= v <= 380 for v in values)
    assert report.identity.serial == "GL-5521-0042" and report.identity.model == "GLM-SIM-1"
    # The procedure as on the wire: fetch all, then delete <= 14.
    assert h.meter.racp_requests == [bytes.fromhex("0101"), bytes.fromhex("0202010e00")]


async def test_normal_scenario_values(radio: SimulatedRadio) -> None:
    h = Harness(radio, scenario="normal", seed=3)
    await h.meter.start()
    for _ in range(10):
        await h.meter.measure()
    await h.session()
    assert all(72 <= p["glucose"] <= 140 for p in h.produced)
    assert len(h.received) == 10


async def test_every_record_exactly_once_across_sessions(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.meter.start()
    for _ in range(3):
        await h.meter.measure()
    first = await h.session()
    assert first.received == 3 and first.last_sequence == 3

    for _ in range(2):
        await h.meter.measure()
    second = await h.session()
    assert second.received == 2 and second.last_sequence == 5
    assert h.meter.racp_requests[-5:] == [
        *PROBE,
        bytes.fromhex("0103010400"),
        bytes.fromhex("0202010500"),
    ]
    assert not second.sequence_reset and second.log is not None
    assert (second.log.count, second.log.oldest, second.log.newest) == (2, 4, 5)

    third = await h.session()  # nothing new
    assert third.received == 0 and third.error is None and third.transfer_complete
    assert third.last_sequence == 5  # unchanged: persist it as is
    assert h.sequences() == [1, 2, 3, 4, 5]
    assert [m.raw.hex() for m in h.received] == [p["raw_hex"] for p in h.produced]


async def test_failing_consumer_deletes_nothing_and_records_come_again(
    radio: SimulatedRadio,
) -> None:
    h = Harness(radio)
    await h.meter.start()
    for _ in range(3):
        await h.meter.measure()

    async def broken(_m: ReceivedMeasurement) -> None:
        raise RuntimeError("outbox full")

    failed = await h.session(on_measurement=broken)
    assert failed.error is not None and "outbox full" in failed.error
    assert failed.received == 0 and failed.last_sequence is None
    assert failed.deleted_up_to is None
    assert h.meter.sequences == [1, 2, 3]  # nothing deleted

    retry = await h.session()
    assert retry.error is None and retry.received == 3
    assert h.sequences() == [1, 2, 3] and h.meter.records == []


async def test_consumer_failing_midway_deletes_only_what_was_stored(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.meter.start()
    for _ in range(4):
        await h.meter.measure()

    async def fails_on_third(m: ReceivedMeasurement) -> None:
        if glucose(m).sequence == 3:
            raise OSError("disk full")
        h.received.append(m)

    report = await h.session(on_measurement=fails_on_third)
    assert report.error is not None and "disk full" in report.error
    assert report.received == 2 and report.last_sequence == 2 and report.deleted_up_to == 2
    assert h.meter.sequences == [3, 4]

    again = await h.session()
    assert again.received == 2 and h.sequences() == [1, 2, 3, 4]


async def test_meter_refuses_racp_without_cccds_driver_enables_first(
    radio: SimulatedRadio,
) -> None:
    h = Harness(radio)
    await h.meter.start()
    await h.meter.measure()
    async with BleakClient(await h.find(), backend=h.backends.client, timeout=2.0) as client:
        racp = client.services.get_characteristic(RECORD_ACCESS_CONTROL_POINT)
        assert racp is not None
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char(racp, bytes.fromhex("0101"), response=True)
        assert int(refused.value.code) == ATT_CCCD_IMPROPERLY_CONFIGURED == 0xFD
        # Indications on the RACP alone are not enough: the records need notifications.
        answers: list[bytes] = []
        await client.start_notify(racp, lambda _c, d: answers.append(bytes(d)))
        with pytest.raises(BleakGATTProtocolError):
            await client.write_gatt_char(racp, bytes.fromhex("0101"), response=True)
    assert h.meter.records_sent == 0

    report = await h.session()  # the driver enables both first
    assert report.error is None and report.received == 1


async def test_count_and_no_records_found(radio: SimulatedRadio) -> None:
    h = Harness(radio, first_sequence=100)
    await h.meter.start()
    for _ in range(4):
        await h.meter.measure()
    racp = RacpProcedure(record_uuid=GLUCOSE_MEASUREMENT, timeout=1.0)
    async with BleakClient(
        await h.find(),
        backend=h.backends.client,
        timeout=2.0,
        disconnected_callback=racp.connection_lost,
    ) as client:
        await racp.enable(client, SecuredLink(client))
        assert await racp.count() == 4
        assert await racp.count(from_sequence=102) == 2
        assert await racp.count(from_sequence=200) == 0
        empty = await racp.report_from(200)
        assert empty.records == [] and empty.complete
        assert empty.response is not None
        assert empty.response.response_code is RacpResponseCode.NO_RECORDS_FOUND
        some = await racp.report_from(102)
        assert some.complete and len(some.records) == 2
        deleted = await racp.delete_up_to(101)
        assert deleted.response_code is RacpResponseCode.SUCCESS
        assert h.meter.sequences == [102, 103]
        nothing = await racp.delete_up_to(50)
        assert nothing.response_code is RacpResponseCode.NO_RECORDS_FOUND
        assert (await racp.abort()).response_code is RacpResponseCode.SUCCESS

    # And through the driver: a meter with nothing stored.
    empty_meter = Harness(radio, address="C4:50:00:00:00:02")
    h2 = empty_meter
    await h2.meter.start()
    device = await BleakScanner.find_device_by_address(
        "C4:50:00:00:00:02", timeout=2.0, **h2.backends.scanner_options()
    )
    assert device is not None
    report = await run_glucose_session(
        device, backends=h2.backends, on_measurement=h2.on_measurement, connect_timeout=2.0
    )
    assert report.error is None and report.received == 0 and report.transfer_complete
    assert report.last_sequence is None and report.deleted_up_to is None


async def test_racp_error_response_codes(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.meter.start()
    await h.meter.measure()
    answers: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(await h.find(), backend=h.backends.client, timeout=2.0) as client:
        measurement = client.services.get_characteristic(GLUCOSE_MEASUREMENT)
        racp = client.services.get_characteristic(RECORD_ACCESS_CONTROL_POINT)
        assert measurement is not None and racp is not None
        await client.start_notify(measurement, lambda _c, _d: None)
        await client.start_notify(racp, lambda _c, d: answers.put_nowait(bytes(d)))
        cases = {
            "0900": (9, RacpResponseCode.OPCODE_NOT_SUPPORTED),
            "0100": (1, RacpResponseCode.INVALID_OPERATOR),
            "0109": (1, RacpResponseCode.OPERATOR_NOT_SUPPORTED),
            "010301": (1, RacpResponseCode.INVALID_OPERAND),  # no sequence number
            "010302e8070101000000": (1, RacpResponseCode.OPERAND_NOT_SUPPORTED),  # time
            "0301": (3, RacpResponseCode.INVALID_OPERATOR),
        }
        for request, (opcode, code) in cases.items():
            await client.write_gatt_char(racp, bytes.fromhex(request), response=True)
            answer = decode_racp_indication(await asyncio.wait_for(answers.get(), 2.0))
            assert isinstance(answer, RacpResponse)
            assert (answer.request_opcode, answer.response_code) == (opcode, code), request
    assert h.meter.sequences == [1]


async def test_disconnect_mid_transfer_loses_nothing(radio: SimulatedRadio) -> None:
    h = Harness(radio, disconnect_mid_transfer=3)  # every transfer drops after 3 records
    await h.meter.start()
    for _ in range(7):
        await h.meter.measure()

    first = await h.session()
    assert first.error is not None and "interrupted" in first.error
    assert not first.transfer_complete
    assert first.received == 3 and first.last_sequence == 3
    assert first.deleted_up_to is None  # the link was gone: nothing deleted
    assert h.meter.sequences == list(range(1, 8))

    second = await h.session()
    assert not second.transfer_complete
    assert second.received == 3 and second.last_sequence == 6

    third = await h.session()
    assert third.error is None and third.transfer_complete
    assert third.received == 1 and third.deleted_up_to == 7
    assert h.meter.mid_transfer_disconnects == 2
    assert h.sequences() == list(range(1, 8))  # each exactly once, in order
    assert [m.raw.hex() for m in h.received] == [p["raw_hex"] for p in h.produced]
    assert h.meter.records == []
    probes = {bytes.fromhex("0105"), bytes.fromhex("0106")}  # first / last record
    fetches = [r for r in h.meter.racp_requests if r[0] == 1 and r not in probes]
    assert fetches == [bytes.fromhex(x) for x in ("0101", "0103010400", "0103010700")]


async def test_replay_fault_resends_identical_bytes(radio: SimulatedRadio) -> None:
    h = Harness(radio, replay=True)
    await h.meter.start()
    await h.meter.measure()
    await h.meter.measure()
    first = await h.session(keep_sequence=False)
    assert first.received == 2 and first.deleted_up_to == 2
    assert h.meter.sequences == [1, 2]  # the delete was ignored
    first_raw = [m.raw for m in h.received]

    h.received.clear()
    again = await h.session(keep_sequence=False)  # a hub that lost its sequence state
    assert again.received == 2
    assert [m.raw for m in h.received] == first_raw  # identical bytes: dedupe by key

    h.received.clear()
    await h.meter.measure()
    since = await h.session(since_sequence=2)  # the gateway's normal path
    assert since.received == 1 and h.sequences() == [3]


async def test_meter_ignoring_the_filter_sends_no_duplicates_downstream(
    radio: SimulatedRadio,
) -> None:
    h = Harness(radio, replay=True)
    await h.meter.start()
    for _ in range(3):
        await h.meter.measure()
    # A since_sequence above the meter's records: it answers "no records found".
    report = await h.session(since_sequence=3)
    assert report.received == 0 and report.already_stored == 0 and report.error is None


async def test_error_reading_is_a_device_error(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.meter.start()
    await h.meter.measure()
    h.meter.inject_error_readings(1)
    await h.meter.measure()
    await h.meter.measure()
    report = await h.session()
    assert report.error is None and report.received == 3 and report.rejected == []
    error = glucose(h.received[1])
    assert error.is_device_error and error.concentration is SpecialValue.NAN
    assert [q.value for q in error.quantities()] == [None]
    assert not glucose(h.received[0]).is_device_error
    assert report.last_sequence == 3 and h.meter.records == []


async def test_clock_not_writable_records_the_offset(radio: SimulatedRadio) -> None:
    h = Harness(radio, clock_writable=False, device_clock_offset=timedelta(minutes=-12))
    await h.meter.start()
    await h.meter.measure()
    report = await h.session()
    assert report.received == 1 and report.error is None
    assert report.clock_written is False
    assert report.device_clock_offset_s is not None
    assert abs(report.device_clock_offset_s - 720.0) < 2.0  # hub - device
    got = h.received[0]
    assert got.clock_written is False
    assert got.device_clock_offset_s == report.device_clock_offset_s
    assert h.meter.clock_write_count == 0


async def test_bond_required_meter_pairs(radio: SimulatedRadio) -> None:
    h = Harness(radio, bond_required=True)
    await h.meter.start()
    await h.meter.measure()
    report = await h.session()
    assert report.error is None and report.received == 1 and report.paired
    assert await radio.is_bonded(METER)


async def test_context_is_sent_only_to_subscribers(radio: SimulatedRadio) -> None:
    h = Harness(radio, with_context=True)
    await h.meter.start()
    await h.meter.measure()
    report = await h.session()
    assert report.error is None and report.received == 1 and report.rejected == []
    assert glucose(h.received[0]).context_follows


async def test_cancelled_session_aborts_and_keeps_records(radio: SimulatedRadio) -> None:
    h = Harness(radio, record_interval_s=0.05)
    await h.meter.start()
    for _ in range(40):
        await h.meter.measure()
    task = asyncio.create_task(h.session())
    while h.meter.records_sent < 3:  # noqa: ASYNC110 (the meter has no event for it)
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bytes.fromhex("0300") in h.meter.racp_requests  # the abort
    assert h.meter.records_sent < 40
    assert len(h.meter.records) == 40 and h.received == []


# --- sequence numbers at the top of the range ----------------------------------------------


async def _measure_wrapped(meter: SimulatedGlucoseMeter, n: int) -> None:
    """Take `n` readings after the meter's counter rolled over past 65535 while it still
    holds records numbered below it (its log is in storage order, not number order)."""
    held, meter.records = meter.records, []
    for _ in range(n):
        await meter.measure()
    meter.records = held + meter.records


async def test_last_stored_65535_fetches_all_and_takes_the_rolled_over_records(
    radio: SimulatedRadio,
) -> None:
    # The hub stored 65535 (and deleted it); the meter counted on: 0, 1, 2.
    h = Harness(radio, first_sequence=0)
    await h.meter.start()
    for _ in range(3):
        await h.meter.measure()
    h.last_sequence = 65535
    report = await h.session()
    assert report.error is None and report.transfer_complete
    assert report.received == 3 and h.sequences() == [0, 1, 2]
    assert report.last_sequence == 2 and report.deleted_up_to == 2
    # No "01 03 01 <65536>" (unencodable): all records, then delete <= 2.
    assert h.meter.racp_requests == [bytes.fromhex("0101"), bytes.fromhex("0202010200")]
    assert h.meter.records == []
    # And the next session goes on normally from 2.
    await h.meter.measure()
    nxt = await h.session()
    assert nxt.received == 1 and h.sequences() == [0, 1, 2, 3]
    assert h.meter.racp_requests[-2] == bytes.fromhex("0103010300")


async def test_rollover_between_sessions_loses_and_repeats_nothing(radio: SimulatedRadio) -> None:
    h = Harness(radio, first_sequence=65534)
    await h.meter.start()
    await h.meter.measure()  # 65534
    await h.meter.measure()  # 65535
    await _measure_wrapped(h.meter, 2)  # 0, 1
    assert h.meter.sequences == [65534, 65535, 0, 1]
    h.last_sequence = 65533

    first = await h.session()
    assert first.error is None and first.received == 2 and first.last_sequence == 65535
    # "<= 65535" would delete 0 and 1 unstored: only 32768..65535 goes.
    assert h.meter.racp_requests == [
        *PROBE,  # 65534..1 follows 65533: no reset
        bytes.fromhex("010301feff"),
        bytes.fromhex("020401 0080 ffff"),
    ]
    assert h.meter.sequences == [0, 1]

    second = await h.session()
    assert second.error is None and second.received == 2 and second.last_sequence == 1
    assert h.sequences() == [65534, 65535, 0, 1]  # each exactly once, in counting order
    assert h.meter.records == []


async def test_after_rollover_old_records_still_on_the_meter_are_not_sent_again(
    radio: SimulatedRadio,
) -> None:
    # 65535 was stored but its delete never reached the meter (link dropped).
    h = Harness(radio, first_sequence=65535)
    await h.meter.start()
    await h.meter.measure()  # 65535
    await _measure_wrapped(h.meter, 2)  # 0, 1
    h.last_sequence = 65535
    report = await h.session()
    assert report.error is None
    assert report.fetched == 3 and report.already_stored == 1 and report.received == 2
    assert h.sequences() == [0, 1] and report.last_sequence == 1


# --- control solution ----------------------------------------------------------------------


async def test_control_solution_record_reaches_the_hub_without_a_patient_value(
    radio: SimulatedRadio,
) -> None:
    from datetime import UTC

    from device_drivers.codecs.glucose import (
        GlucoseType,
        GlucoseUnit,
        SampleLocation,
        encode_glucose_measurement,
    )
    from device_drivers.simulation.glucose_meter import RacpRecord
    from gateway.readings import to_reading

    h = Harness(radio)
    await h.meter.start()
    await h.meter.measure()  # 1: the patient's blood
    control = GlucoseMeasurement(
        sequence=2,
        base_time=h.meter.device_now().replace(microsecond=0),
        concentration=120.0,
        unit=GlucoseUnit.MG_DL,
        sample_type=GlucoseType.CONTROL_SOLUTION,
        sample_location=SampleLocation.CONTROL_SOLUTION,
    )
    await h.meter.store_record(RacpRecord(2, encode_glucose_measurement(control), control))
    report = await h.session()
    assert report.error is None and report.received == 2 and report.last_sequence == 2

    patient, test = (to_reading(m, zone=UTC, synced=True) for m in h.received)
    assert [q.value for q in patient.values] == [h.produced[0]["glucose"]]
    assert patient.status == []
    # The control test is delivered and stored (so it is deleted from the meter) but
    # carries no value: ingest never charts it or judges it against thresholds.
    assert glucose(h.received[1]).concentration == 120.0
    assert [(q.loinc, q.unit, q.value) for q in test.values] == [("2339-0", "mg/dL", None)]
    assert test.status == ["control_solution"]
    assert h.meter.records == []


# --- a meter whose log restarted (battery change, factory reset) ----------------------------


async def test_reset_meter_numbering_from_1_again_has_its_new_records_fetched(
    radio: SimulatedRadio,
) -> None:
    h = Harness(radio)
    await h.meter.start()
    for _ in range(5):
        await h.meter.measure()
    first = await h.session()
    assert first.last_sequence == 5 and h.meter.records == []

    h.meter.restart_log()  # factory reset: numbering from 1 again
    for _ in range(2):
        await h.meter.measure()
    report = await h.session()
    assert report.error is None and report.sequence_reset
    assert report.log is not None and (report.log.count, report.log.newest) == (2, 2)
    assert report.received == 2 and report.last_sequence == 2 and report.deleted_up_to == 2
    assert h.sequences() == [1, 2, 3, 4, 5, 1, 2]
    assert [m.raw.hex() for m in h.received] == [p["raw_hex"] for p in h.produced]
    assert h.meter.racp_requests[-3:] == [
        *PROBE[2:],
        bytes.fromhex("0101"),  # all records, not "from 6"
        bytes.fromhex("0202010200"),
    ]
    assert h.meter.records == []

    # The next session goes on from the new numbering.
    await h.meter.measure()
    nxt = await h.session()
    assert not nxt.sequence_reset and nxt.received == 1 and h.sequences()[-1] == 3


async def test_reset_across_the_top_of_the_range_is_not_skipped(radio: SimulatedRadio) -> None:
    """The hub had 65530; the reset meter holds 1..3 (a rolled-over one would hold 65531..)."""
    h = Harness(radio, first_sequence=65528)
    await h.meter.start()
    for _ in range(3):
        await h.meter.measure()
    assert (await h.session()).last_sequence == 65530
    h.meter.restart_log()
    for _ in range(3):
        await h.meter.measure()
    report = await h.session()
    assert report.sequence_reset and report.received == 3 and report.last_sequence == 3
    assert h.sequences()[-3:] == [1, 2, 3] and h.meter.records == []


async def test_records_kept_across_a_restarted_numbering_are_all_fetched(
    radio: SimulatedRadio,
) -> None:
    """A meter that kept 4 and 5 (it ignores deletes) and restarted at 1 after a battery
    change: its newest (3) precedes the hub's 5, so all is fetched; 4 and 5 come again
    with the same bytes (duplicates the hub's idempotency key absorbs)."""
    h = Harness(radio, replay=True)  # deletes are ignored: 1..5 stay on the meter
    await h.meter.start()
    for _ in range(5):
        await h.meter.measure()
    assert (await h.session()).last_sequence == 5
    h.meter.records = h.meter.records[3:]  # the meter kept 4 and 5
    h.meter.restart_log(keep_records=True)
    for _ in range(3):
        await h.meter.measure()  # 1, 2, 3 after 4, 5
    assert h.meter.sequences == [4, 5, 1, 2, 3]
    report = await h.session()
    assert report.log is not None and (report.log.oldest, report.log.newest) == (4, 3)
    assert report.sequence_reset and report.error is None
    new = [p["raw_hex"] for p in h.produced[5:]]
    old = [p["raw_hex"] for p in h.produced[3:5]]
    assert [m.raw.hex() for m in h.received[5:]] == new + old  # in sequence order
    assert h.sequences() == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]


async def test_deleted_records_back_on_the_meter_mean_a_reset(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.meter.start()
    for _ in range(3):
        await h.meter.measure()
    first = await h.session()
    assert first.deleted_up_to == 3
    h.meter.restart_log()
    for _ in range(5):
        await h.meter.measure()  # 1..5: by its numbers alone a failed delete
    report = await h.session(deleted_up_to=first.deleted_up_to)
    assert report.sequence_reset and report.received == 5 and report.last_sequence == 5
    assert h.sequences() == [1, 2, 3, 1, 2, 3, 4, 5]
    assert [m.raw.hex() for m in h.received] == [p["raw_hex"] for p in h.produced]


async def test_an_emptied_meter_is_no_reset_until_it_holds_records(radio: SimulatedRadio) -> None:
    h = Harness(radio)
    await h.meter.start()
    for _ in range(2):
        await h.meter.measure()
    await h.session()
    h.meter.restart_log()
    report = await h.session()
    assert not report.sequence_reset and report.received == 0 and report.last_sequence == 2
    assert report.log is not None and report.log.count == 0
    assert h.meter.racp_requests[-3:-1] == [bytes.fromhex("0401"), bytes.fromhex("0103010300")]
