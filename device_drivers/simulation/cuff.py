"""A simulated blood-pressure cuff (Blood Pressure Service 0x1810) on a `SimulatedRadio`.

Behaves like a real home cuff: `measure()` takes a reading (values from a seeded scenario,
timestamped with the cuff's own clock), stores it in the cuff's backlog and makes the cuff
advertise. When a central connects and enables indications on 0x2A35, the cuff indicates
every stored, not yet delivered reading in order, each after the previous indication was
confirmed, then ends the session by disconnecting after a short idle time.

Faults: `bond_required` (the 0x2A35 CCCD needs an encrypted link: pair first),
`replay_backlog` (every connection re-sends the whole backlog, byte for byte),
`clock_writable=False` (Current Time writes fail with ATT error 0x80) and
`device_clock_offset` (the clock runs ahead or behind); `power_off()` from the base class.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bumble import gatt, utils
from bumble.core import UUID
from bumble.device import Connection

from device_drivers.codecs.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    BloodPressureStatus,
    BloodPressureUnit,
    encode_blood_pressure_feature,
    encode_blood_pressure_measurement,
)
from device_drivers.simulation.peripheral import SimulatedPeripheral
from device_drivers.simulation.radio import SimulatedRadio

logger = logging.getLogger(__name__)

Scenario = Literal["normotensive", "hypertensive"]
SCENARIOS: tuple[Scenario, ...] = ("normotensive", "hypertensive")

BLOOD_PRESSURE_SERVICE = 0x1810
BLOOD_PRESSURE_MEASUREMENT = 0x2A35
BLOOD_PRESSURE_FEATURE = 0x2A49

_FEATURES = BloodPressureFeature(
    body_movement_detection=True, irregular_pulse_detection=True, cuff_fit_detection=True
)


@dataclass
class StoredMeasurement:
    """One reading in the cuff's memory."""

    raw: bytes
    record: dict[str, Any]
    delivered: bool = False


class SimulatedCuff(SimulatedPeripheral):
    """A simulated upper-arm blood-pressure cuff.

    Args:
        radio: the simulated radio (started) whose link the cuff joins.
        address: the cuff's random static address, "C4:..." (first byte C0-FF).
        serial: the serial number string (DIS 0x2A25).
        scenario: "normotensive" (110-135 / 70-85 mmHg, pulse 60-80) or "hypertensive"
            (170-200 / 100-120 mmHg, every second reading >= 180 systolic).
        seed: seed of the value generator (same seed, same readings).
        clock_writable: False makes Current Time writes fail with ATT error 0x80.
        bond_required: the 0x2A35 CCCD requires an encrypted (bonded) link.
        replay_backlog: every connection re-sends all stored readings.
        device_clock_offset: the cuff clock minus local time.
        on_produced: called with a JSON-serialisable record for every reading taken.
        name: advertised local name (default "BP-Cuff <last 4 of serial>").
        idle_disconnect_s: the cuff ends a session after this long without anything to send.
    """

    #: Device Information strings of every simulated cuff unless overridden.
    MANUFACTURER = "Hemhub Simulated Devices"
    MODEL = "BPM-SIM-1"

    def __init__(
        self,
        radio: SimulatedRadio,
        *,
        address: str,
        serial: str,
        scenario: Scenario = "normotensive",
        seed: int = 0,
        clock_writable: bool = True,
        bond_required: bool = False,
        replay_backlog: bool = False,
        device_clock_offset: timedelta = timedelta(0),
        on_produced: Callable[[dict[str, Any]], None] | None = None,
        name: str | None = None,
        manufacturer: str = MANUFACTURER,
        model: str = MODEL,
        firmware: str = "2.1.0",
        idle_disconnect_s: float = 0.3,
        advertising_interval_ms: float = 20.0,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        super().__init__(
            radio,
            address=address,
            name=name or f"BP-Cuff {serial[-4:]}",
            manufacturer=manufacturer,
            model=model,
            serial=serial,
            firmware=firmware,
            hardware="rev B",
            clock_writable=clock_writable,
            device_clock_offset=device_clock_offset,
            advertised_services=(BLOOD_PRESSURE_SERVICE,),
            advertising_interval_ms=advertising_interval_ms,
        )
        self.scenario: Scenario = scenario
        self.bond_required = bond_required
        self.replay_backlog = replay_backlog
        self.on_produced = on_produced
        self.idle_disconnect_s = idle_disconnect_s
        self._rng = random.Random(seed)
        self.backlog: list[StoredMeasurement] = []
        self._new_data = asyncio.Event()
        self._sessions: dict[Connection, asyncio.Task[None]] = {}
        self._measurement_characteristic: gatt.Characteristic[bytes] | None = None
        #: Indications confirmed by a central (a replayed reading counts again).
        self.indications_confirmed = 0

    # --- GATT -------------------------------------------------------------------------

    def extra_services(self) -> list[gatt.Service]:
        measurement: gatt.Characteristic[bytes] = gatt.Characteristic(
            core_uuid(BLOOD_PRESSURE_MEASUREMENT),
            gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.Permissions(0),  # indicate only: reads answer 0x02
            b"",
        )
        cccd_permissions = gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE
        if self.bond_required:
            cccd_permissions |= (
                gatt.Characteristic.READ_REQUIRES_ENCRYPTION
                | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION
            )
        # Our own CCCD (the server adds a plain one otherwise) to set its permissions.
        measurement.descriptors = [
            gatt.Descriptor(
                gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                cccd_permissions,
                self.device.gatt_server.make_descriptor_value(measurement),
            )
        ]
        measurement.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        self._measurement_characteristic = measurement
        feature: gatt.Characteristic[bytes] = gatt.Characteristic(
            core_uuid(BLOOD_PRESSURE_FEATURE),
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            encode_blood_pressure_feature(_FEATURES),
        )
        return [gatt.Service(core_uuid(BLOOD_PRESSURE_SERVICE), [measurement, feature])]

    # --- measurements -----------------------------------------------------------------

    def _draw(self) -> tuple[int, int, int]:
        rng, n = self._rng, len(self.backlog)
        if self.scenario == "hypertensive":
            # Crisis-level readings regularly: every second one is >= 180 systolic.
            systolic = rng.randint(180, 200) if n % 2 == 0 else rng.randint(170, 195)
            diastolic = rng.randint(100, 120)
        else:
            systolic = rng.randint(110, 135)
            diastolic = rng.randint(70, 85)
        pulse = rng.randint(60, 80) if self.scenario == "normotensive" else rng.randint(68, 95)
        return systolic, min(diastolic, systolic - 25), pulse

    async def measure(
        self,
        *,
        systolic: int | None = None,
        diastolic: int | None = None,
        pulse: int | None = None,
    ) -> dict[str, Any]:
        """Take a reading: store it, report it to `on_produced`, advertise; returns the record.

        Values not given are drawn from the scenario (tests pin the ones they assert on).
        """
        drawn = self._draw()
        systolic = drawn[0] if systolic is None else systolic
        diastolic = drawn[1] if diastolic is None else diastolic
        pulse = drawn[2] if pulse is None else pulse
        mean_arterial = round(diastolic + (systolic - diastolic) / 3)
        irregular = self._rng.random() < 0.05
        measurement = BloodPressureMeasurement(
            unit=BloodPressureUnit.MMHG,
            systolic=float(systolic),
            diastolic=float(diastolic),
            mean_arterial=float(mean_arterial),
            timestamp=self.device_now().replace(microsecond=0),
            pulse=float(pulse),
            user_id=1,
            status=BloodPressureStatus(irregular_pulse=irregular),
        )
        raw = encode_blood_pressure_measurement(measurement)
        assert measurement.timestamp is not None
        record: dict[str, Any] = {
            "address": self.address,
            "serial": self.serial,
            "characteristic": "2A35",
            "raw_hex": raw.hex(),
            "systolic": float(systolic),
            "diastolic": float(diastolic),
            "mean_arterial": float(mean_arterial),
            "pulse": float(pulse),
            "unit": BloodPressureUnit.MMHG.value,
            "device_time": measurement.timestamp.isoformat(),
            "produced_at": datetime.now(UTC).isoformat(),
        }
        await self._store(StoredMeasurement(raw=raw, record=record))
        if self.on_produced is not None:
            self.on_produced(dict(record))
        return record

    async def store_raw(self, raw: bytes) -> None:
        """Fault injection: store an arbitrary (e.g. malformed) 0x2A35 payload as a reading.

        It is not reported to `on_produced`: it is not a measurement.
        """
        await self._store(StoredMeasurement(raw=bytes(raw), record={"raw_hex": bytes(raw).hex()}))

    async def _store(self, stored: StoredMeasurement) -> None:
        """Keep a reading; a session in progress sends it, otherwise the cuff advertises."""
        self.backlog.append(stored)
        self._new_data.set()
        await self.start_advertising()  # no-op while connected or powered off

    @property
    def undelivered(self) -> list[StoredMeasurement]:
        return [m for m in self.backlog if not m.delivered]

    # --- sessions ---------------------------------------------------------------------

    def _on_subscription(self, bearer: object, _notify: bool, indicate: bool) -> None:
        connection = (
            bearer if isinstance(bearer, Connection) else getattr(bearer, "connection", None)
        )
        if not isinstance(connection, Connection) or not indicate:
            return
        if connection in self._sessions:
            return
        self._sessions[connection] = self.spawn(self._session(connection))

    def on_disconnected(self, connection: Connection, reason: int) -> None:
        task = self._sessions.pop(connection, None)
        if task is not None and not task.done():
            task.cancel()

    def _indications_enabled(self, connection: Connection) -> bool:
        characteristic = self._measurement_characteristic
        assert characteristic is not None
        cccd = self.device.gatt_server.subscribers.get(connection, {}).get(characteristic.handle)
        return cccd is not None and len(cccd) == 2 and bool(cccd[0] & 0x02)

    async def _session(self, connection: Connection) -> None:
        """Indicate the backlog in order, then hang up after an idle time."""
        characteristic = self._measurement_characteristic
        assert characteristic is not None
        cursor = 0
        if not self.replay_backlog:
            cursor = next(
                (i for i, m in enumerate(self.backlog) if not m.delivered), len(self.backlog)
            )
        try:
            while connection in self.connections:
                if cursor < len(self.backlog):
                    if not self._indications_enabled(connection):
                        break  # the central unsubscribed: nothing would be sent
                    stored = self.backlog[cursor]
                    # Returns once the central confirmed the indication.
                    await utils.cancel_on_event(
                        connection,
                        Connection.EVENT_DISCONNECTION,
                        self.device.indicate_subscriber(connection, characteristic, stored.raw),
                    )
                    stored.delivered = True
                    self.indications_confirmed += 1
                    cursor += 1
                    continue
                self._new_data.clear()
                try:
                    await asyncio.wait_for(self._new_data.wait(), self.idle_disconnect_s)
                except TimeoutError:
                    break
            if cursor >= len(self.backlog):
                self._wants_advertising = False  # all sent: the cuff goes back to sleep
            if connection in self.connections:
                await self._disconnect(connection)
        except asyncio.CancelledError:
            return  # the link dropped (or the cuff stopped) mid-session
        finally:
            if self._sessions.get(connection) is asyncio.current_task():
                del self._sessions[connection]


def core_uuid(value: int) -> UUID:
    """A 16-bit SIG UUID as bumble's UUID."""
    return UUID.from_16_bits(value)


__all__ = ["SCENARIOS", "Scenario", "SimulatedCuff", "StoredMeasurement"]
