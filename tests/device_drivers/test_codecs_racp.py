"""Record Access Control Point 2A52: requests, indications and the errors a server answers."""

from __future__ import annotations

import pickle
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from device_drivers.codecs import (
    DecodeError,
    EncodeError,
    RacpFilterType,
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpRequestError,
    RacpResponse,
    RacpResponseCode,
    abort_operation,
    decode_racp,
    decode_racp_indication,
    decode_racp_request,
    delete_all_records,
    delete_records_in_range,
    delete_records_up_to,
    encode_racp,
    encode_racp_number_of_records,
    encode_racp_request,
    encode_racp_response,
    report_all_records,
    report_number_of_records,
    report_records_from,
)


@pytest.mark.parametrize(
    ("request_", "hex_"),
    [
        (report_all_records(), "0101"),
        (report_records_from(3), "0103 01 0300"),
        (report_number_of_records(), "0401"),
        (report_number_of_records(from_sequence=0x1234), "0403 01 3412"),
        (delete_records_up_to(9), "0202 01 0900"),
        (delete_records_in_range(0x8000, 0xFFFF), "0204 01 0080 ffff"),
        (delete_all_records(), "0201"),
        (abort_operation(), "0300"),
    ],
)
def test_builders(request_: RacpRequest, hex_: str) -> None:
    data = bytes.fromhex(hex_)
    assert encode_racp_request(request_) == data
    assert decode_racp_request(data) == request_
    assert decode_racp(data) == request_


def test_32_bit_sequence_numbers() -> None:
    assert encode_racp_request(report_records_from(0x01020304), sequence_size=4) == bytes.fromhex(
        "0103 01 04030201"
    )
    with pytest.raises(EncodeError):
        encode_racp_request(report_records_from(0x10000))


def test_range_first_last_and_time_filter() -> None:
    data = bytes.fromhex("0104 01 0500 0a00")
    assert decode_racp_request(data) == RacpRequest(
        opcode=RacpOpcode.REPORT_STORED_RECORDS,
        operator=RacpOperator.WITHIN_RANGE,
        filter_type=RacpFilterType.SEQUENCE_NUMBER,
        low=5,
        high=10,
    )
    assert decode_racp_request(bytes.fromhex("0105")).operator is RacpOperator.FIRST_RECORD
    assert decode_racp_request(bytes.fromhex("0106")).operator is RacpOperator.LAST_RECORD
    timed = bytes.fromhex("0103 02 e9070102081e00")
    r = decode_racp_request(timed)
    assert (r.filter_type, r.low) == (RacpFilterType.USER_FACING_TIME, datetime(2025, 1, 2, 8, 30))
    assert encode_racp_request(r) == timed


def test_indications() -> None:
    assert decode_racp_indication(bytes.fromhex("0500 0a00")) == RacpNumberOfRecords(count=10)
    ok = decode_racp_indication(bytes.fromhex("0600 01 01"))
    assert ok == RacpResponse(request_opcode=1, response_code=RacpResponseCode.SUCCESS)
    assert ok.ok
    none = decode_racp_indication(bytes.fromhex("0600 01 06"))
    assert none.response_code is RacpResponseCode.NO_RECORDS_FOUND and none.ok
    bad = decode_racp(bytes.fromhex("0600 02 05"))
    assert isinstance(bad, RacpResponse) and not bad.ok
    assert encode_racp_number_of_records(10) == bytes.fromhex("0500 0a00")
    assert encode_racp_response(1, RacpResponseCode.SUCCESS) == bytes.fromhex("0600 0101")


def test_response_code_values() -> None:
    assert {c.name: c.value for c in RacpResponseCode} == {
        "SUCCESS": 1,
        "OPCODE_NOT_SUPPORTED": 2,
        "INVALID_OPERATOR": 3,
        "OPERATOR_NOT_SUPPORTED": 4,
        "INVALID_OPERAND": 5,
        "NO_RECORDS_FOUND": 6,
        "ABORT_UNSUCCESSFUL": 7,
        "PROCEDURE_NOT_COMPLETED": 8,
        "OPERAND_NOT_SUPPORTED": 9,
    }


@pytest.mark.parametrize(
    ("hex_", "offset", "code", "opcode"),
    [
        ("", 0, RacpResponseCode.OPCODE_NOT_SUPPORTED, 0),
        ("00", 0, RacpResponseCode.OPCODE_NOT_SUPPORTED, 0),
        ("07", 0, RacpResponseCode.OPCODE_NOT_SUPPORTED, 7),
        ("01", 1, RacpResponseCode.INVALID_OPERATOR, 1),
        ("0100", 1, RacpResponseCode.INVALID_OPERATOR, 1),
        ("0301", 1, RacpResponseCode.INVALID_OPERATOR, 3),
        ("0107", 1, RacpResponseCode.OPERATOR_NOT_SUPPORTED, 1),
        ("0103", 2, RacpResponseCode.INVALID_OPERAND, 1),
        ("0103 03 0100", 2, RacpResponseCode.OPERAND_NOT_SUPPORTED, 1),
        ("0103 01 05", 3, RacpResponseCode.INVALID_OPERAND, 1),
        ("0104 01 0500 01", 5, RacpResponseCode.INVALID_OPERAND, 1),
        ("0104 01 0a00 0500", 5, RacpResponseCode.INVALID_OPERAND, 1),
        ("0101 00", 2, RacpResponseCode.INVALID_OPERAND, 1),
        ("0202 01 0900 00", 5, RacpResponseCode.INVALID_OPERAND, 2),
        ("0103 02 00000000000000", 3, RacpResponseCode.INVALID_OPERAND, 1),
        ("0103 02 e9070d02081e00", 5, RacpResponseCode.INVALID_OPERAND, 1),
    ],
)
def test_request_errors_carry_the_response_code(
    hex_: str, offset: int, code: RacpResponseCode, opcode: int
) -> None:
    with pytest.raises(RacpRequestError) as info:
        decode_racp_request(bytes.fromhex(hex_))
    err = info.value
    assert isinstance(err, DecodeError)
    assert (err.characteristic, err.offset, err.response_code, err.request_opcode) == (
        "2A52",
        offset,
        code,
        opcode,
    )
    again = pickle.loads(pickle.dumps(err))
    assert (again.offset, again.response_code, again.request_opcode) == (offset, code, opcode)


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("", 0),
        ("05", 1),
        ("0501 0a00", 1),
        ("0500 0a", 2),
        ("0500 0a00 00", 4),
        ("0600 01", 3),
        ("0600 01 00", 3),
        ("0600 01 0a", 3),
        ("0600 0101 00", 4),
        ("0101", 0),
    ],
)
def test_indication_errors(hex_: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_racp_indication(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == ("2A52", offset)


def test_characteristic_label_is_configurable() -> None:
    with pytest.raises(DecodeError) as info:
        decode_racp(b"\x01", characteristic="my-racp")
    assert str(info.value).startswith("my-racp at byte 1:")


@pytest.mark.parametrize(
    "fields",
    [
        {"opcode": RacpOpcode.RESPONSE_CODE, "operator": RacpOperator.NULL},
        {"opcode": RacpOpcode.ABORT_OPERATION, "operator": RacpOperator.ALL_RECORDS},
        {"opcode": RacpOpcode.REPORT_STORED_RECORDS, "operator": RacpOperator.NULL},
        {
            "opcode": RacpOpcode.REPORT_STORED_RECORDS,
            "operator": RacpOperator.GREATER_THAN_OR_EQUAL,
        },
        {
            "opcode": RacpOpcode.REPORT_STORED_RECORDS,
            "operator": RacpOperator.ALL_RECORDS,
            "filter_type": RacpFilterType.SEQUENCE_NUMBER,
            "low": 1,
        },
        {
            "opcode": RacpOpcode.REPORT_STORED_RECORDS,
            "operator": RacpOperator.WITHIN_RANGE,
            "filter_type": RacpFilterType.SEQUENCE_NUMBER,
            "low": 9,
            "high": 1,
        },
        {
            "opcode": RacpOpcode.REPORT_STORED_RECORDS,
            "operator": RacpOperator.GREATER_THAN_OR_EQUAL,
            "filter_type": RacpFilterType.USER_FACING_TIME,
            "low": 1,
        },
    ],
)
def test_inconsistent_requests_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RacpRequest.model_validate(fields)


# --- properties ----------------------------------------------------------------------------


@st.composite
def requests(draw: st.DrawFn, sequence_size: int = 2) -> RacpRequest:
    opcode = draw(st.sampled_from([1, 2, 3, 4]))
    if opcode == 3:
        return abort_operation()
    operator = draw(st.sampled_from([1, 2, 3, 4, 5, 6]))
    fields: dict[str, object] = {"opcode": opcode, "operator": operator}
    if operator in (2, 3, 4):
        seq = st.integers(0, (1 << (8 * sequence_size)) - 1)
        fields["filter_type"] = RacpFilterType.SEQUENCE_NUMBER
        low, high = sorted((draw(seq), draw(seq)))
        if operator in (3, 4):
            fields["low"] = low
        if operator in (2, 4):
            fields["high"] = high
    return RacpRequest.model_validate(fields)


@given(requests())
def test_request_identity(r: RacpRequest) -> None:
    assert decode_racp(encode_racp(r)) == r


@given(requests(sequence_size=4))
def test_request_identity_32_bit(r: RacpRequest) -> None:
    assert decode_racp(encode_racp(r, sequence_size=4), sequence_size=4) == r


@given(
    st.builds(RacpNumberOfRecords, count=st.integers(0, 0xFFFF))
    | st.builds(
        RacpResponse,
        request_opcode=st.integers(0, 255),
        response_code=st.sampled_from(list(RacpResponseCode)),
    )
)
def test_indication_identity(m: RacpNumberOfRecords | RacpResponse) -> None:
    assert decode_racp(encode_racp(m)) == m


@given(st.binary(max_size=12))
def test_arbitrary_requests_give_a_response_code(data: bytes) -> None:
    try:
        decode_racp_request(data)
    except RacpRequestError as err:
        assert err.response_code is not RacpResponseCode.SUCCESS
        assert 0 <= err.offset <= len(data)
