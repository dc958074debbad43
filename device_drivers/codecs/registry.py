"""Characteristic lookup: UUID normalisation and decoding by UUID (for `hemhub decode`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from pydantic import BaseModel

from device_drivers.codecs.blood_pressure import (
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from device_drivers.codecs.current_time import decode_current_time
from device_drivers.codecs.device_information import DIS_CHARACTERISTICS, decode_dis

# The Bluetooth Base UUID: a 16-bit SIG UUID xxxx is 0000xxxx-0000-1000-8000-00805f9b34fb.
_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_SHORT_RE = re.compile(r"^(?:0x)?([0-9a-f]{4})$")
_LONG_RE = re.compile(r"^0000([0-9a-f]{4})" + re.escape(_BASE_SUFFIX) + "$")
_ANY128_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHORT32_RE = re.compile(r"^(?:0x)?0000([0-9a-f]{4})$")


def normalize_uuid(text: str) -> str:
    """A SIG UUID as 4 upper-case hex digits: "2a35", "0x2A35", "00002a35", the 128-bit form.

    Only the format is checked here; whether a codec exists is `decode_characteristic`'s
    business. Anything else (vendor 128-bit UUIDs, garbage) raises ValueError.
    """
    if not isinstance(text, str):
        raise ValueError(f"a UUID must be text, not {type(text).__name__}")
    t = text.strip().lower()
    for pattern in (_SHORT_RE, _SHORT32_RE, _LONG_RE):
        m = pattern.match(t)
        if m:
            return m.group(1).upper()
    if _ANY128_RE.match(t):
        raise ValueError(
            f"{text!r} is a 128-bit UUID outside the Bluetooth base UUID (vendor-specific), "
            "not a SIG characteristic"
        )
    raise ValueError(
        f"{text!r} is not a Bluetooth UUID; expected e.g. 2A35, 0x2A35 or 00002a35{_BASE_SUFFIX}"
    )


Decoder = Callable[[bytes], BaseModel]

_NAMES: dict[str, str] = {
    "2A35": "Blood Pressure Measurement",
    "2A36": "Intermediate Cuff Pressure",
    "2A49": "Blood Pressure Feature",
    "2A2B": "Current Time",
    "2A29": "Manufacturer Name String",
    "2A24": "Model Number String",
    "2A25": "Serial Number String",
    "2A27": "Hardware Revision String",
    "2A26": "Firmware Revision String",
    "2A28": "Software Revision String",
}

_DECODERS: dict[str, Decoder] = {
    "2A35": decode_blood_pressure_measurement,
    "2A36": decode_intermediate_cuff_pressure,
    "2A49": decode_blood_pressure_feature,
    "2A2B": decode_current_time,
    **{uuid: partial(decode_dis, uuid) for uuid in DIS_CHARACTERISTICS},
}


def supported_characteristics() -> list[tuple[str, str]]:
    """(UUID, human name) of every characteristic with a codec, sorted by UUID."""
    return sorted(_NAMES.items())


def decode_characteristic(characteristic: str, data: bytes) -> BaseModel:
    """Decode `data` as the given characteristic (any form `normalize_uuid` accepts).

    Unknown characteristic: ValueError naming the known ones. Malformed data: DecodeError.
    """
    uuid = normalize_uuid(characteristic)
    decoder = _DECODERS.get(uuid)
    if decoder is None:
        known = ", ".join(f"{u} ({n})" for u, n in supported_characteristics())
        raise ValueError(f"no codec for characteristic {uuid}; known: {known}")
    return decoder(data)
