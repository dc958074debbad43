"""Device Information strings (0x180A) and System ID (0x2A23)."""

from __future__ import annotations

import pytest

from device_drivers.codecs import (
    DIS_CHARACTERISTICS,
    SYSTEM_ID,
    DecodeError,
    SystemId,
    decode_characteristic,
    decode_dis,
    decode_dis_string,
    decode_system_id,
    encode_system_id,
)


def test_characteristic_table() -> None:
    assert DIS_CHARACTERISTICS == {
        "2A29": "manufacturer",
        "2A24": "model",
        "2A25": "serial",
        "2A27": "hardware",
        "2A26": "firmware",
        "2A28": "software",
    }


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"OMRON HEALTHCARE", "OMRON HEALTHCARE"),
        (b"HEM-7600T\x00\x00\x00", "HEM-7600T"),  # NUL padding
        (b"\x00\x00A&D", "A&D"),  # leading NULs
        (b"1.2.3\x00\xff\xfe", "1.2.3"),  # garbage after the terminator
        (b"  SN 42 \r\n", "SN 42"),
        ("Bürker".encode(), "Bürker"),
        (b"", ""),
        (b"\x00\x00", ""),
    ],
)
def test_decode(data: bytes, text: str) -> None:
    assert decode_dis_string("2A29", data) == text


def test_invalid_utf8_names_the_byte() -> None:
    with pytest.raises(DecodeError) as info:
        decode_dis_string("2A25", b"\x00AB\xffC")
    assert (info.value.characteristic, info.value.offset) == ("2A25", 3)
    assert "UTF-8" in info.value.reason


def test_lower_case_uuid_and_model() -> None:
    assert decode_dis_string("2a24", b"X") == "X"
    info = decode_dis("2a26", b"v1\x00")
    assert (info.characteristic, info.field, info.value) == ("2A26", "firmware", "v1")


def test_not_a_dis_string() -> None:
    with pytest.raises(ValueError, match="2A23"):
        decode_dis_string("2A23", b"x")


# --- System ID 2A23 --------------------------------------------------------------------


def test_system_id_layout() -> None:
    # manufacturer identifier u40 0x0504030201, OUI u24 0x080706 (little-endian)
    value = decode_system_id(bytes.fromhex("0102030405060708"))
    assert value == SystemId(
        manufacturer_identifier=0x0504030201, organizationally_unique_identifier=0x080706
    )
    assert encode_system_id(value) == bytes.fromhex("0102030405060708")
    assert value.hex() == "0102030405060708"
    assert decode_system_id(bytes(8)) == SystemId(
        manufacturer_identifier=0, organizationally_unique_identifier=0
    )
    registry = decode_characteristic("2a23", bytes.fromhex("ffffffffff001b63"))
    assert registry == SystemId(
        manufacturer_identifier=(1 << 40) - 1, organizationally_unique_identifier=0x631B00
    )


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        (b"", 0, "truncated System ID: needs 8 bytes, 0 left"),
        (bytes(7), 0, "truncated System ID: needs 8 bytes, 7 left"),
        (bytes(9), 8, "1 byte(s) after the System ID"),
    ],
)
def test_system_id_wrong_length(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_system_id(data)
    assert (err.value.characteristic, err.value.offset, err.value.reason) == (
        SYSTEM_ID,
        offset,
        reason,
    )
