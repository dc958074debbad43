"""Per-model quirks: the table, the pure byte fix, and each quirk end to end over the
simulated radio (a model with the quirk works; the same device without the table entry
shows why the quirk exists)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.codecs.blood_pressure import decode_blood_pressure_measurement
from device_drivers.codecs.errors import DecodeError
from device_drivers.drivers.blood_pressure import run_blood_pressure_session
from device_drivers.drivers.pulse_oximeter import run_pulse_oximeter_session
from device_drivers.drivers.session import ReceivedMeasurement, SessionReport, SessionRunner
from device_drivers.drivers.weight_scale import run_weight_scale_session
from device_drivers.quirks import (
    QUIRKS,
    Quirk,
    apply_byte_quirks,
    quirks_for,
    swap_pulse_and_status,
)
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.oximeter import SimulatedOximeter
from device_drivers.simulation.peripheral import StoredRecordsPeripheral
from device_drivers.simulation.radio import SimulatedRadio
from device_drivers.simulation.scale import SimulatedScale
from hemhub.contract import DeviceIdentity

pytestmark = pytest.mark.timeout(30)

ADDRESS = "C4:60:00:00:00:01"
SWAPPED = Quirk.SWAPPED_PULSE_AND_STATUS

# 120/80/93 mmHg, 2024-05-01 08:30:00, pulse 72, user 1, status "irregular pulse".
STANDARD = bytes.fromhex("1e780050005d00e8070501081e004800010400")
# The same reading from a cuff that swaps pulse and status.
SWAPPED_WIRE = bytes.fromhex("1e780050005d00e8070501081e000400014800")


def identity(manufacturer: str | None, model: str | None) -> DeviceIdentity:
    return DeviceIdentity(address=ADDRESS, manufacturer=manufacturer, model=model)


def test_swapped_fields_are_put_back_before_decoding() -> None:
    fixed = apply_byte_quirks("2A35", SWAPPED_WIRE, {SWAPPED})
    assert fixed == STANDARD
    m = decode_blood_pressure_measurement(fixed)
    assert m.pulse == 72.0 and m.status_names() == ["irregular_pulse"]
    with pytest.raises(DecodeError, match="reserved measurement status"):
        decode_blood_pressure_measurement(SWAPPED_WIRE)  # 0x0048 has reserved bit 6


def test_byte_quirks_leave_other_payloads_alone() -> None:
    assert apply_byte_quirks("2A35", SWAPPED_WIRE, set()) == SWAPPED_WIRE
    assert apply_byte_quirks("2A9D", SWAPPED_WIRE, {SWAPPED}) == SWAPPED_WIRE
    assert apply_byte_quirks("2a36", SWAPPED_WIRE, {SWAPPED}) == STANDARD  # 2A36: same layout
    no_status = bytes([0x0E]) + STANDARD[1:-2]  # pulse and user id, no status
    assert swap_pulse_and_status(no_status) == no_status
    assert swap_pulse_and_status(SWAPPED_WIRE[:-1]) == SWAPPED_WIRE[:-1]  # truncated
    assert swap_pulse_and_status(b"") == b""
    without_time = bytes.fromhex("1c780050005d000400014800")
    assert decode_blood_pressure_measurement(swap_pulse_and_status(without_time)).pulse == 72.0


@given(st.binary(max_size=40))
def test_swap_is_its_own_inverse_and_keeps_length(raw: bytes) -> None:
    once = apply_byte_quirks("2A35", raw, {SWAPPED})
    assert len(once) == len(raw)
    assert apply_byte_quirks("2A35", once, {SWAPPED}) == raw


def test_table_lookup_normalises_case_and_whitespace() -> None:
    assert quirks_for(identity("  hemhub   SIMULATED devices ", "bpm-sim-2q")) == {SWAPPED}
    assert quirks_for(identity("Hemhub Simulated Devices", "WS-SIM-2C")) == {
        Quirk.CLOCK_NOT_SETTABLE
    }
    assert quirks_for(identity("Hemhub Simulated Devices", "PLX-SIM-2B")) == {Quirk.BOND_REQUIRED}
    assert quirks_for(identity("Hemhub Simulated Devices", "BPM-SIM-1")) == frozenset()
    assert quirks_for(identity(None, "BPM-SIM-2Q")) == frozenset()
    assert quirks_for(identity("Hemhub Simulated Devices", None)) == frozenset()
    assert {q for quirks in QUIRKS.values() for q in quirks} == set(Quirk)  # each simulated


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:31") as r:
        yield r


class Collector:
    def __init__(self) -> None:
        self.received: list[ReceivedMeasurement] = []

    async def __call__(self, m: ReceivedMeasurement) -> None:
        self.received.append(m)


async def one_session(
    runner: SessionRunner, device: StoredRecordsPeripheral
) -> tuple[SessionReport, Collector]:
    """Start `device`, run one session with it; the report and what was received."""
    got = Collector()
    report = await runner(
        await device.discover(),
        backends=device.radio.bleak_backends(),
        on_measurement=got,
        connect_timeout=2.0,
        idle_timeout=1.0,
    )
    return report, got


@pytest.mark.parametrize("model", [SimulatedCuff.SWAPPED_MODEL, "BPM-SIM-X"])
async def test_swapped_cuff_end_to_end(radio: SimulatedRadio, model: str) -> None:
    produced: list[dict[str, object]] = []
    cuff = SimulatedCuff(
        radio,
        address=ADDRESS,
        serial="Q-0001",
        model=model,
        swapped_pulse_and_status=True,
        on_produced=produced.append,
        idle_disconnect_s=0.1,
    )
    await cuff.start()
    await cuff.measure(pulse=72)
    await cuff.measure(pulse=64)
    report, got = await one_session(run_blood_pressure_session, cuff)
    if model == SimulatedCuff.SWAPPED_MODEL:
        assert report.quirks == {SWAPPED} and report.rejected == []
        assert [getattr(m.measurement, "pulse", None) for m in got.received] == [72.0, 64.0]
        # `raw` stays the bytes as received (the key of duplicates); values are fixed.
        assert [m.raw.hex() for m in got.received] == [p["raw_hex"] for p in produced]
        assert all(m.quirks == {SWAPPED} for m in got.received)
    else:  # the same firmware under a model the table does not know: readings are lost
        assert report.quirks == frozenset() and got.received == []
        assert len(report.rejected) == 2


@pytest.mark.parametrize("model", [SimulatedScale.FIXED_CLOCK_MODEL, SimulatedScale.MODEL])
async def test_clock_not_settable_scale_gets_its_offset_measured(
    radio: SimulatedRadio, model: str
) -> None:
    scale = SimulatedScale(
        radio,
        address=ADDRESS,
        serial="C-0001",
        model=model,
        clock_write_ignored=True,
        device_clock_offset=timedelta(minutes=10),
        idle_disconnect_s=0.1,
    )
    await scale.start()
    await scale.measure()
    report, got = await one_session(run_weight_scale_session, scale)
    assert report.received == 1 and report.device_clock_offset_s is not None
    assert abs(report.device_clock_offset_s - (-600.0)) < 2.0
    assert abs(scale.clock_offset.total_seconds() - 600.0) < 2.0  # its clock never changes
    if model == SimulatedScale.FIXED_CLOCK_MODEL:
        assert report.quirks == {Quirk.CLOCK_NOT_SETTABLE}
        assert not report.clock_written and not got.received[0].clock_written
        assert scale.clock_writes_ignored == 0  # not even tried
    else:  # without the quirk the hub believes the acknowledged write: a wrong clock trust
        assert report.clock_written and scale.clock_writes_ignored == 1


@pytest.mark.parametrize("model", [SimulatedOximeter.SILENT_BOND_MODEL, SimulatedOximeter.MODEL])
async def test_bond_required_oximeter_is_paired_up_front(radio: SimulatedRadio, model: str) -> None:
    oximeter = SimulatedOximeter(
        radio,
        address=ADDRESS,
        serial="B-0001",
        model=model,
        silent_until_bonded=True,
        idle_disconnect_s=0.2,
    )
    await oximeter.start()
    await oximeter.measure()
    report, _ = await one_session(run_pulse_oximeter_session, oximeter)
    assert report.error is None and not report.paired  # no ATT error ever asked for it
    if model == SimulatedOximeter.SILENT_BOND_MODEL:
        assert report.quirks == {Quirk.BOND_REQUIRED} and report.quirk_paired
        assert report.received == 1 and oximeter.undelivered == []
        assert await radio.is_bonded(ADDRESS)
    else:  # the trap the quirk avoids: subscribed, then silence, and the reading stays put
        assert report.received == 0 and len(oximeter.undelivered) == 1
        assert not await radio.is_bonded(ADDRESS)
