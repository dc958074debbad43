"""UUID normalisation and decoding by characteristic (behind `hemhub decode`)."""

from __future__ import annotations

import pytest

from device_drivers.codecs import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    CurrentTime,
    DecodeError,
    DeviceInformationString,
    decode_characteristic,
    normalize_uuid,
    supported_characteristics,
)


@pytest.mark.parametrize(
    "text",
    [
        "2a35",
        "2A35",
        "0x2A35",
        "0X2a35",
        " 2a35 ",
        "00002a35",
        "00002a35-0000-1000-8000-00805f9b34fb",
        "00002A35-0000-1000-8000-00805F9B34FB",
    ],
)
def test_normalize(text: str) -> None:
    assert normalize_uuid(text) == "2A35"


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("", "not a Bluetooth UUID"),
        ("2a3", "not a Bluetooth UUID"),
        ("2a355", "not a Bluetooth UUID"),
        ("zz35", "not a Bluetooth UUID"),
        ("blood pressure", "not a Bluetooth UUID"),
        ("6e400001-b5a3-f393-e0a9-e50e24dcca9e", "vendor"),
    ],
)
def test_normalize_rejects(text: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        normalize_uuid(text)


def test_normalize_rejects_non_text() -> None:
    with pytest.raises(ValueError):
        normalize_uuid(0x2A35)  # type: ignore[arg-type]


def test_supported() -> None:
    supported = supported_characteristics()
    assert ("2A35", "Blood Pressure Measurement") in supported
    assert [u for u, _ in supported] == sorted(u for u, _ in supported)
    assert {u for u, _ in supported} == {
        "2A35", "2A36", "2A49", "2A2B", "2A29", "2A24", "2A25", "2A27", "2A26", "2A28", "2A23",
        "2A9D", "2A9E", "2A5E", "2A5F", "2A60", "2A18", "2A34", "2A51", "2A52",
        "48454d48-0002-4d45-4449-53504e535201",
        "48454d48-0003-4d45-4449-53504e535201",
        "48454d48-0004-4d45-4449-53504e535201",
        "48454d48-0005-4d45-4449-53504e535201",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("uuid", "data", "model"),
    [
        ("0x2A35", bytes.fromhex("00780050005a00"), BloodPressureMeasurement),
        ("2a36", bytes.fromhex("009600ff07ff07"), BloodPressureMeasurement),
        ("2A49", bytes.fromhex("0100"), BloodPressureFeature),
        ("2A2B", bytes(10), CurrentTime),
        ("00002a29-0000-1000-8000-00805f9b34fb", b"ACME\x00", DeviceInformationString),
    ],
)
def test_dispatch(uuid: str, data: bytes, model: type) -> None:
    assert isinstance(decode_characteristic(uuid, data), model)


def test_unknown_characteristic_lists_known() -> None:
    with pytest.raises(ValueError) as info:
        decode_characteristic("2A37", b"\x00")  # Heart Rate Measurement: no codec
    assert not isinstance(info.value, DecodeError)
    assert "2A37" in str(info.value) and "2A35 (Blood Pressure Measurement)" in str(info.value)


def test_bad_payload_is_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_characteristic("2A35", b"\x00\x01")


# --- new profiles and our dispenser's 128-bit UUIDs -----------------------------------------

DISPENSER_EVENT = "48454d48-0002-4d45-4449-53504e535201"


@pytest.mark.parametrize(
    "text",
    [
        DISPENSER_EVENT,
        DISPENSER_EVENT.upper(),
        f" {DISPENSER_EVENT} ",
    ],
)
def test_normalize_dispenser_uuid(text: str) -> None:
    assert normalize_uuid(text) == DISPENSER_EVENT


def test_normalize_rejects_near_dispenser_base() -> None:
    with pytest.raises(ValueError, match="vendor"):
        normalize_uuid("48454d48-0002-4d45-4449-53504e535202")


@pytest.mark.parametrize(
    ("uuid", "data", "model"),
    [
        ("2A9D", bytes.fromhex("00983a"), "WeightMeasurement"),
        ("2a9e", bytes(4), "WeightScaleFeature"),
        ("2A5E", bytes.fromhex("00 6100 4800"), "PlxSpotCheckMeasurement"),
        ("2A5F", bytes.fromhex("00 6100 4800"), "PlxContinuousMeasurement"),
        ("2A60", bytes(2), "PlxFeatures"),
        ("2A18", bytes.fromhex("00 0100 e9070102081e00"), "GlucoseMeasurement"),
        ("2A34", bytes.fromhex("00 0100"), "GlucoseContext"),
        ("2A51", bytes(2), "GlucoseFeature"),
        ("2A52", bytes.fromhex("0101"), "RacpRequest"),
        ("2A52", bytes.fromhex("06000101"), "RacpResponse"),
        ("2A52", bytes.fromhex("05000300"), "RacpNumberOfRecords"),
        (
            DISPENSER_EVENT,
            bytes.fromhex("00 01000000 0a e9070102081e00 0000 00"),
            "DispenserEvent",
        ),
        ("48454d48-0003-4d45-4449-53504e535201", bytes.fromhex("0f00 3c00 00"), "DoseSchedule"),
        ("48454d48-0004-4d45-4449-53504e535201", bytes(9), "DispenserStatus"),
        ("48454d48-0005-4d45-4449-53504e535201", bytes.fromhex("0101"), "RacpRequest"),
    ],
)
def test_dispatch_new_profiles(uuid: str, data: bytes, model: str) -> None:
    assert type(decode_characteristic(uuid, data)).__name__ == model


def test_dispenser_errors_name_the_full_uuid() -> None:
    with pytest.raises(DecodeError) as info:
        decode_characteristic(DISPENSER_EVENT.upper(), b"\x00")
    assert info.value.characteristic == DISPENSER_EVENT
    assert info.value.offset == 1


def test_service_uuid_has_no_codec() -> None:
    with pytest.raises(ValueError, match="no codec"):
        decode_characteristic("48454d48-0001-4d45-4449-53504e535201", b"")
