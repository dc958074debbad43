"""A record's key comes from what it is, never from how it travelled (issue 11).

Bytes alone, per profile: the bits that say "sent from storage" or "the device was busy
sending" do not change the idempotency key; any other bit that changes what the record
says does; and a record with no transport bit set keeps the key the hub made before
transport bits were masked (so keys stored by older hubs still match).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from device_drivers.codecs.blood_pressure import (
    BloodPressureMeasurement,
    BloodPressureStatus,
    BloodPressureUnit,
    encode_blood_pressure_measurement,
)
from device_drivers.codecs.dispenser import (
    DISPENSER_EVENT_UUID,
    DispenserEvent,
    DispenserEventType,
    encode_dispenser_event,
)
from device_drivers.codecs.errors import DecodeError
from device_drivers.codecs.glucose import (
    GlucoseMeasurement,
    GlucoseSensorStatus,
    GlucoseType,
    GlucoseUnit,
    SampleLocation,
    encode_glucose_measurement,
)
from device_drivers.codecs.pulse_oximeter import (
    PlxContinuousMeasurement,
    PlxDeviceSensorStatus,
    PlxMeasurementStatus,
    PlxSpotCheckMeasurement,
    SpO2PulseRate,
    encode_plx_continuous,
    encode_plx_spot_check,
)
from device_drivers.codecs.registry import (
    decode_characteristic,
    record_identity,
    supported_characteristics,
    transport_bits,
)
from device_drivers.codecs.weight_scale import WeightMeasurement, encode_weight_measurement
from gateway.readings import idempotency_key
from hemhub.contract import DeviceIdentity

DEVICE = DeviceIdentity(
    address="C0:FF:EE:00:11:01", manufacturer="Acme", model="M-1", serial="SN-0001"
)
WHEN = datetime(2026, 3, 4, 8, 15, 30)

#: Every characteristic the hub stores as readings, with its sequence number (if any).
RECORD_CHARACTERISTICS = ("2A35", "2A9D", "2A5E", "2A5F", "2A18", DISPENSER_EVENT_UUID)

#: Which bits each profile declares as transport bits (docs/devices.md lists the same).
EXPECTED_TRANSPORT_BITS = {
    "2A35": (),
    "2A9D": (),
    "2A18": (),
    "2A5E": (
        "measurement_ongoing",
        "from_storage",
        "calibration_ongoing",
        "extended_display_update_ongoing",
        "signal_analysis_ongoing",
    ),
    "2A5F": (
        "measurement_ongoing",
        "from_storage",
        "calibration_ongoing",
        "extended_display_update_ongoing",
        "signal_analysis_ongoing",
    ),
    DISPENSER_EVENT_UUID: ("from_storage",),
}


def _plx_statuses(transport: bool) -> dict[str, Any]:
    """Statuses with a few measurement bits and, if `transport`, every transport bit."""
    measurement: dict[str, bool] = {"validated": True, "questionable_measurement": True}
    sensor: dict[str, bool] = {"low_perfusion": True}
    if transport:
        measurement |= dict.fromkeys(EXPECTED_TRANSPORT_BITS["2A5E"][:3], True)
        sensor |= dict.fromkeys(EXPECTED_TRANSPORT_BITS["2A5E"][3:], True)
    return {
        "measurement_status": PlxMeasurementStatus(**measurement),
        "device_sensor_status": PlxDeviceSensorStatus(**sensor),
    }


def _examples(characteristic: str, transport: bool) -> list[bytes]:
    """Records of the profile with every optional field, transport bits set or clear."""
    if characteristic == "2A35":
        return [
            encode_blood_pressure_measurement(
                BloodPressureMeasurement(
                    unit=BloodPressureUnit.MMHG,
                    systolic=128.0,
                    diastolic=84.0,
                    mean_arterial=99.0,
                    timestamp=WHEN,
                    pulse=71.0,
                    user_id=1,
                    status=BloodPressureStatus(irregular_pulse=True),
                )
            )
        ]
    if characteristic == "2A9D":
        return [
            encode_weight_measurement(
                WeightMeasurement(weight=81.5, timestamp=WHEN, user_id=2, bmi=25.1, height=1.8)
            )
        ]
    if characteristic == "2A18":
        return [
            encode_glucose_measurement(
                GlucoseMeasurement(
                    sequence=41,
                    base_time=WHEN,
                    time_offset_minutes=5,
                    concentration=112.0,
                    unit=GlucoseUnit.MG_DL,
                    sample_type=GlucoseType.CAPILLARY_WHOLE_BLOOD,
                    sample_location=SampleLocation.FINGER,
                    sensor_status=GlucoseSensorStatus(battery_low=True),
                    context_follows=True,
                )
            )
        ]
    if characteristic == "2A5E":
        return [
            encode_plx_spot_check(
                PlxSpotCheckMeasurement(
                    spo2=95.0,
                    pulse_rate=70.0,
                    timestamp=timestamp,
                    pulse_amplitude_index=4.0,
                    **_plx_statuses(transport),
                )
            )
            for timestamp in (WHEN, None)
        ]
    if characteristic == "2A5F":
        return [
            encode_plx_continuous(
                PlxContinuousMeasurement(
                    spo2=93.0,
                    pulse_rate=88.0,
                    fast=fast,
                    slow=slow,
                    pulse_amplitude_index=3.0,
                    **_plx_statuses(transport),
                )
            )
            for fast, slow in itertools.product(
                (None, SpO2PulseRate(spo2=92.0, pulse_rate=90.0)),
                (None, SpO2PulseRate(spo2=94.0, pulse_rate=85.0)),
            )
        ]
    assert characteristic == DISPENSER_EVENT_UUID
    return [
        encode_dispenser_event(
            DispenserEvent(
                event=DispenserEventType.DOSE_MISSED,
                sequence=300,
                time=WHEN,
                dose_id=2,
                slot=7,
                detail=60,
                clock_not_set=clock_not_set,
                from_storage=transport,
            )
        )
        for clock_not_set in (False, True)
    ]


def _sequence(characteristic: str, raw: bytes) -> int | None:
    sequence = getattr(decode_characteristic(characteristic, raw), "sequence", None)
    return sequence if isinstance(sequence, int) else None


def _key(characteristic: str, raw: bytes) -> str:
    return idempotency_key(DEVICE, characteristic, raw, _sequence(characteristic, raw))


def _without(names: tuple[str, ...]) -> Callable[[Any], Any]:
    """A model dump with the named (transport) fields removed, at any depth."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in names}
        return value

    return strip


def test_every_characteristic_with_a_codec_declares_its_transport_bits() -> None:
    for uuid, _name in supported_characteristics():
        assert isinstance(transport_bits(uuid), tuple)
    for characteristic, expected in EXPECTED_TRANSPORT_BITS.items():
        assert transport_bits(characteristic) == expected, characteristic
    with pytest.raises(ValueError, match="no codec"):
        transport_bits("2A00")


@pytest.mark.parametrize("characteristic", RECORD_CHARACTERISTICS)
def test_transport_bits_do_not_change_the_key(characteristic: str) -> None:
    live = _examples(characteristic, transport=False)
    travelled = _examples(characteristic, transport=True)
    for a, b in zip(live, travelled, strict=True):
        if transport_bits(characteristic):
            assert a != b, "the example sets transport bits"
            before, after = decode_characteristic(characteristic, b), None
            assert isinstance(before, BaseModel)
            after = decode_characteristic(characteristic, record_identity(characteristic, b))
            strip = _without(transport_bits(characteristic))
            assert strip(after.model_dump()) == strip(before.model_dump())
        assert _key(characteristic, a) == _key(characteristic, b)


@pytest.mark.parametrize("characteristic", RECORD_CHARACTERISTICS)
def test_any_other_bit_that_changes_the_record_changes_the_key(characteristic: str) -> None:
    """Every single-bit flip of every example: if what the record says (its decoded
    model without transport fields) changes, the key changes; nothing else is masked."""
    strip = _without(transport_bits(characteristic))
    checked = 0
    for raw in _examples(characteristic, False) + _examples(characteristic, True):
        model = strip(decode_characteristic(characteristic, raw).model_dump())
        key = _key(characteristic, raw)
        for bit in range(len(raw) * 8):
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            try:
                other = decode_characteristic(characteristic, bytes(flipped))
            except DecodeError:
                continue
            if strip(other.model_dump()) != model:
                checked += 1
                assert _key(characteristic, bytes(flipped)) != key, (raw.hex(), bit)
    assert checked > 0


def _key_before_masking(characteristic: str, raw: bytes, sequence: int | None) -> str:
    """The key as hubs made it before transport bits were masked (raw bytes as sent)."""
    h = hashlib.sha256()
    for part in (
        DEVICE.stable_id,
        characteristic,
        raw.hex(),
        "" if sequence is None else str(sequence),
    ):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


@pytest.mark.parametrize("characteristic", RECORD_CHARACTERISTICS)
def test_a_record_without_transport_bits_keeps_its_old_key(characteristic: str) -> None:
    for raw in _examples(characteristic, transport=False):
        sequence = _sequence(characteristic, raw)
        assert _key(characteristic, raw) == _key_before_masking(characteristic, raw, sequence)


def test_the_dispenser_example_of_the_profile_document() -> None:
    """docs/dispenser-gatt.md: "low battery, time unknown, replayed from storage" is the
    same event as its live indication (flag bit 2 clear)."""
    stored = bytes.fromhex("07010000000a000000000000000000000f00")
    live = bytes.fromhex("03010000000a000000000000000000000f00")
    assert record_identity(DISPENSER_EVENT_UUID, stored) == live
    assert _key(DISPENSER_EVENT_UUID, stored) == _key(DISPENSER_EVENT_UUID, live)


def test_a_malformed_record_has_no_identity() -> None:
    with pytest.raises(DecodeError):
        record_identity(DISPENSER_EVENT_UUID, bytes.fromhex("0701"))
    with pytest.raises(DecodeError):
        record_identity("2A5E", b"\x02\x00")
