"""Pulse Oximeter Service 0x1822: PLX Spot-Check 2A5E, PLX Continuous 2A5F, PLX Features 2A60.

Layout of 0x2A5E (little-endian):
flags u8 | SpO2 SFLOAT % | pulse rate SFLOAT /min | [Date Time 7] | [measurement status u16]
| [device and sensor status u24] | [pulse amplitude index SFLOAT %].

Layout of 0x2A5F:
flags u8 | SpO2 SFLOAT | pulse rate SFLOAT | [SpO2 fast | PR fast] | [SpO2 slow | PR slow]
| [measurement status u16] | [device and sensor status u24] | [pulse amplitude index SFLOAT].
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from device_drivers.codecs.common import (
    PULSE_RATE_RANGE,
    BitFlags,
    Frozen,
    MeasuredField,
    NaiveDatetime,
    PhysicalRange,
    check_range,
    number_or_none,
)
from device_drivers.codecs.errors import DecodeError
from device_drivers.codecs.ieee11073 import (
    ByteReader,
    Measured,
    SpecialValue,
    encode_date_time,
    encode_sfloat,
)
from hemhub.contract import Quantity

PLX_SPOT_CHECK_MEASUREMENT = "2A5E"
PLX_CONTINUOUS_MEASUREMENT = "2A5F"
PLX_FEATURES = "2A60"

# Flags of 0x2A5E.
SPOT_FLAG_TIMESTAMP = 0x01
SPOT_FLAG_MEASUREMENT_STATUS = 0x02
SPOT_FLAG_DEVICE_SENSOR_STATUS = 0x04
SPOT_FLAG_PULSE_AMPLITUDE_INDEX = 0x08
SPOT_FLAG_DEVICE_CLOCK_NOT_SET = 0x10
SPOT_FLAGS_RESERVED = 0xE0

# Flags of 0x2A5F.
CONT_FLAG_FAST = 0x01
CONT_FLAG_SLOW = 0x02
CONT_FLAG_MEASUREMENT_STATUS = 0x04
CONT_FLAG_DEVICE_SENSOR_STATUS = 0x08
CONT_FLAG_PULSE_AMPLITUDE_INDEX = 0x10
CONT_FLAGS_RESERVED = 0xE0

LOINC_SPO2 = "2708-6"  # Oxygen saturation in Arterial blood (FHIR vital signs)
LOINC_SPO2_PULSE_OX = "59408-5"  # ... by Pulse oximetry (US Core)
LOINC_PULSE = "8867-4"

#: Oxygen saturation: a fraction of the haemoglobin, in %.
SPO2_RANGE = PhysicalRange(0, 100, "%")
#: Pulse amplitude index (perfusion index), a percentage of the signal.
PAI_RANGE = PhysicalRange(0, 100, "%")

# Quantity names. The contract allows [a-z_] only, so "spo2" is spelled out.
NAME_SPO2 = "oxygen_saturation"
NAME_SPO2_PULSE_OX = "oxygen_saturation_pulse_ox"
NAME_PULSE = "pulse"


class PlxMeasurementStatus(BitFlags):
    """Measurement Status (u16). Bits 0-4 are reserved (a decoder rejects them)."""

    BITS: ClassVar[dict[str, int]] = {
        "measurement_ongoing": 1 << 5,
        "early_estimate": 1 << 6,
        "validated": 1 << 7,
        "fully_qualified": 1 << 8,
        "from_storage": 1 << 9,
        "demonstration": 1 << 10,
        "testing": 1 << 11,
        "calibration_ongoing": 1 << 12,
        "measurement_unavailable": 1 << 13,
        "questionable_measurement": 1 << 14,
        "invalid_measurement": 1 << 15,
    }
    WIDTH: ClassVar[int] = 16

    measurement_ongoing: bool = False
    early_estimate: bool = False
    validated: bool = False
    fully_qualified: bool = False
    from_storage: bool = False
    demonstration: bool = False
    testing: bool = False
    calibration_ongoing: bool = False
    measurement_unavailable: bool = False
    questionable_measurement: bool = False
    invalid_measurement: bool = False


class PlxDeviceSensorStatus(BitFlags):
    """Device and Sensor Status (u24). Bits 16-23 are reserved (a decoder rejects them)."""

    BITS: ClassVar[dict[str, int]] = {
        "extended_display_update_ongoing": 1 << 0,
        "equipment_malfunction": 1 << 1,
        "signal_processing_irregularity": 1 << 2,
        "inadequate_signal": 1 << 3,
        "poor_signal": 1 << 4,
        "low_perfusion": 1 << 5,
        "erratic_signal": 1 << 6,
        "non_pulsatile_signal": 1 << 7,
        "questionable_pulse": 1 << 8,
        "signal_analysis_ongoing": 1 << 9,
        "sensor_interference": 1 << 10,
        "sensor_unconnected_to_user": 1 << 11,
        "unknown_sensor_connected": 1 << 12,
        "sensor_displaced": 1 << 13,
        "sensor_malfunctioning": 1 << 14,
        "sensor_disconnected": 1 << 15,
    }
    WIDTH: ClassVar[int] = 24

    extended_display_update_ongoing: bool = False
    equipment_malfunction: bool = False
    signal_processing_irregularity: bool = False
    inadequate_signal: bool = False
    poor_signal: bool = False
    low_perfusion: bool = False
    erratic_signal: bool = False
    non_pulsatile_signal: bool = False
    questionable_pulse: bool = False
    signal_analysis_ongoing: bool = False
    sensor_interference: bool = False
    sensor_unconnected_to_user: bool = False
    unknown_sensor_connected: bool = False
    sensor_displaced: bool = False
    sensor_malfunctioning: bool = False
    sensor_disconnected: bool = False


class _PlxValues(Frozen):
    """What the two measurements share: the SpO2/PR pair and the optional tail."""

    spo2: MeasuredField
    pulse_rate: MeasuredField
    measurement_status: PlxMeasurementStatus | None = None
    device_sensor_status: PlxDeviceSensorStatus | None = None
    #: Pulse amplitude index in % (kept on the model; not sent as a Quantity).
    pulse_amplitude_index: MeasuredField | None = None

    @property
    def is_device_error(self) -> bool:
        """No valid value: SpO2 and pulse rate are both special values, or the
        measurement status says the measurement is invalid or unavailable."""
        status = self.measurement_status
        if status is not None and (status.invalid_measurement or status.measurement_unavailable):
            return True
        return isinstance(self.spo2, SpecialValue) and isinstance(self.pulse_rate, SpecialValue)

    @property
    def non_patient_reason(self) -> str | None:
        """Why the values are not the patient's although the oximeter measured:
        "demonstration" or "testing" data (measurement status bits 10 and 11)."""
        status = self.measurement_status
        if status is None:
            return None
        if status.demonstration:
            return "demonstration"
        if status.testing:
            return "testing"
        return None

    def status_names(self) -> list[str]:
        """Measurement status then device/sensor status flags that are set, in bit order."""
        out: list[str] = []
        if self.measurement_status is not None:
            out += self.measurement_status.names()
        if self.device_sensor_status is not None:
            out += self.device_sensor_status.names()
        return out

    def quantities(self) -> list[Quantity]:
        """SpO2 once per LOINC coding (2708-6 and 59408-5, same value, unit %), pulse /min.

        Special values become `value=None`. Every value is None when the reading is a
        device error (invalid / unavailable) or not the patient's (demonstration,
        testing): the quantities are kept so the reading stays a reading, but nothing in
        it counts as a measured value; `status_names()` says why.
        """
        withheld = self.is_device_error or self.non_patient_reason is not None
        spo2 = None if withheld else number_or_none(self.spo2)
        pulse = None if withheld else number_or_none(self.pulse_rate)
        return [
            Quantity(name=NAME_SPO2, loinc=LOINC_SPO2, value=spo2, unit="%"),
            Quantity(name=NAME_SPO2_PULSE_OX, loinc=LOINC_SPO2_PULSE_OX, value=spo2, unit="%"),
            Quantity(
                name=NAME_PULSE,
                loinc=LOINC_PULSE,
                value=pulse,
                unit="/min",
            ),
        ]


class PlxSpotCheckMeasurement(_PlxValues):
    """A decoded 0x2A5E. `timestamp` is the device clock (naive), None when absent/unknown.

    `device_clock_not_set` (flag bit 4) says the device's clock was never set: its
    timestamp, if any, is not to be trusted.
    """

    timestamp: NaiveDatetime = None
    device_clock_not_set: bool = False


class SpO2PulseRate(Frozen):
    """One SpO2 / pulse-rate pair of 0x2A5F (the fast or the slow averaging)."""

    spo2: MeasuredField
    pulse_rate: MeasuredField


class PlxContinuousMeasurement(_PlxValues):
    """A decoded 0x2A5F. `spo2`/`pulse_rate` are the "normal" values; `fast`/`slow` the
    optional differently-averaged pairs (not sent as quantities)."""

    fast: SpO2PulseRate | None = None
    slow: SpO2PulseRate | None = None

    @property
    def timestamp(self) -> datetime | None:
        """0x2A5F carries no time: the hub's receive time stands for it."""
        return None


def _status_tail(
    r: ByteReader, has_status: bool, has_device: bool, has_pai: bool
) -> dict[str, object]:
    out: dict[str, object] = {}
    if has_status:
        at = r.offset
        bits = r.uint(2, "measurement status")
        if PlxMeasurementStatus.reserved_bits(bits):
            raise r.error(f"reserved measurement status bits set (0x{bits:04X})", at)
        out["measurement_status"] = PlxMeasurementStatus.from_bits(bits)
    if has_device:
        at = r.offset
        bits = r.uint(3, "device and sensor status")
        if PlxDeviceSensorStatus.reserved_bits(bits):
            raise r.error(f"reserved device and sensor status bits set (0x{bits:06X})", at)
        out["device_sensor_status"] = PlxDeviceSensorStatus.from_bits(bits)
    if has_pai:
        at = r.offset
        pai = r.sfloat("pulse amplitude index")
        check_range(r, at, "pulse amplitude index", pai, PAI_RANGE)
        out["pulse_amplitude_index"] = pai
    return out


def _read_pair(r: ByteReader, suffix: str = "") -> tuple[Measured, Measured]:
    """An SpO2 / pulse-rate pair, each rejected at its byte outside its physical range."""
    at = r.offset
    spo2 = r.sfloat(f"SpO2{suffix}")
    check_range(r, at, f"SpO2{suffix}", spo2, SPO2_RANGE)
    at = r.offset
    pulse_rate = r.sfloat(f"pulse rate{suffix}")
    check_range(r, at, f"pulse rate{suffix}", pulse_rate, PULSE_RATE_RANGE)
    return spo2, pulse_rate


def _encode_tail(
    m: _PlxValues, flag_status: int, flag_device: int, flag_pai: int
) -> tuple[int, bytes]:
    flags, body = 0, b""
    if m.measurement_status is not None:
        flags |= flag_status
        body += m.measurement_status.to_bits().to_bytes(2, "little")
    if m.device_sensor_status is not None:
        flags |= flag_device
        body += m.device_sensor_status.to_bits().to_bytes(3, "little")
    if m.pulse_amplitude_index is not None:
        flags |= flag_pai
        body += encode_sfloat(m.pulse_amplitude_index).to_bytes(2, "little")
    return flags, body


def _pair(spo2: float | SpecialValue, pulse_rate: float | SpecialValue) -> bytes:
    return encode_sfloat(spo2).to_bytes(2, "little") + encode_sfloat(pulse_rate).to_bytes(
        2, "little"
    )


def decode_plx_spot_check(data: bytes) -> PlxSpotCheckMeasurement:
    """Decode 0x2A5E. Raises `DecodeError` (and nothing else) for a malformed payload."""
    r = ByteReader(data, PLX_SPOT_CHECK_MEASUREMENT)
    flags = r.uint(1, "flags")
    if flags & SPOT_FLAGS_RESERVED:
        raise r.error(f"reserved flag bits set (flags 0x{flags:02X})", 0)
    spo2, pulse_rate = _read_pair(r)
    timestamp = r.date_time() if flags & SPOT_FLAG_TIMESTAMP else None
    tail = _status_tail(
        r,
        bool(flags & SPOT_FLAG_MEASUREMENT_STATUS),
        bool(flags & SPOT_FLAG_DEVICE_SENSOR_STATUS),
        bool(flags & SPOT_FLAG_PULSE_AMPLITUDE_INDEX),
    )
    r.finish()
    return PlxSpotCheckMeasurement.model_validate(
        {
            "spo2": spo2,
            "pulse_rate": pulse_rate,
            "timestamp": timestamp,
            "device_clock_not_set": bool(flags & SPOT_FLAG_DEVICE_CLOCK_NOT_SET),
            **tail,
        }
    )


def encode_plx_spot_check(m: PlxSpotCheckMeasurement) -> bytes:
    """Encode 0x2A5E; the flags follow from the optional fields (values exact in SFLOAT)."""
    flags = SPOT_FLAG_DEVICE_CLOCK_NOT_SET if m.device_clock_not_set else 0
    body = _pair(m.spo2, m.pulse_rate)
    if m.timestamp is not None:
        flags |= SPOT_FLAG_TIMESTAMP
        body += encode_date_time(m.timestamp)
    tail_flags, tail = _encode_tail(
        m,
        SPOT_FLAG_MEASUREMENT_STATUS,
        SPOT_FLAG_DEVICE_SENSOR_STATUS,
        SPOT_FLAG_PULSE_AMPLITUDE_INDEX,
    )
    return bytes((flags | tail_flags,)) + body + tail


def decode_plx_continuous(data: bytes) -> PlxContinuousMeasurement:
    """Decode 0x2A5F. Raises `DecodeError` (and nothing else) for a malformed payload."""
    r = ByteReader(data, PLX_CONTINUOUS_MEASUREMENT)
    flags = r.uint(1, "flags")
    if flags & CONT_FLAGS_RESERVED:
        raise r.error(f"reserved flag bits set (flags 0x{flags:02X})", 0)
    spo2, pulse_rate = _read_pair(r)
    fast = slow = None
    if flags & CONT_FLAG_FAST:
        fast_spo2, fast_pr = _read_pair(r, " fast")
        fast = SpO2PulseRate(spo2=fast_spo2, pulse_rate=fast_pr)
    if flags & CONT_FLAG_SLOW:
        slow_spo2, slow_pr = _read_pair(r, " slow")
        slow = SpO2PulseRate(spo2=slow_spo2, pulse_rate=slow_pr)
    tail = _status_tail(
        r,
        bool(flags & CONT_FLAG_MEASUREMENT_STATUS),
        bool(flags & CONT_FLAG_DEVICE_SENSOR_STATUS),
        bool(flags & CONT_FLAG_PULSE_AMPLITUDE_INDEX),
    )
    r.finish()
    return PlxContinuousMeasurement.model_validate(
        {"spo2": spo2, "pulse_rate": pulse_rate, "fast": fast, "slow": slow, **tail}
    )


def encode_plx_continuous(m: PlxContinuousMeasurement) -> bytes:
    """Encode 0x2A5F; the flags follow from the optional fields (values exact in SFLOAT)."""
    flags = 0
    body = _pair(m.spo2, m.pulse_rate)
    if m.fast is not None:
        flags |= CONT_FLAG_FAST
        body += _pair(m.fast.spo2, m.fast.pulse_rate)
    if m.slow is not None:
        flags |= CONT_FLAG_SLOW
        body += _pair(m.slow.spo2, m.slow.pulse_rate)
    tail_flags, tail = _encode_tail(
        m,
        CONT_FLAG_MEASUREMENT_STATUS,
        CONT_FLAG_DEVICE_SENSOR_STATUS,
        CONT_FLAG_PULSE_AMPLITUDE_INDEX,
    )
    return bytes((flags | tail_flags,)) + body + tail


# --- record identity ------------------------------------------------------------------------

#: Status bits that say how a record travelled (from storage) or what the device was doing
#: as it sent it (an "ongoing" state), not what was measured: masked for its identity, so
#: a spot-check sent live and again from storage is one record.
TRANSPORT_MEASUREMENT_STATUS = (
    "measurement_ongoing",
    "from_storage",
    "calibration_ongoing",
)
TRANSPORT_DEVICE_SENSOR_STATUS = (
    "extended_display_update_ongoing",
    "signal_analysis_ongoing",
)
_MEASUREMENT_STATUS_MASK = sum(PlxMeasurementStatus.BITS[n] for n in TRANSPORT_MEASUREMENT_STATUS)
_DEVICE_SENSOR_STATUS_MASK = sum(
    PlxDeviceSensorStatus.BITS[n] for n in TRANSPORT_DEVICE_SENSOR_STATUS
)


def _clear(out: bytearray, at: int, size: int, mask: int) -> None:
    value = int.from_bytes(out[at : at + size], "little") & ~mask
    out[at : at + size] = value.to_bytes(size, "little")


def _tail_identity(data: bytes, at: int, has_status: bool, has_device: bool) -> bytes:
    """`data` with the transport bits of its status tail (starting at `at`) cleared."""
    out = bytearray(data)
    if has_status:
        _clear(out, at, 2, _MEASUREMENT_STATUS_MASK)
        at += 2
    if has_device:
        _clear(out, at, 3, _DEVICE_SENSOR_STATUS_MASK)
    return bytes(out)


def plx_spot_check_identity(data: bytes) -> bytes:
    """A 0x2A5E's bytes without its transport bits (`TRANSPORT_MEASUREMENT_STATUS`,
    `TRANSPORT_DEVICE_SENSOR_STATUS`). `DecodeError` when `data` is not a 0x2A5E."""
    decode_plx_spot_check(data)
    flags = data[0]
    at = 5 + (7 if flags & SPOT_FLAG_TIMESTAMP else 0)
    return _tail_identity(
        data,
        at,
        bool(flags & SPOT_FLAG_MEASUREMENT_STATUS),
        bool(flags & SPOT_FLAG_DEVICE_SENSOR_STATUS),
    )


def plx_continuous_identity(data: bytes) -> bytes:
    """A 0x2A5F's bytes without its transport bits (as `plx_spot_check_identity`)."""
    decode_plx_continuous(data)
    flags = data[0]
    at = 5 + (4 if flags & CONT_FLAG_FAST else 0) + (4 if flags & CONT_FLAG_SLOW else 0)
    return _tail_identity(
        data,
        at,
        bool(flags & CONT_FLAG_MEASUREMENT_STATUS),
        bool(flags & CONT_FLAG_DEVICE_SENSOR_STATUS),
    )


# --- PLX Features 0x2A60 -------------------------------------------------------------------

FEATURE_MEASUREMENT_STATUS_SUPPORT = 0x0001
FEATURE_DEVICE_SENSOR_STATUS_SUPPORT = 0x0002


class PlxFeatures(Frozen):
    """0x2A60: supported features u16 | [measurement status support u16]
    | [device and sensor status support u24].

    The two masks are present when feature bits 0 and 1 say so; they use the bit layout
    of the statuses (reserved bits in them are ignored). Feature bits 8-15 are kept in
    `other_bits`, not rejected: this characteristic only informs.
    `spot_check_storage` means the device holds spot-checks behind a Record Access
    Control Point (0x2A52).
    """

    BITS: ClassVar[dict[str, int]] = {
        # bits 0 and 1 are implied by the two masks below
        "spot_check_storage": 1 << 2,
        "spot_check_timestamp": 1 << 3,
        "fast_metric": 1 << 4,
        "slow_metric": 1 << 5,
        "pulse_amplitude_index": 1 << 6,
        "multiple_bonds": 1 << 7,
    }

    spot_check_storage: bool = False
    spot_check_timestamp: bool = False
    fast_metric: bool = False
    slow_metric: bool = False
    pulse_amplitude_index: bool = False
    multiple_bonds: bool = False
    measurement_status_support: PlxMeasurementStatus | None = None
    device_sensor_status_support: PlxDeviceSensorStatus | None = None
    other_bits: Annotated[int, Field(ge=0, le=0xFFFF)] = 0

    @field_validator("other_bits")
    @classmethod
    def _only_unnamed_bits(cls, value: int) -> int:
        if value & 0x00FF:
            raise ValueError("other_bits must be within bits 8-15")
        return value


def decode_plx_features(data: bytes) -> PlxFeatures:
    r = ByteReader(data, PLX_FEATURES)
    bits = r.uint(2, "supported features")
    status = device = None
    if bits & FEATURE_MEASUREMENT_STATUS_SUPPORT:
        status = PlxMeasurementStatus.from_bits(r.uint(2, "measurement status support"))
    if bits & FEATURE_DEVICE_SENSOR_STATUS_SUPPORT:
        device = PlxDeviceSensorStatus.from_bits(r.uint(3, "device and sensor status support"))
    r.finish()
    named = {name: bool(bits & mask) for name, mask in PlxFeatures.BITS.items()}
    return PlxFeatures(
        **named,
        measurement_status_support=status,
        device_sensor_status_support=device,
        other_bits=bits & 0xFF00,
    )


def encode_plx_features(f: PlxFeatures) -> bytes:
    bits = f.other_bits
    for name, mask in PlxFeatures.BITS.items():
        if getattr(f, name):
            bits |= mask
    tail = b""
    if f.measurement_status_support is not None:
        bits |= FEATURE_MEASUREMENT_STATUS_SUPPORT
        tail += f.measurement_status_support.to_bits().to_bytes(2, "little")
    if f.device_sensor_status_support is not None:
        bits |= FEATURE_DEVICE_SENSOR_STATUS_SUPPORT
        tail += f.device_sensor_status_support.to_bits().to_bytes(3, "little")
    return bits.to_bytes(2, "little") + tail


__all__ = [
    "LOINC_SPO2",
    "LOINC_SPO2_PULSE_OX",
    "NAME_SPO2",
    "NAME_SPO2_PULSE_OX",
    "PAI_RANGE",
    "PLX_CONTINUOUS_MEASUREMENT",
    "PLX_FEATURES",
    "PLX_SPOT_CHECK_MEASUREMENT",
    "SPO2_RANGE",
    "TRANSPORT_DEVICE_SENSOR_STATUS",
    "TRANSPORT_MEASUREMENT_STATUS",
    "DecodeError",
    "PlxContinuousMeasurement",
    "PlxDeviceSensorStatus",
    "PlxFeatures",
    "PlxMeasurementStatus",
    "PlxSpotCheckMeasurement",
    "SpO2PulseRate",
    "decode_plx_continuous",
    "decode_plx_features",
    "decode_plx_spot_check",
    "encode_plx_continuous",
    "encode_plx_features",
    "encode_plx_spot_check",
    "plx_continuous_identity",
    "plx_spot_check_identity",
]
