"""Device Information Service 0x180A: the identity strings a hub records with each reading."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from device_drivers.codecs.errors import DecodeError

DIS_CHARACTERISTICS: dict[str, str] = {
    "2A29": "manufacturer",
    "2A24": "model",
    "2A25": "serial",
    "2A27": "hardware",
    "2A26": "firmware",
    "2A28": "software",
}


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
