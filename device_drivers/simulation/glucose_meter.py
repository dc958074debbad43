"""A simulated blood-glucose meter (Glucose Service 0x1808) on a `SimulatedRadio`.

Also the home of `RacpPeripheral`, the base of every simulated device that keeps a
log of records with sequence numbers and serves it through a Record Access Control Point
(the meter here, the medication dispenser in `dispenser.py`).

RACP server behaviour (GLS 1.0 / the RACP of the SIG profiles):
- a write to the RACP is refused with ATT error 0xFD (CCCD improperly configured) unless
  the writing central enabled notifications or indications on the record characteristic
  and indications on the RACP; with 0xFE (procedure already in progress) while a
  procedure other than an abort runs;
- report stored records (all, <=, >=, range, first, last; filter: sequence number): each
  matching record is sent, in sequence order, then a response code is indicated
  (`06 00 01 01` success, `06 00 01 06` no records found);
- delete stored records (same operators): response code success / no records found;
- report number of stored records: `05 00 <count u16>` (0 when none match);
- abort: stops a report in progress and indicates `06 00 03 01`;
- anything else: the response code the codec assigns (op code not supported, invalid
  operator, operator not supported, invalid operand, operand not supported: a
  user-facing-time filter).

Faults (constructor options, also attributes tests may change): `bond_required` (the
CCCDs and the RACP need an encrypted link), `replay` (deletes are answered with success but
ignored: records never leave the device), `replay_backlog` (the name every simulated
peripheral uses for "the whole memory again on every connection": deletes ignored as
with `replay`, and a report filtered by sequence number (<=, >=, range) sends every
stored record, as if the filter were "all"; first/last record are still honoured),
`disconnect_mid_transfer=k` (every report procedure drops the link after k records while
more are waiting), `restart_log()` (a battery change or factory reset: numbering starts
again at 1, the old records erased or kept), and the switches of `SimulatedPeripheral`
(`clock_writable=False`, `clock_unset`, `device_clock_offset`, `inject_error_readings(n)`,
`set_battery_level`, `set_in_range`, `power_off`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bumble import att, gatt, utils
from bumble.core import UUID
from bumble.device import Connection

from device_drivers.codecs.glucose import (
    GlucoseContext,
    GlucoseFeature,
    GlucoseMeasurement,
    GlucoseType,
    GlucoseUnit,
    Meal,
    SampleLocation,
    decode_glucose_measurement,
    encode_glucose_context,
    encode_glucose_feature,
    encode_glucose_measurement,
)
from device_drivers.codecs.ieee11073 import SpecialValue
from device_drivers.codecs.racp import (
    RacpFilterType,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpRequestError,
    RacpResponseCode,
    decode_racp_request,
    encode_racp_number_of_records,
    encode_racp_response,
)
from device_drivers.simulation.peripheral import SimulatedPeripheral
from device_drivers.simulation.radio import SimulatedRadio

logger = logging.getLogger(__name__)

Scenario = Literal["normal", "diabetic"]
SCENARIOS: tuple[Scenario, ...] = ("normal", "diabetic")

GLUCOSE_SERVICE = 0x1808
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_MEASUREMENT_CONTEXT = 0x2A34
GLUCOSE_FEATURE = 0x2A51
RECORD_ACCESS_CONTROL_POINT = 0x2A52

#: ATT errors of the RACP (Core Spec Supplement, common profile and service error codes).
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE

_CCCD_NOTIFY = 0x01
_CCCD_INDICATE = 0x02

_FEATURES = GlucoseFeature(
    low_battery_detection=True,
    sensor_malfunction_detection=True,
    sample_size=True,
    strip_insertion_error_detection=True,
    result_high_low_detection=True,
    general_device_fault=True,
)


def uuid16(value: int) -> UUID:
    """A 16-bit SIG UUID as bumble's UUID."""
    return UUID.from_16_bits(value)


@dataclass
class RacpRecord:
    """One record in a device's log: its sequence number, model, wire bytes, and a
    JSON-serialisable description (what the device produced, for tests and demos)."""

    sequence: int
    raw: bytes
    model: Any
    record: dict[str, Any] = field(default_factory=dict)
    #: Bytes of a companion characteristic sent right after the record (glucose context).
    companion: bytes | None = None


def _bytes_or_none(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


class RacpPeripheral(SimulatedPeripheral):
    """A simulated peripheral with a record log served through a RACP.

    Subclasses build their service with `record_characteristic()` and
    `racp_characteristic()` in `extra_services()`, append records with `store_record()`
    and may override `send_stored()` (how one stored record goes out on a report).
    """

    #: Bytes of a sequence number in RACP operands (2 for SIG profiles, 4 for ours).
    SEQUENCE_SIZE = 2
    #: RACP filter types this device implements.
    SUPPORTED_FILTERS = frozenset({RacpFilterType.SEQUENCE_NUMBER})

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        bond_required: bool = False,
        replay: bool = False,
        replay_backlog: bool = False,
        disconnect_mid_transfer: int | None = None,
        record_interval_s: float = 0.0,
        **peripheral_options: Any,
    ) -> None:
        super().__init__(
            radio, disconnect_mid_transfer=disconnect_mid_transfer, **peripheral_options
        )
        self.bond_required = bond_required
        #: Deletes are acknowledged and ignored.
        self.replay = replay or replay_backlog
        #: Reports filtered by sequence number send the whole log (and deletes are ignored).
        self.replay_backlog = replay_backlog
        #: Times the log restarted its numbering (`restart_log`).
        self.log_restarts = 0
        #: Pause between two records of a report (0: as fast as the link goes).
        self.record_interval_s = record_interval_s
        #: The log, in storage order (increasing sequence numbers unless it restarted).
        self.records: list[RacpRecord] = []
        #: The sequence number the next record gets.
        self.next_sequence = 1
        #: Every RACP request written by a central, as written (tests read it).
        self.racp_requests: list[bytes] = []
        #: Records removed by RACP deletes.
        self.deleted_count = 0
        #: Called with the wire bytes of records erased from the log (RACP delete, a data
        #: reset, a restarted log), before the memory is saved: the simulated home drops
        #: them from the device's memory file too, so an erased reading is gone for good.
        self.on_records_erased: Callable[[list[bytes]], None] | None = None
        #: Records sent in answer to report requests (a record sent twice counts twice).
        self.records_sent = 0
        self._record_characteristic: gatt.Characteristic[bytes] | None = None
        self._racp_characteristic: gatt.Characteristic[bytes] | None = None
        self._procedures: dict[Connection, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Start and advertise (again after every disconnection), like a device whose
        Bluetooth is on while it holds records or is mains powered."""
        await super().start()
        await self.start_advertising()

    async def stop(self) -> None:
        # A disconnection spawns a re-advertise; bumble breaks (KeyError in
        # stop_advertising) if the stop's HCI commands interleave with it: let it finish.
        self._wants_advertising = False
        for task in self._procedures.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        await super().stop()

    # --- GATT building blocks -------------------------------------------------------------

    def _cccd(self, characteristic: gatt.Characteristic[bytes]) -> gatt.Descriptor:
        """A CCCD for `characteristic`, requiring encryption when the device is bond-only."""
        permissions = gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE
        if self.bond_required:
            permissions |= (
                gatt.Characteristic.READ_REQUIRES_ENCRYPTION
                | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION
            )
        return gatt.Descriptor(
            gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
            permissions,
            self.device.gatt_server.make_descriptor_value(characteristic),
        )

    def subscribable(
        self, uuid: UUID, properties: gatt.Characteristic.Properties
    ) -> gatt.Characteristic[bytes]:
        """A notify/indicate-only characteristic (reads answer 0x02) with its own CCCD."""
        characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid, properties, gatt.Characteristic.Permissions(0), b""
        )
        characteristic.descriptors = [self._cccd(characteristic)]
        return characteristic

    def record_characteristic(
        self, uuid: UUID, properties: gatt.Characteristic.Properties
    ) -> gatt.Characteristic[bytes]:
        """The characteristic stored records are sent on (notify or indicate)."""
        self._record_characteristic = self.subscribable(uuid, properties)
        return self._record_characteristic

    def racp_characteristic(self, uuid: UUID) -> gatt.Characteristic[bytes]:
        """The Record Access Control Point (write + indicate)."""
        permissions = gatt.Characteristic.WRITEABLE
        if self.bond_required:
            permissions |= gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION
        racp: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid,
            gatt.Characteristic.Properties.WRITE | gatt.Characteristic.Properties.INDICATE,
            permissions,
            gatt.CharacteristicValue(write=self._write_racp),
        )
        racp.descriptors = [self._cccd(racp)]
        self._racp_characteristic = racp
        return racp

    def cccd_bits(self, connection: Connection, characteristic: gatt.Characteristic[bytes]) -> int:
        """What `connection` enabled on `characteristic`: 1 notifications, 2 indications."""
        cccd = self.device.gatt_server.subscribers.get(connection, {}).get(characteristic.handle)
        return cccd[0] if cccd is not None and len(cccd) == 2 else 0

    # --- the log ------------------------------------------------------------------------

    @property
    def sequences(self) -> list[int]:
        return [r.sequence for r in self.records]

    async def store_record(self, stored: RacpRecord) -> None:
        """Append a record to the log and advertise (a no-op while connected or off)."""
        if self.records and stored.sequence <= self.records[-1].sequence and not self.log_restarts:
            raise ValueError(f"sequence {stored.sequence} does not increase")
        self.records.append(stored)
        self.memory_changed()  # kept before anyone hears of it, like a write to flash
        await self.start_advertising()

    def restart_log(self, *, keep_records: bool = False, first_sequence: int = 1) -> None:
        """Fault: the log restarts its numbering at `first_sequence` (a battery change or
        a factory reset / reconditioning). The old records are erased unless
        `keep_records` (some meters keep them across a battery change)."""
        if not keep_records:
            self.records_erased(self.records)
            self.records = []
        self.next_sequence = first_sequence
        self.log_restarts += 1
        self.memory_changed()

    def records_erased(self, records: list[RacpRecord]) -> None:
        """Tell the simulated home which records left the log (see `on_records_erased`)."""
        if records and self.on_records_erased is not None:
            self.on_records_erased([r.raw for r in records])

    # --- memory (what survives a power cut, see `memory.DeviceMemory`) ------------------

    def decode_record(self, raw: bytes) -> Any:
        """Hook: the model of a stored record's bytes (to restore the log)."""
        raise NotImplementedError

    def memory_state(self) -> dict[str, Any]:
        """What the device keeps through a power cut, JSON-serialisable: its log (records
        not yet deleted, with their sequence numbers), the next sequence number, its
        clock and battery. Subclasses add their own state."""
        return {
            "records": [
                {
                    "sequence": r.sequence,
                    "raw_hex": r.raw.hex(),
                    "record": r.record,
                    "companion_hex": None if r.companion is None else r.companion.hex(),
                }
                for r in self.records
            ],
            "next_sequence": self.next_sequence,
            "log_restarts": self.log_restarts,
            # The device's clock kept running while the process was dead.
            "clock_offset_s": self._clock_offset.total_seconds(),
            "clock_is_set": self.clock_is_set,
            "battery_level": self.battery_level,
        }

    def restore_memory(self, state: dict[str, Any]) -> None:
        """Take back what `memory_state` returned (before `start()`)."""
        self.records = [
            RacpRecord(
                sequence=saved["sequence"],
                raw=bytes.fromhex(saved["raw_hex"]),
                model=self.decode_record(bytes.fromhex(saved["raw_hex"])),
                record=saved["record"],
                companion=(
                    None
                    if saved["companion_hex"] is None
                    else bytes.fromhex(saved["companion_hex"])
                ),
            )
            for saved in state["records"]
        ]
        self.next_sequence = state["next_sequence"]
        self.log_restarts = state["log_restarts"]
        self._clock_offset = timedelta(seconds=state["clock_offset_s"])
        self.clock_is_set = state["clock_is_set"]
        self.battery_level = state["battery_level"]

    async def send_stored(self, connection: Connection, stored: RacpRecord) -> None:
        """Send one stored record in answer to a report (hook; default: notify or indicate
        the record, as the record characteristic's CCCD says, then its companion)."""
        characteristic = self._record_characteristic
        assert characteristic is not None
        if self.cccd_bits(connection, characteristic) & _CCCD_NOTIFY:
            await self.device.notify_subscriber(connection, characteristic, stored.raw)
        else:
            await self.device.indicate_subscriber(connection, characteristic, stored.raw)

    # --- RACP ---------------------------------------------------------------------------

    def _write_racp(self, connection: Connection, value: bytes) -> None:
        record, racp = self._record_characteristic, self._racp_characteristic
        assert record is not None and racp is not None
        data = bytes(value)
        self.racp_requests.append(data)
        subscribed = self.cccd_bits(connection, record) & (_CCCD_NOTIFY | _CCCD_INDICATE)
        if not subscribed or not self.cccd_bits(connection, racp) & _CCCD_INDICATE:
            raise att.ATT_Error(ATT_CCCD_IMPROPERLY_CONFIGURED)
        running = self._procedures.get(connection)
        is_abort = data[:2] == bytes((RacpOpcode.ABORT_OPERATION, RacpOperator.NULL))
        if running is not None and not running.done():
            if not is_abort:
                raise att.ATT_Error(ATT_PROCEDURE_ALREADY_IN_PROGRESS)
            running.cancel()  # the abort's own response follows below
        self._procedures[connection] = self.spawn_for(connection, self._procedure(connection, data))

    async def _indicate_racp(self, connection: Connection, value: bytes) -> None:
        racp = self._racp_characteristic
        assert racp is not None
        await self._on_link(connection, self.device.indicate_subscriber(connection, racp, value))

    async def _on_link(self, connection: Connection, operation: Coroutine[Any, Any, Any]) -> None:
        """Run a GATT server operation; cancelled when the link drops."""
        await utils.cancel_on_event(connection, Connection.EVENT_DISCONNECTION, operation)

    async def _respond(self, connection: Connection, opcode: int, code: RacpResponseCode) -> None:
        await self._indicate_racp(connection, encode_racp_response(opcode, code))

    def _select(self, request: RacpRequest) -> list[RacpRecord]:
        records = self.records
        match request.operator:
            case RacpOperator.FIRST_RECORD:
                return records[:1]
            case RacpOperator.LAST_RECORD:
                return records[-1:]
            case RacpOperator.ALL_RECORDS:
                return list(records)
        if self.replay_backlog and request.opcode is RacpOpcode.REPORT_STORED_RECORDS:
            return list(records)  # the filter ignored: the whole memory again
        low = request.low if isinstance(request.low, int) else None
        high = request.high if isinstance(request.high, int) else None
        return [
            r
            for r in records
            if (low is None or r.sequence >= low) and (high is None or r.sequence <= high)
        ]

    async def _procedure(self, connection: Connection, data: bytes) -> None:
        try:
            try:
                request = decode_racp_request(data, sequence_size=self.SEQUENCE_SIZE)
            except RacpRequestError as exc:
                logger.info("%s: RACP request %s refused: %s", self.name, data.hex(), exc)
                await self._respond(connection, exc.request_opcode, exc.response_code)
                return
            opcode = request.opcode
            filter_type = request.filter_type
            if filter_type is not None and filter_type not in self.SUPPORTED_FILTERS:
                await self._respond(connection, opcode, RacpResponseCode.OPERAND_NOT_SUPPORTED)
                return
            if opcode is RacpOpcode.ABORT_OPERATION:
                await self._respond(connection, opcode, RacpResponseCode.SUCCESS)
                return
            selected = self._select(request)
            if opcode is RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS:
                await self._indicate_racp(connection, encode_racp_number_of_records(len(selected)))
                return
            if not selected:
                await self._respond(connection, opcode, RacpResponseCode.NO_RECORDS_FOUND)
                return
            if opcode is RacpOpcode.DELETE_STORED_RECORDS:
                if not self.replay:
                    gone = {id(r) for r in selected}
                    self.records = [r for r in self.records if id(r) not in gone]
                    self.deleted_count += len(selected)
                    self.records_erased(selected)
                    self.memory_changed()  # gone for good before the success is sent
                await self._respond(connection, opcode, RacpResponseCode.SUCCESS)
                return
            await self._report(connection, selected)
        except asyncio.CancelledError:
            return  # aborted, or the link dropped
        finally:
            if self._procedures.get(connection) is asyncio.current_task():
                del self._procedures[connection]

    async def _report(self, connection: Connection, selected: list[RacpRecord]) -> None:
        for sent, stored in enumerate(selected, start=1):
            await self._on_link(connection, self.send_stored(connection, stored))
            self.records_sent += 1
            if self.interrupts_transfer(sent, len(selected) - sent):
                self.mid_transfer_disconnects += 1
                logger.info("%s: dropping the link after %d record(s)", self.name, sent)
                await self._disconnect(connection)
                return
            await asyncio.sleep(self.record_interval_s)  # also lets an abort in
        await self._respond(connection, RacpOpcode.REPORT_STORED_RECORDS, RacpResponseCode.SUCCESS)


class SimulatedGlucoseMeter(RacpPeripheral):
    """A simulated blood-glucose meter with a record memory.

    It advertises from `start()` on (and again after every disconnection). Records are
    kept until a central deletes them with the RACP.

    Args:
        radio: the simulated radio (started) whose link the meter joins.
        address: the meter's random static address, "C4:..." (first byte C0-FF).
        serial: the serial number string (DIS 0x2A25).
        scenario: "normal" (72-140 mg/dL) or "diabetic" (70-250 mg/dL, with a hypo
            below 70 every 7 readings and a hyper above 250 every 7 readings).
        seed: seed of the value generator (same seed, same readings).
        first_sequence: the sequence number of the first record.
        with_context: every reading carries a meal context (0x2A34), sent after the
            record to centrals that enabled 0x2A34 notifications.
        on_produced: called with a JSON-serialisable record for every reading taken.
        options: the RACP server's switches (`bond_required`, `replay`,
            `disconnect_mid_transfer`, `record_interval_s`: see `RacpPeripheral`), those
            of `SimulatedPeripheral` (`clock_writable`, `device_clock_offset`,
            `clock_unset`, `battery_level`...) and the identity (`name`, `model`,
            `firmware`...).
    """

    MANUFACTURER = "Hemhub Simulated Devices"
    MODEL = "GLM-SIM-1"

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        serial: str,
        scenario: Scenario = "normal",
        seed: int = 0,
        first_sequence: int = 1,
        with_context: bool = False,
        on_produced: Callable[[dict[str, Any]], None] | None = None,
        **options: Any,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        options.setdefault("name", f"Glucose {serial[-4:]}")
        options.setdefault("manufacturer", self.MANUFACTURER)
        options.setdefault("model", self.MODEL)
        options.setdefault("firmware", "1.4.2")
        options.setdefault("hardware", "rev A")
        options.setdefault("advertised_services", (GLUCOSE_SERVICE,))
        super().__init__(radio, address=address, serial=serial, **options)
        self.scenario: Scenario = scenario
        self.with_context = with_context
        self.on_produced = on_produced
        self._rng = random.Random(seed)
        self.next_sequence = first_sequence & 0xFFFF
        self.readings_taken = 0
        self._context_characteristic: gatt.Characteristic[bytes] | None = None

    # --- GATT -------------------------------------------------------------------------

    def extra_services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        measurement = self.record_characteristic(uuid16(GLUCOSE_MEASUREMENT), props.NOTIFY)
        context = self.subscribable(uuid16(GLUCOSE_MEASUREMENT_CONTEXT), props.NOTIFY)
        self._context_characteristic = context
        feature: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(GLUCOSE_FEATURE),
            props.READ,
            gatt.Characteristic.READABLE,
            encode_glucose_feature(_FEATURES),
        )
        racp = self.racp_characteristic(uuid16(RECORD_ACCESS_CONTROL_POINT))
        return [gatt.Service(uuid16(GLUCOSE_SERVICE), [measurement, context, feature, racp])]

    async def send_stored(self, connection: Connection, stored: RacpRecord) -> None:
        await super().send_stored(connection, stored)
        context = self._context_characteristic
        if stored.companion is not None and context is not None:
            await self.device.notify_subscriber(connection, context, stored.companion)

    def decode_record(self, raw: bytes) -> GlucoseMeasurement:
        return decode_glucose_measurement(raw)

    def memory_state(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {
            **super().memory_state(),
            "readings_taken": self.readings_taken,
            "rng": [version, list(internal), gauss],
        }

    def restore_memory(self, state: dict[str, Any]) -> None:
        super().restore_memory(state)
        self.readings_taken = state["readings_taken"]
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))

    # --- readings -----------------------------------------------------------------------

    def _draw(self) -> int:
        rng, n = self._rng, self.readings_taken
        if self.scenario == "diabetic":
            if n % 7 == 3:
                return rng.randint(45, 69)  # hypo
            if n % 7 == 6:
                return rng.randint(251, 380)  # hyper
            return rng.randint(70, 250)
        return rng.randint(72, 140)

    def _next_sequence(self) -> int:
        sequence = self.next_sequence
        self.next_sequence = (sequence + 1) & 0xFFFF
        return sequence

    async def measure(
        self, *, mg_dl: int | None = None, meal: Meal | None = None
    ) -> dict[str, Any]:
        """Take a reading (mg/dL, drawn from the scenario unless given), store it with the
        next sequence number, report it to `on_produced`; returns the produced record.

        After `inject_error_readings(n)` the next n readings are failed measurements: the
        concentration NaN (0x07FF), no status; the hub must see a device error.
        """
        drawn = self._draw() if mg_dl is None else mg_dl
        self.readings_taken += 1
        error = self.take_error_reading()
        value: float | SpecialValue = SpecialValue.NAN if error else float(drawn)
        if meal is None and self.with_context:
            meal = Meal.PREPRANDIAL
        sequence = self._next_sequence()
        measurement = GlucoseMeasurement(
            sequence=sequence,
            base_time=self.device_now().replace(microsecond=0),
            concentration=value,
            unit=GlucoseUnit.MG_DL,
            sample_type=GlucoseType.CAPILLARY_WHOLE_BLOOD,
            sample_location=SampleLocation.FINGER,
            context_follows=meal is not None,
        )
        raw = encode_glucose_measurement(measurement)
        companion = None
        if meal is not None:
            companion = encode_glucose_context(GlucoseContext(sequence=sequence, meal=meal))
        assert measurement.base_time is not None
        record: dict[str, Any] = {
            "address": self.address,
            "serial": self.serial,
            "characteristic": "2A18",
            "sequence": sequence,
            "raw_hex": raw.hex(),
            "error": error,
            "glucose": None if error else value,
            "unit": GlucoseUnit.MG_DL.value,
            "device_time": measurement.base_time.isoformat(),
            "produced_at": datetime.now(UTC).isoformat(),
        }
        await self.store_record(RacpRecord(sequence, raw, measurement, record, companion))
        if self.on_produced is not None:
            self.on_produced(dict(record))
        return record


__all__ = [
    "ATT_CCCD_IMPROPERLY_CONFIGURED",
    "ATT_PROCEDURE_ALREADY_IN_PROGRESS",
    "SCENARIOS",
    "RacpPeripheral",
    "RacpRecord",
    "Scenario",
    "SimulatedGlucoseMeter",
    "uuid16",
]
