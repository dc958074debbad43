"""Errors of the characteristic codecs.

A decoder raises `DecodeError` and nothing else for any payload a device may send:
the hub logs it with the raw bytes and drops that one value, never the connection.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """A payload that does not match the characteristic's layout.

    `characteristic` is the 16-bit UUID as 4 upper-case hex digits, `offset` the byte
    where decoding failed (the start of the field that is short, invalid or unexpected).
    """

    characteristic: str
    offset: int
    reason: str

    def __init__(self, characteristic: str, offset: int, reason: str) -> None:
        # args keep all three values so the error survives pickling (multiprocessing, logs).
        super().__init__(characteristic, offset, reason)
        self.characteristic = characteristic
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.characteristic} at byte {self.offset}: {self.reason}"


class EncodeError(ValueError):
    """A value that the characteristic's wire format cannot carry (e.g. not exact in SFLOAT)."""
