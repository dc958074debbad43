"""Record Access Control Point 0x2A52 (write + indicate): fetch, count and delete stored records.

Used by glucose meters, pulse oximeters with spot-check storage and (with 32-bit sequence
numbers) by our medication dispenser service. Layout: opcode u8 | operator u8 | operand.

Requests (hub -> device): 1 report stored records, 2 delete stored records, 3 abort,
4 report number of stored records. Operators: 1 all, 2 <=, 3 >=, 4 within range
(inclusive), 5 first, 6 last; with 2-4 the operand is a filter type (1 sequence number,
2 user facing time) and the value(s). Indications (device -> hub): 5 number of stored
records (operator 0, count u16), 6 response code (operator 0, request opcode u8, code u8).

The procedure: enable notifications on the measurement and indications on the RACP, write
`01 03 01 <seq>` (report records with sequence >= seq), receive the records, then the
response code (1 success, 6 no records found). Delete (`02 02 01 <seq>`, <= seq) only
after the records are safe in the hub's own store.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import Field, model_validator

from device_drivers.codecs.common import Frozen
from device_drivers.codecs.errors import DecodeError, EncodeError
from device_drivers.codecs.ieee11073 import ByteReader, encode_date_time

RECORD_ACCESS_CONTROL_POINT = "2A52"


class RacpOpcode(enum.IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


REQUEST_OPCODES = frozenset(
    {
        RacpOpcode.REPORT_STORED_RECORDS,
        RacpOpcode.DELETE_STORED_RECORDS,
        RacpOpcode.ABORT_OPERATION,
        RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)


class RacpOperator(enum.IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL = 2
    GREATER_THAN_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


_FILTERED_OPERATORS = frozenset(
    {
        RacpOperator.LESS_THAN_OR_EQUAL,
        RacpOperator.GREATER_THAN_OR_EQUAL,
        RacpOperator.WITHIN_RANGE,
    }
)


class RacpFilterType(enum.IntEnum):
    SEQUENCE_NUMBER = 1
    USER_FACING_TIME = 2


class RacpResponseCode(enum.IntEnum):
    SUCCESS = 1
    OPCODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


class RacpRequestError(DecodeError):
    """A request a RACP server cannot carry out, with the response code it must indicate.

    `request_opcode` is the opcode byte as written (0 when the payload was empty).
    """

    response_code: RacpResponseCode
    request_opcode: int

    def __init__(
        self,
        characteristic: str,
        offset: int,
        reason: str,
        response_code: RacpResponseCode = RacpResponseCode.INVALID_OPERAND,
        request_opcode: int = 0,
    ) -> None:
        super().__init__(characteristic, offset, reason)
        self.response_code = RacpResponseCode(response_code)
        self.request_opcode = request_opcode

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (
                self.characteristic,
                self.offset,
                self.reason,
                self.response_code,
                self.request_opcode,
            ),
        )


Operand = int | datetime


class RacpRequest(Frozen):
    """A RACP request. `low`/`high` are the filter bounds: `>=` uses `low`, `<=` uses
    `high`, "within range" both. They are sequence numbers (ints) or, with
    `USER_FACING_TIME`, naive device times.
    """

    opcode: RacpOpcode
    operator: RacpOperator
    filter_type: RacpFilterType | None = None
    low: Operand | None = None
    high: Operand | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RacpRequest:
        if self.opcode not in REQUEST_OPCODES:
            raise ValueError(f"{self.opcode.name} is not a request opcode")
        if self.opcode is RacpOpcode.ABORT_OPERATION:
            if self.operator is not RacpOperator.NULL:
                raise ValueError("abort takes the NULL operator")
        elif self.operator is RacpOperator.NULL:
            raise ValueError(f"{self.opcode.name} needs an operator")
        filtered = self.operator in _FILTERED_OPERATORS
        if filtered != (self.filter_type is not None):
            raise ValueError("a filter type goes with the operators <=, >= and range only")
        wants_low = self.operator in (RacpOperator.GREATER_THAN_OR_EQUAL, RacpOperator.WITHIN_RANGE)
        wants_high = self.operator in (RacpOperator.LESS_THAN_OR_EQUAL, RacpOperator.WITHIN_RANGE)
        if (self.low is not None) != wants_low or (self.high is not None) != wants_high:
            raise ValueError(
                f"operator {self.operator.name} takes low/high = {wants_low}/{wants_high}"
            )
        expected = datetime if self.filter_type is RacpFilterType.USER_FACING_TIME else int
        for bound in (self.low, self.high):
            if bound is None:
                continue
            if isinstance(bound, bool) or not isinstance(bound, expected):
                raise ValueError(f"filter {self.filter_type!r} takes {expected.__name__} bounds")
            if isinstance(bound, int) and bound < 0:
                raise ValueError("sequence numbers are not negative")
            if isinstance(bound, datetime) and bound.tzinfo is not None:
                raise ValueError("user facing times are naive device times")
        if self.low is not None and self.high is not None and self.low > self.high:  # type: ignore[operator]
            raise ValueError("range low is after high")
        return self


class RacpNumberOfRecords(Frozen):
    """Indication: the number of stored records that matched (opcode 5)."""

    count: Annotated[int, Field(ge=0, le=0xFFFF)]


class RacpResponse(Frozen):
    """Indication: the end of a procedure (opcode 6) and how it went."""

    request_opcode: Annotated[int, Field(ge=0, le=255)]
    response_code: RacpResponseCode

    @property
    def ok(self) -> bool:
        """Success, or "no records found" (which is not a failure for a fetch or count)."""
        return self.response_code in (
            RacpResponseCode.SUCCESS,
            RacpResponseCode.NO_RECORDS_FOUND,
        )


RacpMessage = RacpRequest | RacpNumberOfRecords | RacpResponse


# --- builders (hub side) -----------------------------------------------------------------


def report_all_records() -> RacpRequest:
    return RacpRequest(opcode=RacpOpcode.REPORT_STORED_RECORDS, operator=RacpOperator.ALL_RECORDS)


def report_records_from(sequence: int) -> RacpRequest:
    """Report the stored records with sequence number >= `sequence` (`01 03 01 <seq>`)."""
    return RacpRequest(
        opcode=RacpOpcode.REPORT_STORED_RECORDS,
        operator=RacpOperator.GREATER_THAN_OR_EQUAL,
        filter_type=RacpFilterType.SEQUENCE_NUMBER,
        low=sequence,
    )


def report_first_record() -> RacpRequest:
    """Report the oldest stored record (`01 05`)."""
    return RacpRequest(opcode=RacpOpcode.REPORT_STORED_RECORDS, operator=RacpOperator.FIRST_RECORD)


def report_last_record() -> RacpRequest:
    """Report the most recent stored record (`01 06`)."""
    return RacpRequest(opcode=RacpOpcode.REPORT_STORED_RECORDS, operator=RacpOperator.LAST_RECORD)


def report_number_of_records(from_sequence: int | None = None) -> RacpRequest:
    """Count all stored records, or those with sequence number >= `from_sequence`."""
    if from_sequence is None:
        return RacpRequest(
            opcode=RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, operator=RacpOperator.ALL_RECORDS
        )
    return RacpRequest(
        opcode=RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
        operator=RacpOperator.GREATER_THAN_OR_EQUAL,
        filter_type=RacpFilterType.SEQUENCE_NUMBER,
        low=from_sequence,
    )


def delete_records_up_to(sequence: int) -> RacpRequest:
    """Delete the stored records with sequence number <= `sequence` (after safe storage)."""
    return RacpRequest(
        opcode=RacpOpcode.DELETE_STORED_RECORDS,
        operator=RacpOperator.LESS_THAN_OR_EQUAL,
        filter_type=RacpFilterType.SEQUENCE_NUMBER,
        high=sequence,
    )


def delete_records_in_range(low: int, high: int) -> RacpRequest:
    """Delete the stored records with low <= sequence number <= high (`02 04 01 <lo> <hi>`)."""
    return RacpRequest(
        opcode=RacpOpcode.DELETE_STORED_RECORDS,
        operator=RacpOperator.WITHIN_RANGE,
        filter_type=RacpFilterType.SEQUENCE_NUMBER,
        low=low,
        high=high,
    )


def delete_all_records() -> RacpRequest:
    return RacpRequest(opcode=RacpOpcode.DELETE_STORED_RECORDS, operator=RacpOperator.ALL_RECORDS)


def abort_operation() -> RacpRequest:
    return RacpRequest(opcode=RacpOpcode.ABORT_OPERATION, operator=RacpOperator.NULL)


# --- encoding ------------------------------------------------------------------------------


def _encode_bound(value: Operand, sequence_size: int) -> bytes:
    if isinstance(value, datetime):
        return encode_date_time(value)
    if value >= 1 << (8 * sequence_size):
        raise EncodeError(f"sequence number {value} does not fit in {sequence_size} bytes")
    return value.to_bytes(sequence_size, "little")


def encode_racp_request(request: RacpRequest, *, sequence_size: int = 2) -> bytes:
    """Bytes to write to the RACP; `sequence_size` is 2 for SIG profiles, 4 for ours."""
    out = bytes((request.opcode, request.operator))
    if request.filter_type is not None:
        out += bytes((request.filter_type,))
        for bound in (request.low, request.high):
            if bound is not None:
                out += _encode_bound(bound, sequence_size)
    return out


def encode_racp_number_of_records(count: int) -> bytes:
    """Indication `05 00 <count u16>` (server side, for the simulator)."""
    RacpNumberOfRecords(count=count)
    return bytes((RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE, RacpOperator.NULL)) + (
        count.to_bytes(2, "little")
    )


def encode_racp_response(request_opcode: int, code: RacpResponseCode) -> bytes:
    """Indication `06 00 <request opcode> <response code>` (server side)."""
    r = RacpResponse(request_opcode=request_opcode, response_code=code)
    return bytes((RacpOpcode.RESPONSE_CODE, RacpOperator.NULL, r.request_opcode, r.response_code))


def encode_racp(message: RacpMessage, *, sequence_size: int = 2) -> bytes:
    """Any RACP message: a request, a number-of-records or a response-code indication."""
    if isinstance(message, RacpRequest):
        return encode_racp_request(message, sequence_size=sequence_size)
    if isinstance(message, RacpNumberOfRecords):
        return encode_racp_number_of_records(message.count)
    return encode_racp_response(message.request_opcode, message.response_code)


# --- decoding ------------------------------------------------------------------------------


def decode_racp_request(
    data: bytes,
    *,
    sequence_size: int = 2,
    characteristic: str = RECORD_ACCESS_CONTROL_POINT,
) -> RacpRequest:
    """Decode a written request (server side). Raises `RacpRequestError`, a `DecodeError`
    carrying the response code the server must indicate (opcode/operator/operand errors).
    """
    r = ByteReader(data, characteristic)

    def fail(code: RacpResponseCode, reason: str, at: int) -> RacpRequestError:
        return RacpRequestError(characteristic, at, reason, code, opcode_byte)

    opcode_byte = 0
    if not data:
        raise fail(RacpResponseCode.OPCODE_NOT_SUPPORTED, "truncated in opcode: empty", 0)
    opcode_byte = r.uint(1, "opcode")
    if opcode_byte not in REQUEST_OPCODES:
        raise fail(
            RacpResponseCode.OPCODE_NOT_SUPPORTED, f"opcode {opcode_byte} is not a request", 0
        )
    opcode = RacpOpcode(opcode_byte)
    if r.offset == len(r.data):
        raise fail(RacpResponseCode.INVALID_OPERATOR, "truncated in operator: needs 1 byte", 1)
    operator_byte = r.uint(1, "operator")
    if operator_byte > max(RacpOperator):
        raise fail(RacpResponseCode.OPERATOR_NOT_SUPPORTED, f"operator {operator_byte}", 1)
    operator = RacpOperator(operator_byte)
    if (opcode is RacpOpcode.ABORT_OPERATION) != (operator is RacpOperator.NULL):
        raise fail(
            RacpResponseCode.INVALID_OPERATOR,
            f"invalid operator {operator.name} for {opcode.name}",
            1,
        )
    filter_type = None
    low: Operand | None = None
    high: Operand | None = None
    if operator in _FILTERED_OPERATORS:
        if r.offset == len(r.data):
            raise fail(RacpResponseCode.INVALID_OPERAND, "truncated in filter type", 2)
        filter_byte = r.uint(1, "filter type")
        if filter_byte not in set(RacpFilterType):
            raise fail(RacpResponseCode.OPERAND_NOT_SUPPORTED, f"filter type {filter_byte}", 2)
        filter_type = RacpFilterType(filter_byte)

        def bound(name: str) -> Operand:
            at = r.offset
            try:
                if filter_type is RacpFilterType.USER_FACING_TIME:
                    value = r.date_time()
                    if value is None:
                        raise fail(RacpResponseCode.INVALID_OPERAND, f"{name}: unknown date", at)
                    return value
                return r.uint(sequence_size, name)
            except RacpRequestError:
                raise
            except DecodeError as exc:
                raise fail(RacpResponseCode.INVALID_OPERAND, exc.reason, exc.offset) from None

        if operator in (RacpOperator.GREATER_THAN_OR_EQUAL, RacpOperator.WITHIN_RANGE):
            low = bound("minimum")
        if operator in (RacpOperator.LESS_THAN_OR_EQUAL, RacpOperator.WITHIN_RANGE):
            at = r.offset
            high = bound("maximum")
            if low is not None and low > high:  # type: ignore[operator]
                raise fail(RacpResponseCode.INVALID_OPERAND, "range minimum above maximum", at)
    if r.offset != len(r.data):
        raise fail(
            RacpResponseCode.INVALID_OPERAND,
            f"{len(r.data) - r.offset} unexpected byte(s) after the last field",
            r.offset,
        )
    return RacpRequest(
        opcode=opcode, operator=operator, filter_type=filter_type, low=low, high=high
    )


def decode_racp_indication(
    data: bytes, *, characteristic: str = RECORD_ACCESS_CONTROL_POINT
) -> RacpNumberOfRecords | RacpResponse:
    """Decode an indicated response (hub side): opcode 5 or 6, operator NULL."""
    r = ByteReader(data, characteristic)
    opcode = r.uint(1, "opcode")
    if opcode not in (
        RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE,
        RacpOpcode.RESPONSE_CODE,
    ):
        raise r.error(f"opcode {opcode} is not a response", 0)
    operator = r.uint(1, "operator")
    if operator != RacpOperator.NULL:
        raise r.error(f"response operator must be NULL (0), got {operator}", 1)
    if opcode == RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        count = r.uint(2, "number of records")
        r.finish()
        return RacpNumberOfRecords(count=count)
    request_opcode = r.uint(1, "request opcode")
    at = r.offset
    code = r.uint(1, "response code")
    if code not in set(RacpResponseCode):
        raise r.error(f"unknown response code {code}", at)
    r.finish()
    return RacpResponse(request_opcode=request_opcode, response_code=RacpResponseCode(code))


def decode_racp(
    data: bytes,
    *,
    sequence_size: int = 2,
    characteristic: str = RECORD_ACCESS_CONTROL_POINT,
) -> RacpMessage:
    """Decode either direction by its opcode (for `hemhub decode` and logs)."""
    if data and data[0] in (
        RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE,
        RacpOpcode.RESPONSE_CODE,
    ):
        return decode_racp_indication(data, characteristic=characteristic)
    return decode_racp_request(data, sequence_size=sequence_size, characteristic=characteristic)


__all__ = [
    "RECORD_ACCESS_CONTROL_POINT",
    "RacpFilterType",
    "RacpMessage",
    "RacpNumberOfRecords",
    "RacpOpcode",
    "RacpOperator",
    "RacpRequest",
    "RacpRequestError",
    "RacpResponse",
    "RacpResponseCode",
    "abort_operation",
    "decode_racp",
    "decode_racp_indication",
    "decode_racp_request",
    "delete_all_records",
    "delete_records_in_range",
    "delete_records_up_to",
    "encode_racp",
    "encode_racp_number_of_records",
    "encode_racp_request",
    "encode_racp_response",
    "report_all_records",
    "report_first_record",
    "report_last_record",
    "report_number_of_records",
    "report_records_from",
]
