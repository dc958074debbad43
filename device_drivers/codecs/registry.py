"""Characteristic lookup: UUID normalisation, decoding by UUID (for `hemhub decode`), and
each characteristic's transport bits (what a record's identity, and so its idempotency
key, leaves out)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from pydantic import BaseModel

from device_drivers.codecs.blood_pressure import (
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from device_drivers.codecs.current_time import decode_current_time
from device_drivers.codecs.device_information import (
    DIS_CHARACTERISTICS,
    SYSTEM_ID,
    decode_dis,
    decode_system_id,
)
from device_drivers.codecs.dispenser import (
    DISPENSER_CHARACTERISTICS,
    DISPENSER_EVENT_UUID,
    DISPENSER_RACP_UUID,
    DISPENSER_STATUS_UUID,
    DISPENSER_UUID_PREFIX,
    DISPENSER_UUID_SUFFIX,
    DOSE_SCHEDULE_UUID,
    EVENT_TRANSPORT_FLAGS,
    decode_dispenser_event,
    decode_dispenser_racp,
    decode_dispenser_status,
    decode_dose_schedule,
    dispenser_event_identity,
)
from device_drivers.codecs.glucose import (
    decode_glucose_context,
    decode_glucose_feature,
    decode_glucose_measurement,
)
from device_drivers.codecs.pulse_oximeter import (
    TRANSPORT_DEVICE_SENSOR_STATUS,
    TRANSPORT_MEASUREMENT_STATUS,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
    plx_continuous_identity,
    plx_spot_check_identity,
)
from device_drivers.codecs.racp import decode_racp
from device_drivers.codecs.weight_scale import (
    decode_weight_measurement,
    decode_weight_scale_feature,
)

# The Bluetooth Base UUID: a 16-bit SIG UUID xxxx is 0000xxxx-0000-1000-8000-00805f9b34fb.
_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_SHORT_RE = re.compile(r"^(?:0x)?([0-9a-f]{4})$")
_LONG_RE = re.compile(r"^0000([0-9a-f]{4})" + re.escape(_BASE_SUFFIX) + "$")
_ANY128_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHORT32_RE = re.compile(r"^(?:0x)?0000([0-9a-f]{4})$")
# Our own dispenser service (docs/dispenser-gatt.md): one fixed 128-bit base.
_DISPENSER_RE = re.compile(
    "^" + re.escape(DISPENSER_UUID_PREFIX) + "[0-9a-f]{4}" + re.escape(DISPENSER_UUID_SUFFIX) + "$"
)


def normalize_uuid(text: str) -> str:
    """A SIG UUID as 4 upper-case hex digits: "2a35", "0x2A35", "00002a35", the 128-bit form.

    A UUID of our dispenser service (base `48454d48-xxxx-4d45-4449-53504e535201`) is
    returned whole, in lower case. Only the format is checked here; whether a codec
    exists is `decode_characteristic`'s business. Anything else (other vendor 128-bit
    UUIDs, garbage) raises ValueError.
    """
    if not isinstance(text, str):
        raise ValueError(f"a UUID must be text, not {type(text).__name__}")
    t = text.strip().lower()
    for pattern in (_SHORT_RE, _SHORT32_RE, _LONG_RE):
        m = pattern.match(t)
        if m:
            return m.group(1).upper()
    if _DISPENSER_RE.match(t):
        return t
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
    "2A23": "System ID",
    "2A9D": "Weight Measurement",
    "2A9E": "Weight Scale Feature",
    "2A5E": "PLX Spot-Check Measurement",
    "2A5F": "PLX Continuous Measurement",
    "2A60": "PLX Features",
    "2A18": "Glucose Measurement",
    "2A34": "Glucose Measurement Context",
    "2A51": "Glucose Feature",
    "2A52": "Record Access Control Point",
    **DISPENSER_CHARACTERISTICS,
}

_DECODERS: dict[str, Decoder] = {
    "2A35": decode_blood_pressure_measurement,
    "2A36": decode_intermediate_cuff_pressure,
    "2A49": decode_blood_pressure_feature,
    "2A2B": decode_current_time,
    **{uuid: partial(decode_dis, uuid) for uuid in DIS_CHARACTERISTICS},
    SYSTEM_ID: decode_system_id,
    "2A9D": decode_weight_measurement,
    "2A9E": decode_weight_scale_feature,
    "2A5E": decode_plx_spot_check,
    "2A5F": decode_plx_continuous,
    "2A60": decode_plx_features,
    "2A18": decode_glucose_measurement,
    "2A34": decode_glucose_context,
    "2A51": decode_glucose_feature,
    "2A52": decode_racp,
    DISPENSER_EVENT_UUID: decode_dispenser_event,
    DOSE_SCHEDULE_UUID: decode_dose_schedule,
    DISPENSER_STATUS_UUID: decode_dispenser_status,
    DISPENSER_RACP_UUID: decode_dispenser_racp,
}


@dataclass(frozen=True)
class TransportBits:
    """The bits of a characteristic's value that say how a record travelled (live or
    from storage) or what the device was doing as it sent it, not what the record is.

    `names` name them (docs, `hemhub decode`); `identity` returns the value with them
    cleared (None: the characteristic has none, its value is its identity).
    """

    names: tuple[str, ...] = ()
    identity: Callable[[bytes], bytes] | None = None


_NONE = TransportBits()

#: Every characteristic with a codec, checked for transport bits (docs/devices.md, "What
#: identifies a record"). Records first; the others are never stored as readings.
_TRANSPORT_BITS: dict[str, TransportBits] = {
    # Blood pressure: flags and measurement status describe the measurement itself.
    "2A35": _NONE,
    "2A36": _NONE,
    "2A49": _NONE,
    # Weight scale: unit, timestamp, user, BMI/height flags: the record's own content.
    "2A9D": _NONE,
    "2A9E": _NONE,
    # Pulse oximeter: "from storage" and the "... ongoing" states of the two statuses.
    "2A5E": TransportBits(
        (*TRANSPORT_MEASUREMENT_STATUS, *TRANSPORT_DEVICE_SENSOR_STATUS), plx_spot_check_identity
    ),
    "2A5F": TransportBits(
        (*TRANSPORT_MEASUREMENT_STATUS, *TRANSPORT_DEVICE_SENSOR_STATUS), plx_continuous_identity
    ),
    "2A60": _NONE,
    # Glucose: records are only ever sent from storage (RACP); no flag says how.
    "2A18": _NONE,
    "2A34": _NONE,
    "2A51": _NONE,
    "2A52": _NONE,
    # Dispenser: flag bit 2 "sent from storage" (docs/dispenser-gatt.md).
    DISPENSER_EVENT_UUID: TransportBits(tuple(EVENT_TRANSPORT_FLAGS), dispenser_event_identity),
    DOSE_SCHEDULE_UUID: _NONE,
    DISPENSER_STATUS_UUID: _NONE,
    DISPENSER_RACP_UUID: _NONE,
    # Current Time and Device Information: not records.
    "2A2B": _NONE,
    **{uuid: _NONE for uuid in DIS_CHARACTERISTICS},
    SYSTEM_ID: _NONE,
}


def transport_bits(characteristic: str) -> tuple[str, ...]:
    """The names of a characteristic's transport bits (see `TransportBits`)."""
    return _transport_bits(characteristic).names


def record_identity(characteristic: str, data: bytes) -> bytes:
    """A record's bytes without its transport bits: the same record sent live and again
    from storage, or while the device was busy and later when idle, has one identity.

    Unknown characteristic: ValueError; a malformed record of a characteristic that has
    transport bits: DecodeError.
    """
    identity = _transport_bits(characteristic).identity
    return data if identity is None else identity(data)


def _transport_bits(characteristic: str) -> TransportBits:
    uuid = normalize_uuid(characteristic)
    found = _TRANSPORT_BITS.get(uuid)
    if found is None:
        raise ValueError(f"no codec for characteristic {uuid}")
    return found


def supported_characteristics() -> list[tuple[str, str]]:
    """(UUID, human name) of every characteristic with a codec, sorted by UUID.

    SIG characteristics come as 4 upper-case hex digits, ours as the full 128-bit UUID.
    """
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
