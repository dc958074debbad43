"""Device Information strings (0x180A)."""

from __future__ import annotations

import pytest

from device_drivers.codecs import DIS_CHARACTERISTICS, DecodeError, decode_dis, decode_dis_string


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
