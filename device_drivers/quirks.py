"""Per-model quirks: known deviations of a device model from its Bluetooth profile.

A driver reads Device Information first, looks the (manufacturer, model) pair up in
`QUIRKS` and adapts the session: fix the bytes of a characteristic before decoding
(`apply_byte_quirks`, pure and sans-I/O), leave the clock alone and measure its offset,
or pair before subscribing. An unknown model gets no quirk: the profile as specified.

Add a row when a device in the field is seen to deviate, with a why-comment naming the
observation; keep the fix here rather than in the codecs, which decode the spec.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from device_drivers.codecs.blood_pressure import (
    BLOOD_PRESSURE_MEASUREMENT,
    FLAG_PULSE,
    FLAG_STATUS,
    FLAG_TIMESTAMP,
    FLAG_USER_ID,
    INTERMEDIATE_CUFF_PRESSURE,
)
from hemhub.contract import DeviceIdentity


class Quirk(enum.StrEnum):
    #: The cuff sends its 2-byte measurement status where the pulse SFLOAT belongs and
    #: the pulse where the status belongs (firmware writes the optional fields in the
    #: wrong order). Decoded as is, the pulse is garbage and the status has reserved bits
    #: set, so the reading is rejected or, worse, shows a wrong pulse. Fixed by swapping
    #: the two fields back before decoding (`apply_byte_quirks`).
    SWAPPED_PULSE_AND_STATUS = "swapped_pulse_and_status"
    #: The device acknowledges a Current Time write but does not change its clock. Trusting
    #: the acknowledgement would mark its readings "clock set by hub" while the clock is
    #: off; the driver does not write and records the measured offset instead.
    CLOCK_NOT_SETTABLE = "clock_not_settable"
    #: The device sends measurements only over an encrypted (bonded) link but does not say
    #: so: the CCCD write succeeds without an ATT security error and then nothing arrives.
    #: The generic "pair on insufficient encryption" rule never fires, so pair up front.
    BOND_REQUIRED = "bond_required"


#: Manufacturer of every simulated device (see `device_drivers.simulation`).
SIMULATED_MANUFACTURER = "Hemhub Simulated Devices"
#: Simulated models that exhibit one quirk each, so that tests exercise them end to end.
SIMULATED_SWAPPED_CUFF_MODEL = "BPM-SIM-2Q"
SIMULATED_FIXED_CLOCK_SCALE_MODEL = "WS-SIM-2C"
SIMULATED_SILENT_BOND_OXIMETER_MODEL = "PLX-SIM-2B"


def normalise(text: str | None) -> str:
    """Case- and whitespace-insensitive form of a Device Information string."""
    return " ".join((text or "").split()).casefold()


def _key(manufacturer: str, model: str) -> tuple[str, str]:
    return normalise(manufacturer), normalise(model)


#: (manufacturer, model) as read from Device Information, normalised -> quirks.
QUIRKS: dict[tuple[str, str], frozenset[Quirk]] = {
    # Simulated cuff whose firmware writes pulse and status in swapped positions.
    _key(SIMULATED_MANUFACTURER, SIMULATED_SWAPPED_CUFF_MODEL): frozenset(
        {Quirk.SWAPPED_PULSE_AND_STATUS}
    ),
    # Simulated scale that acknowledges Current Time writes and ignores them.
    _key(SIMULATED_MANUFACTURER, SIMULATED_FIXED_CLOCK_SCALE_MODEL): frozenset(
        {Quirk.CLOCK_NOT_SETTABLE}
    ),
    # Simulated oximeter that indicates nothing to an unbonded central, silently.
    _key(SIMULATED_MANUFACTURER, SIMULATED_SILENT_BOND_OXIMETER_MODEL): frozenset(
        {Quirk.BOND_REQUIRED}
    ),
}


def quirks_for(identity: DeviceIdentity) -> frozenset[Quirk]:
    """The quirks of a device's model; none when the model is unknown or was not read."""
    if not identity.manufacturer or not identity.model:
        return frozenset()
    return QUIRKS.get(_key(identity.manufacturer, identity.model), frozenset())


def _bp_pulse_and_status_slices(raw: bytes) -> tuple[slice, slice] | None:
    """Where pulse and status stand in a 2A35/2A36 payload with both, else None."""
    if not raw:
        return None
    flags = raw[0]
    if not (flags & FLAG_PULSE and flags & FLAG_STATUS):
        return None  # only one of the two: nothing to swap
    pulse_at = 1 + 3 * 2 + (7 if flags & FLAG_TIMESTAMP else 0)
    status_at = pulse_at + 2 + (1 if flags & FLAG_USER_ID else 0)
    if len(raw) < status_at + 2:
        return None  # truncated: leave it to the decoder to reject
    return slice(pulse_at, pulse_at + 2), slice(status_at, status_at + 2)


def swap_pulse_and_status(raw: bytes) -> bytes:
    """Exchange the pulse and measurement status fields of a 2A35/2A36 payload.

    Its own inverse: a quirky device's payload becomes a standard one and back. A payload
    without both fields, or too short for them, is returned unchanged.
    """
    slices = _bp_pulse_and_status_slices(raw)
    if slices is None:
        return bytes(raw)
    pulse, status = slices
    out = bytearray(raw)
    out[pulse], out[status] = raw[status], raw[pulse]
    return bytes(out)


_BLOOD_PRESSURE_CHARACTERISTICS = frozenset(
    {BLOOD_PRESSURE_MEASUREMENT, INTERMEDIATE_CUFF_PRESSURE}
)


def apply_byte_quirks(characteristic: str, raw: bytes, quirks: Iterable[Quirk]) -> bytes:
    """The payload of `characteristic` ("2A35") as the spec lays it out, given the quirks.

    Pure: no I/O, the input is not modified. Quirks that do not concern the bytes of this
    characteristic leave it unchanged.
    """
    quirk_set = frozenset(quirks)
    out = bytes(raw)
    if (
        Quirk.SWAPPED_PULSE_AND_STATUS in quirk_set
        and characteristic.upper() in _BLOOD_PRESSURE_CHARACTERISTICS
    ):
        out = swap_pulse_and_status(out)
    return out


__all__ = [
    "QUIRKS",
    "SIMULATED_FIXED_CLOCK_SCALE_MODEL",
    "SIMULATED_MANUFACTURER",
    "SIMULATED_SILENT_BOND_OXIMETER_MODEL",
    "SIMULATED_SWAPPED_CUFF_MODEL",
    "Quirk",
    "apply_byte_quirks",
    "normalise",
    "quirks_for",
    "swap_pulse_and_status",
]
