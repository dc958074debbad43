"""PLX Spot-Check 2A5E, PLX Continuous 2A5F and PLX Features 2A60, from hand-built bytes."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.codecs import (
    DecodeError,
    PlxContinuousMeasurement,
    PlxDeviceSensorStatus,
    PlxFeatures,
    PlxMeasurementStatus,
    PlxSpotCheckMeasurement,
    SpecialValue,
    SpO2PulseRate,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
    decode_sfloat,
    encode_plx_continuous,
    encode_plx_features,
    encode_plx_spot_check,
)
from hemhub.contract import Quantity

NAN = "ff07"
# flags 0F (timestamp, measurement status, device/sensor status, PAI) | SpO2 97 | PR 72
# | 2025-12-31 23:59:00 | status 0x0080 validated | device 0x000020 low perfusion
# | PAI 0xF00F = 1.5 %
FULL_SPOT = bytes.fromhex("0f 6100 4800 e9070c1f173b00 8000 200000 0ff0")
SPOT_STARTS = [0, 1, 3, 5, 12, 14, 17]

# flags 1F (fast, slow, status, device status, PAI) | 97/72 | fast 96/75 | slow 98/70
# | status 0x0020 ongoing | device 0x000000 | PAI 1.5 (0xF00F)
FULL_CONT = bytes.fromhex("1f 6100 4800 6000 4b00 6200 4600 2000 000000 0ff0")
CONT_STARTS = [0, 1, 3, 5, 7, 9, 11, 13, 15, 18]


def test_spot_check_every_field() -> None:
    m = decode_plx_spot_check(FULL_SPOT)
    assert m == PlxSpotCheckMeasurement(
        spo2=97.0,
        pulse_rate=72.0,
        timestamp=datetime(2025, 12, 31, 23, 59),
        measurement_status=PlxMeasurementStatus(validated=True),
        device_sensor_status=PlxDeviceSensorStatus(low_perfusion=True),
        pulse_amplitude_index=1.5,
    )
    assert m.status_names() == ["validated", "low_perfusion"]
    assert not m.is_device_error and not m.device_clock_not_set
    assert m.quantities() == [
        Quantity(name="oxygen_saturation", loinc="2708-6", value=97.0, unit="%"),
        Quantity(name="oxygen_saturation_pulse_ox", loinc="59408-5", value=97.0, unit="%"),
        Quantity(name="pulse", loinc="8867-4", value=72.0, unit="/min"),
    ]
    assert encode_plx_spot_check(m) == FULL_SPOT


def test_spot_check_minimal_and_clock_not_set() -> None:
    m = decode_plx_spot_check(bytes.fromhex("00 6100 4800"))
    assert (m.timestamp, m.measurement_status, m.device_sensor_status) == (None, None, None)
    assert m.status_names() == []
    data = bytes.fromhex("11 6100 4800 d0070101000000")  # clock never set: 2000-01-01
    m = decode_plx_spot_check(data)
    assert m.device_clock_not_set and m.timestamp == datetime(2000, 1, 1)
    assert encode_plx_spot_check(m) == data


@pytest.mark.parametrize("flags", range(0x20))
def test_spot_check_every_flag_combination(flags: int) -> None:
    data = bytes((flags,)) + bytes.fromhex("6100 4800")
    if flags & 0x01:
        data += bytes.fromhex("e9070c1f173b00")
    if flags & 0x02:
        data += bytes.fromhex("0001")
    if flags & 0x04:
        data += bytes.fromhex("010000")
    if flags & 0x08:
        data += bytes.fromhex("0ff0")
    m = decode_plx_spot_check(data)
    assert (m.timestamp is not None) == bool(flags & 0x01)
    assert (m.measurement_status is not None) == bool(flags & 0x02)
    assert (m.device_sensor_status is not None) == bool(flags & 0x04)
    assert (m.pulse_amplitude_index is not None) == bool(flags & 0x08)
    assert m.device_clock_not_set == bool(flags & 0x10)
    assert encode_plx_spot_check(m) == data


def test_all_nan_is_device_error() -> None:
    m = decode_plx_spot_check(bytes.fromhex("00" + NAN + NAN))
    assert m.is_device_error
    assert [q.value for q in m.quantities()] == [None, None, None]


def test_partial_nan_pulse() -> None:
    m = decode_plx_spot_check(bytes.fromhex("00 6100" + NAN))
    assert not m.is_device_error
    assert [q.value for q in m.quantities()] == [97.0, 97.0, None]


@pytest.mark.parametrize("special", ["0008", "fe07", "0208", "0108"])
def test_every_special_spo2_is_missing(special: str) -> None:
    m = decode_plx_spot_check(bytes.fromhex("00" + special + "4800"))
    assert isinstance(m.spo2, SpecialValue)
    assert [q.value for q in m.quantities()] == [None, None, 72.0]


@pytest.mark.parametrize(
    ("bit", "name"),
    [(1 << (i + 5), name) for i, name in enumerate(PlxMeasurementStatus.BITS)],
)
def test_each_measurement_status_bit(bit: int, name: str) -> None:
    data = bytes.fromhex("02 6100 4800") + bit.to_bytes(2, "little")
    m = decode_plx_spot_check(data)
    assert m.status_names() == [name]
    assert encode_plx_spot_check(m) == data


def test_measurement_status_names() -> None:
    assert list(PlxMeasurementStatus.BITS) == [
        "measurement_ongoing",
        "early_estimate",
        "validated",
        "fully_qualified",
        "from_storage",
        "demonstration",
        "testing",
        "calibration_ongoing",
        "measurement_unavailable",
        "questionable_measurement",
        "invalid_measurement",
    ]


@pytest.mark.parametrize(
    ("bit", "name"), [(1 << i, name) for i, name in enumerate(PlxDeviceSensorStatus.BITS)]
)
def test_each_device_sensor_status_bit(bit: int, name: str) -> None:
    data = bytes.fromhex("04 6100 4800") + bit.to_bytes(3, "little")
    m = decode_plx_spot_check(data)
    assert m.status_names() == [name]
    assert encode_plx_spot_check(m) == data


def test_device_sensor_status_names() -> None:
    assert len(PlxDeviceSensorStatus.BITS) == 16
    assert list(PlxDeviceSensorStatus.BITS)[:2] == [
        "extended_display_update_ongoing",
        "equipment_malfunction",
    ]
    assert list(PlxDeviceSensorStatus.BITS)[-1] == "sensor_disconnected"


@pytest.mark.parametrize("bits", [0x0001, 0x0010, 0x001F])
def test_reserved_measurement_status_bits(bits: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_spot_check(bytes.fromhex("02 6100 4800") + bits.to_bytes(2, "little"))
    assert (info.value.characteristic, info.value.offset) == ("2A5E", 5)


@pytest.mark.parametrize("bits", [0x010000, 0x800000])
def test_reserved_device_status_bits(bits: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_spot_check(bytes.fromhex("06 6100 4800 0000") + bits.to_bytes(3, "little"))
    assert info.value.offset == 7


@pytest.mark.parametrize("length", range(len(FULL_SPOT)))
def test_spot_check_truncated_at_every_length(length: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_spot_check(FULL_SPOT[:length])
    expected = max(start for start in SPOT_STARTS if start <= length)
    assert (info.value.characteristic, info.value.offset) == ("2A5E", expected)


@pytest.mark.parametrize("bit", [0x20, 0x40, 0x80])
def test_spot_check_reserved_flags(bit: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_spot_check(bytes((bit,)) + bytes.fromhex("6100 4800"))
    assert info.value.offset == 0


def test_spot_check_over_long() -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_spot_check(FULL_SPOT + b"\x00")
    assert info.value.offset == len(FULL_SPOT)


# --- Continuous 2A5F -----------------------------------------------------------------------


def test_continuous_every_field() -> None:
    m = decode_plx_continuous(FULL_CONT)
    assert m == PlxContinuousMeasurement(
        spo2=97.0,
        pulse_rate=72.0,
        fast=SpO2PulseRate(spo2=96.0, pulse_rate=75.0),
        slow=SpO2PulseRate(spo2=98.0, pulse_rate=70.0),
        measurement_status=PlxMeasurementStatus(measurement_ongoing=True),
        device_sensor_status=PlxDeviceSensorStatus(),
        pulse_amplitude_index=1.5,
    )
    assert [q.value for q in m.quantities()] == [97.0, 97.0, 72.0]
    assert m.status_names() == ["measurement_ongoing"]
    assert encode_plx_continuous(m) == FULL_CONT


@pytest.mark.parametrize("flags", range(0x20))
def test_continuous_every_flag_combination(flags: int) -> None:
    data = bytes((flags,)) + bytes.fromhex("6100 4800")
    for bit, tail in ((1, "6000 4b00"), (2, "6200 4600"), (4, "0002"), (8, "000100"), (16, "0ff0")):
        if flags & bit:
            data += bytes.fromhex(tail)
    m = decode_plx_continuous(data)
    assert (m.fast is not None, m.slow is not None) == (bool(flags & 1), bool(flags & 2))
    assert encode_plx_continuous(m) == data


def test_continuous_only_slow() -> None:
    m = decode_plx_continuous(bytes.fromhex("02 6100 4800 6200 4600"))
    assert m.fast is None and m.slow == SpO2PulseRate(spo2=98.0, pulse_rate=70.0)


def test_continuous_nan_everywhere() -> None:
    m = decode_plx_continuous(bytes.fromhex("01" + NAN * 4))
    assert m.is_device_error
    assert m.fast is not None and m.fast.spo2 is SpecialValue.NAN


@pytest.mark.parametrize("length", range(len(FULL_CONT)))
def test_continuous_truncated_at_every_length(length: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_continuous(FULL_CONT[:length])
    expected = max(start for start in CONT_STARTS if start <= length)
    assert (info.value.characteristic, info.value.offset) == ("2A5F", expected)


@pytest.mark.parametrize("bit", [0x20, 0x40, 0x80])
def test_continuous_reserved_flags(bit: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_continuous(bytes((bit,)) + bytes.fromhex("6100 4800"))
    assert info.value.offset == 0


def test_continuous_over_long_and_reserved_status() -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_continuous(FULL_CONT + b"\x00\x00")
    assert info.value.offset == len(FULL_CONT)
    with pytest.raises(DecodeError) as info:
        decode_plx_continuous(bytes.fromhex("04 6100 4800 0100"))
    assert info.value.offset == 5


# --- Features 2A60 -------------------------------------------------------------------------


def test_features_with_both_masks() -> None:
    # features 0x00CF: both masks, spot-check storage, timestamp, PAI, multiple bonds
    # measurement status support 0xFFE0 (all), device status support 0x00FFFF (all)
    data = bytes.fromhex("cf00 e0ff ffff00")
    f = decode_plx_features(data)
    assert f.spot_check_storage and f.spot_check_timestamp and f.pulse_amplitude_index
    assert f.multiple_bonds and not f.fast_metric and not f.slow_metric
    assert f.measurement_status_support is not None
    assert all(f.measurement_status_support.model_dump().values())
    assert f.device_sensor_status_support is not None
    assert all(f.device_sensor_status_support.model_dump().values())
    assert encode_plx_features(f) == data


def test_features_minimal_and_unknown_bits() -> None:
    f = decode_plx_features(bytes.fromhex("3000"))
    assert f == PlxFeatures(fast_metric=True, slow_metric=True)
    f = decode_plx_features(bytes.fromhex("0480"))
    assert f.spot_check_storage and f.other_bits == 0x8000
    assert encode_plx_features(f) == bytes.fromhex("0480")


@pytest.mark.parametrize(
    ("data", "offset"),
    [("", 0), ("01", 0), ("0100", 2), ("0100 e0", 2), ("0200 ffff", 2), ("0000 00", 2)],
)
def test_features_length(data: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_features(bytes.fromhex(data))
    assert (info.value.characteristic, info.value.offset) == ("2A60", offset)


# --- properties ----------------------------------------------------------------------------

any_sfloat = st.integers(0, 0xFFFF).map(decode_sfloat)


def in_range(low: float, high: float) -> st.SearchStrategy[float | SpecialValue]:
    """SFLOAT values a decoder accepts for a field with physical range low..high."""
    return st.sampled_from(list(SpecialValue)) | any_sfloat.filter(
        lambda v: isinstance(v, SpecialValue) or low <= v <= high
    )


spo2s = in_range(0, 100)
pulse_rates = in_range(0, 300)
pais = in_range(0, 100)
measurement_status = st.none() | st.integers(0, 0x7FF).map(
    lambda b: PlxMeasurementStatus.from_bits(b << 5)
)
device_status = st.none() | st.integers(0, 0xFFFF).map(PlxDeviceSensorStatus.from_bits)
pairs = st.none() | st.builds(SpO2PulseRate, spo2=spo2s, pulse_rate=pulse_rates)
timestamps = st.none() | st.datetimes(
    min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)
).map(lambda d: d.replace(microsecond=0))

spot_checks = st.builds(
    PlxSpotCheckMeasurement,
    spo2=spo2s,
    pulse_rate=pulse_rates,
    timestamp=timestamps,
    measurement_status=measurement_status,
    device_sensor_status=device_status,
    pulse_amplitude_index=st.none() | pais,
    device_clock_not_set=st.booleans(),
)
continuous = st.builds(
    PlxContinuousMeasurement,
    spo2=spo2s,
    pulse_rate=pulse_rates,
    fast=pairs,
    slow=pairs,
    measurement_status=measurement_status,
    device_sensor_status=device_status,
    pulse_amplitude_index=st.none() | pais,
)


@given(spot_checks)
def test_spot_check_identity(m: PlxSpotCheckMeasurement) -> None:
    assert decode_plx_spot_check(encode_plx_spot_check(m)) == m


@given(continuous)
def test_continuous_identity(m: PlxContinuousMeasurement) -> None:
    assert decode_plx_continuous(encode_plx_continuous(m)) == m


@given(
    st.builds(
        PlxFeatures,
        spot_check_storage=st.booleans(),
        spot_check_timestamp=st.booleans(),
        fast_metric=st.booleans(),
        slow_metric=st.booleans(),
        pulse_amplitude_index=st.booleans(),
        multiple_bonds=st.booleans(),
        measurement_status_support=measurement_status,
        device_sensor_status_support=device_status,
        other_bits=st.integers(0, 0xFF).map(lambda b: b << 8),
    )
)
def test_features_identity(f: PlxFeatures) -> None:
    assert decode_plx_features(encode_plx_features(f)) == f


def test_are_clinical_measurements() -> None:
    from device_drivers.measurement import ClinicalMeasurement

    assert isinstance(decode_plx_spot_check(FULL_SPOT), ClinicalMeasurement)
    continuous = decode_plx_continuous(FULL_CONT)
    assert isinstance(continuous, ClinicalMeasurement)
    assert continuous.timestamp is None


# --- physically impossible values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_", "offset", "reason"),
    [
        ("00 9600 4800", 1, "SpO2 150 %"),
        ("00 ff0f 4800", 1, "SpO2 -1 %"),
        ("00 6100 2d01", 3, "pulse rate 301 /min"),
        ("00 6100 ff0f", 3, "pulse rate -1 /min"),
        ("08 6100 4800 ff0f", 5, "pulse amplitude index -1 %"),
        ("09 6100 4800 e9070c1f173b00 6500", 12, "pulse amplitude index 101 %"),
    ],
)
def test_spot_check_out_of_range_is_decode_error(hex_: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_spot_check(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == ("2A5E", offset)
    assert info.value.reason == f"{reason} outside the physical range " + (
        "0..300 /min" if "pulse rate" in reason else "0..100 %"
    )


@pytest.mark.parametrize(
    ("hex_", "offset", "field"),
    [
        ("00 6500 4800", 1, "SpO2 101 %"),
        ("01 6100 4800 6500 4b00", 5, "SpO2 fast 101 %"),
        ("01 6100 4800 6000 2d01", 7, "pulse rate fast 301 /min"),
        ("02 6100 4800 ff0f 4600", 5, "SpO2 slow -1 %"),
        ("03 6100 4800 6000 4b00 6200 ff0f", 11, "pulse rate slow -1 /min"),
    ],
)
def test_continuous_out_of_range_is_decode_error(hex_: str, offset: int, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_plx_continuous(bytes.fromhex(hex_))
    assert (info.value.characteristic, info.value.offset) == ("2A5F", offset)
    assert info.value.reason.startswith(f"{field} outside the physical range")


def test_range_limits_are_values() -> None:
    m = decode_plx_spot_check(bytes.fromhex("00 6400 2c01"))
    assert (m.spo2, m.pulse_rate) == (100.0, 300.0)
    m = decode_plx_spot_check(bytes.fromhex("00 0000 0000"))
    assert [q.value for q in m.quantities()] == [0.0, 0.0, 0.0]


@given(
    st.sampled_from(["spo2", "pulse_rate"]),
    any_sfloat.filter(lambda v: not isinstance(v, SpecialValue) and not 0 <= v <= 300),
)
def test_any_impossible_value_is_rejected_at_its_field(field: str, value: float) -> None:
    fields: dict[str, object] = {"spo2": 97.0, "pulse_rate": 72.0, field: value}
    m = PlxSpotCheckMeasurement.model_validate(fields)
    with pytest.raises(DecodeError) as info:
        decode_plx_spot_check(encode_plx_spot_check(m))
    assert info.value.offset == (1 if field == "spo2" else 3)


# --- measurement status: device errors and data that is not the patient's -------------------


@pytest.mark.parametrize("name", ["invalid_measurement", "measurement_unavailable"])
def test_invalid_or_unavailable_is_a_device_error_without_values(name: str) -> None:
    bits = PlxMeasurementStatus.BITS[name]
    for decode, head in ((decode_plx_spot_check, "02"), (decode_plx_continuous, "04")):
        m = decode(bytes.fromhex(f"{head} 6100 4800") + bits.to_bytes(2, "little"))
        assert m.spo2 == 97.0  # the model keeps what the device sent...
        assert m.is_device_error  # ...but it is no measurement
        assert [q.value for q in m.quantities()] == [None, None, None]
        assert [q.loinc for q in m.quantities()] == ["2708-6", "59408-5", "8867-4"]
        assert m.non_patient_reason is None
        assert name in m.status_names()


@pytest.mark.parametrize("name", ["demonstration", "testing"])
def test_demonstration_and_testing_data_are_no_patient_values(name: str) -> None:
    bits = PlxMeasurementStatus.BITS[name] | PlxMeasurementStatus.BITS["validated"]
    for decode, head in ((decode_plx_spot_check, "02"), (decode_plx_continuous, "04")):
        m = decode(bytes.fromhex(f"{head} 6100 4800") + bits.to_bytes(2, "little"))
        assert m.non_patient_reason == name
        assert not m.is_device_error  # the oximeter works; the data is not the patient's
        assert [q.value for q in m.quantities()] == [None, None, None]
        assert name in m.status_names()


@pytest.mark.parametrize(
    "name", ["questionable_measurement", "validated", "early_estimate", "from_storage"]
)
def test_other_status_bits_keep_the_values(name: str) -> None:
    # A questionable measurement is a value with a doubt: it is sent, and its status
    # name raises ingest's sensor-status alert (Technical.sensor_flags).
    bits = PlxMeasurementStatus.BITS[name]
    m = decode_plx_spot_check(bytes.fromhex("02 6100 4800") + bits.to_bytes(2, "little"))
    assert not m.is_device_error and m.non_patient_reason is None
    assert [q.value for q in m.quantities()] == [97.0, 97.0, 72.0]
    assert m.status_names() == [name]
