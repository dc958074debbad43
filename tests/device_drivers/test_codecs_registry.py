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
        "2A35", "2A36", "2A49", "2A2B", "2A29", "2A24", "2A25", "2A27", "2A26", "2A28",
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
        decode_characteristic("2A9D", b"\x00")
    assert not isinstance(info.value, DecodeError)
    assert "2A9D" in str(info.value) and "2A35 (Blood Pressure Measurement)" in str(info.value)


def test_bad_payload_is_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_characteristic("2A35", b"\x00\x01")
