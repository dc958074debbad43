"""Dispenser Control Point (`48454d48-0006-…`, write + indicate): the data reset.

Part of the hemhub Medication Dispenser Service (docs/dispenser-gatt.md, "Dispenser
Control Point"). Requests (hub -> device):

    opcode u8 | operand

- 0x01 data reset, operand the 4 ASCII bytes "WIPE" (`57 49 50 45`): erase the event
  log, the dose schedule and every bond, and restart sequence numbers at 1. The fixed
  operand guards against a stray or corrupted write erasing a resident's log.

Responses (device -> hub, indicated): `80 <request opcode u8> <result u8>`, result 1
success, 2 opcode not supported, 3 invalid operand, 4 operation failed, 5 not permitted
(e.g. the link is not encrypted by a bond). After a successful data reset the device
indicates the response first, then erases and drops the link.

Pure functions, no I/O; errors name the characteristic by its 128-bit UUID.
"""

from __future__ import annotations

import enum

from device_drivers.codecs.common import Frozen
from device_drivers.codecs.dispenser import dispenser_uuid
from device_drivers.codecs.errors import DecodeError
from device_drivers.codecs.ieee11073 import ByteReader

DISPENSER_CONTROL_POINT_UUID = dispenser_uuid(0x0006)

#: The operand a data reset must carry, ASCII "WIPE".
DATA_RESET_CONFIRMATION = b"WIPE"
RESPONSE_OPCODE = 0x80


class DispenserControlOpcode(enum.IntEnum):
    DATA_RESET = 0x01


class DispenserControlResult(enum.IntEnum):
    SUCCESS = 1
    OPCODE_NOT_SUPPORTED = 2
    INVALID_OPERAND = 3
    OPERATION_FAILED = 4
    NOT_PERMITTED = 5


class DispenserControlResponse(Frozen):
    request_opcode: int
    result: DispenserControlResult

    @property
    def ok(self) -> bool:
        return self.result is DispenserControlResult.SUCCESS


class DispenserControlRequestError(DecodeError):
    """A request a device refuses, with the result it indicates back."""

    def __init__(self, message: str, request_opcode: int, result: DispenserControlResult) -> None:
        super().__init__(DISPENSER_CONTROL_POINT_UUID, 0, message)
        self.request_opcode = request_opcode
        self.result = result

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.request_opcode, self.result))


def encode_data_reset() -> bytes:
    """The request a hub writes to reset a dispenser: `01 57 49 50 45`."""
    return bytes((DispenserControlOpcode.DATA_RESET,)) + DATA_RESET_CONFIRMATION


def decode_control_request(data: bytes) -> DispenserControlOpcode:
    """The request a device received (server side); raises
    `DispenserControlRequestError` with the result to indicate when it is refused."""
    if not data:
        raise DispenserControlRequestError(
            "empty request", 0, DispenserControlResult.OPCODE_NOT_SUPPORTED
        )
    try:
        opcode = DispenserControlOpcode(data[0])
    except ValueError:
        raise DispenserControlRequestError(
            f"opcode 0x{data[0]:02X} is not supported",
            data[0],
            DispenserControlResult.OPCODE_NOT_SUPPORTED,
        ) from None
    if data[1:] != DATA_RESET_CONFIRMATION:
        raise DispenserControlRequestError(
            "a data reset must carry the operand 'WIPE' (57 49 50 45)",
            opcode,
            DispenserControlResult.INVALID_OPERAND,
        )
    return opcode


def encode_control_response(request_opcode: int, result: DispenserControlResult) -> bytes:
    """The indication `80 <request opcode> <result>` (server side)."""
    return bytes((RESPONSE_OPCODE, request_opcode & 0xFF, result))


def decode_control_response(data: bytes) -> DispenserControlResponse:
    r = ByteReader(data, DISPENSER_CONTROL_POINT_UUID)
    opcode = r.uint(1, "response opcode")
    if opcode != RESPONSE_OPCODE:
        raise r.error(f"opcode 0x{opcode:02X} is not a response (0x80)", 0)
    request_opcode = r.uint(1, "request opcode")
    at = r.offset
    code = r.uint(1, "result")
    try:
        result = DispenserControlResult(code)
    except ValueError:
        raise r.error(f"result {code} is not defined", at) from None
    r.finish()
    return DispenserControlResponse(request_opcode=request_opcode, result=result)


__all__ = [
    "DATA_RESET_CONFIRMATION",
    "DISPENSER_CONTROL_POINT_UUID",
    "DispenserControlOpcode",
    "DispenserControlRequestError",
    "DispenserControlResponse",
    "DispenserControlResult",
    "decode_control_request",
    "decode_control_response",
    "encode_control_response",
    "encode_data_reset",
]
