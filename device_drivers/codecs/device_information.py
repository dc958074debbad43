"""Device Information Service 0x180A: the identity strings a hub records with each reading,
and the System ID 0x2A23 (binary, not a string)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from device_drivers.codecs.errors import DecodeError

DIS_CHARACTERISTICS: dict[str, str] = {
    "2A29": "manufacturer",
    "2A24": "model",
    "2A25": "serial",
    "2A27": "hardware",
    "2A26": "firmware",
    "2A28": "software",
}

#: System ID: manufacturer-defined identifier u40 | organizationally unique identifier u24.
SYSTEM_ID = "2A23"
_SYSTEM_ID_LENGTH = 8


class SystemId(BaseModel):
    """System ID `2A23` (8 bytes, little-endian): a 40-bit manufacturer-defined
    identifier, then the 24-bit IEEE OUI of the manufacturer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manufacturer_identifier: Annotated[int, Field(ge=0, lt=1 << 40)]
    organizationally_unique_identifier: Annotated[int, Field(ge=0, lt=1 << 24)]

    def hex(self) -> str:
        """The value as sent, in hex (16 digits), for logs and identity records."""
        return encode_system_id(self).hex()


def decode_system_id(data: bytes) -> SystemId:
    """Decode System ID `2A23`: exactly 8 bytes, else `DecodeError`."""
    raw = bytes(data)
    if len(raw) < _SYSTEM_ID_LENGTH:
        raise DecodeError(
            SYSTEM_ID,
            0,
            f"truncated System ID: needs {_SYSTEM_ID_LENGTH} bytes, {len(raw)} left",
        )
    if len(raw) > _SYSTEM_ID_LENGTH:
        extra = len(raw) - _SYSTEM_ID_LENGTH
        raise DecodeError(SYSTEM_ID, _SYSTEM_ID_LENGTH, f"{extra} byte(s) after the System ID")
    return SystemId(
        manufacturer_identifier=int.from_bytes(raw[:5], "little"),
        organizationally_unique_identifier=int.from_bytes(raw[5:], "little"),
    )


def encode_system_id(value: SystemId) -> bytes:
    """Encode a System ID (8 bytes)."""
    return value.manufacturer_identifier.to_bytes(
        5, "little"
    ) + value.organizationally_unique_identifier.to_bytes(3, "little")


class DeviceInformationString(BaseModel):
    """One decoded DIS string, as `decode_characteristic` returns it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    characteristic: str
    field: str
    value: str


def decode_dis_string(characteristic: str, data: bytes) -> str:
    """Decode a DIS string: UTF-8, NUL padding and surrounding white space removed.

    Devices pad fixed buffers with NULs (leading or trailing) and may leave garbage after
    a C-string terminator, so the text ends at the first NUL inside it. Invalid UTF-8 is a
    `DecodeError` at the offending byte. An empty result means "not provided".
    """
    characteristic = characteristic.upper()
    if characteristic not in DIS_CHARACTERISTICS:
        known = ", ".join(sorted(DIS_CHARACTERISTICS))
        raise ValueError(f"{characteristic!r} is not a DIS string characteristic ({known})")
    raw = bytes(data)
    start = len(raw) - len(raw.lstrip(b"\x00"))
    text = raw[start:].rstrip(b"\x00")
    end = text.find(b"\x00")
    if end >= 0:
        text = text[:end]
    try:
        return text.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise DecodeError(
            characteristic, start + exc.start, f"invalid UTF-8 ({exc.reason})"
        ) from None


def decode_dis(characteristic: str, data: bytes) -> DeviceInformationString:
    """`decode_dis_string` wrapped in a model (for the registry and the CLI)."""
    value = decode_dis_string(characteristic, data)
    characteristic = characteristic.upper()
    return DeviceInformationString(
        characteristic=characteristic, field=DIS_CHARACTERISTICS[characteristic], value=value
    )
