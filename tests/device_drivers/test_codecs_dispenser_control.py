"""Dispenser Control Point (docs/dispenser-gatt.md): the data reset, bytes alone; and the
RACP "delete all stored records" a glucose meter is wiped with."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.codecs import DecodeError, RacpResponseCode, decode_racp_indication
from device_drivers.codecs.dispenser import decode_dispenser_racp, encode_dispenser_racp
from device_drivers.codecs.dispenser_control import (
    DISPENSER_CONTROL_POINT_UUID,
    DispenserControlOpcode,
    DispenserControlRequestError,
    DispenserControlResponse,
    DispenserControlResult,
    decode_control_request,
    decode_control_response,
    encode_control_response,
    encode_data_reset,
)
from device_drivers.codecs.racp import delete_all_records, encode_racp_request


def test_the_control_point_is_the_services_sixth_characteristic() -> None:
    assert DISPENSER_CONTROL_POINT_UUID == "48454d48-0006-4d45-4449-53504e535201"


def test_data_reset_request_bytes() -> None:
    assert encode_data_reset() == bytes.fromhex("01 57495045")
    assert decode_control_request(bytes.fromhex("01 57495045")) is DispenserControlOpcode.DATA_RESET


@pytest.mark.parametrize(
    ("hex_", "opcode", "result"),
    [
        ("", 0, DispenserControlResult.OPCODE_NOT_SUPPORTED),
        ("02 57495045", 2, DispenserControlResult.OPCODE_NOT_SUPPORTED),
        ("01", 1, DispenserControlResult.INVALID_OPERAND),
        ("01 77697065", 1, DispenserControlResult.INVALID_OPERAND),  # "wipe": case matters
        ("01 5749504500", 1, DispenserControlResult.INVALID_OPERAND),
    ],
)
def test_refused_requests_carry_the_result_to_indicate(
    hex_: str, opcode: int, result: DispenserControlResult
) -> None:
    with pytest.raises(DispenserControlRequestError) as info:
        decode_control_request(bytes.fromhex(hex_))
    assert (info.value.request_opcode, info.value.result) == (opcode, result)
    assert info.value.characteristic == DISPENSER_CONTROL_POINT_UUID
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.request_opcode, again.result) == (opcode, result)


@pytest.mark.parametrize(
    ("hex_", "response"),
    [
        ("80 01 01", DispenserControlResponse(request_opcode=1, result=DispenserControlResult(1))),
        ("80 01 05", DispenserControlResponse(request_opcode=1, result=DispenserControlResult(5))),
        ("80 07 02", DispenserControlResponse(request_opcode=7, result=DispenserControlResult(2))),
    ],
)
def test_responses(hex_: str, response: DispenserControlResponse) -> None:
    data = bytes.fromhex(hex_)
    assert decode_control_response(data) == response
    assert encode_control_response(response.request_opcode, response.result) == data
    assert response.ok == (response.result is DispenserControlResult.SUCCESS)


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [("", 0), ("81 01 01", 0), ("80 01", 2), ("80 01 06", 2), ("80 01 00", 2), ("80 01 01 00", 3)],
)
def test_bad_responses_name_the_byte(hex_: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_control_response(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == (DISPENSER_CONTROL_POINT_UUID, offset)


@given(st.binary(max_size=8))
def test_any_request_is_decoded_or_refused_with_a_result(data: bytes) -> None:
    try:
        assert decode_control_request(data) is DispenserControlOpcode.DATA_RESET
    except DispenserControlRequestError as exc:
        assert exc.result in DispenserControlResult


def test_racp_delete_all_stored_records_is_opcode_2_operator_1() -> None:
    # Glucose meters (16-bit sequences) and the dispenser's RACP (32-bit) alike.
    assert encode_racp_request(delete_all_records()) == bytes.fromhex("0201")
    assert encode_dispenser_racp(delete_all_records()) == bytes.fromhex("0201")
    assert decode_dispenser_racp(bytes.fromhex("0201")) == delete_all_records()
    answer = decode_racp_indication(bytes.fromhex("06 00 02 01"))
    assert (answer.request_opcode, answer.response_code) == (2, RacpResponseCode.SUCCESS)
    empty = decode_racp_indication(bytes.fromhex("06 00 02 06"))
    assert empty.response_code is RacpResponseCode.NO_RECORDS_FOUND and empty.ok
