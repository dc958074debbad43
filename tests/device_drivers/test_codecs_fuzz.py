"""Arbitrary bytes: every decoder returns a model or raises DecodeError, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from device_drivers.codecs import (
    DISPENSER_EVENT_UUID,
    DISPENSER_RACP_UUID,
    DISPENSER_STATUS_UUID,
    DOSE_SCHEDULE_UUID,
    DecodeError,
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_characteristic,
    decode_current_time,
    decode_dis_string,
    decode_dispenser_event,
    decode_dispenser_racp,
    decode_dispenser_status,
    decode_dose_schedule,
    decode_glucose_context,
    decode_glucose_feature,
    decode_glucose_measurement,
    decode_intermediate_cuff_pressure,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
    decode_racp,
    decode_system_id,
    decode_weight_measurement,
    decode_weight_scale_feature,
    supported_characteristics,
)

DECODERS: dict[str, Callable[[bytes], object]] = {
    "2A35": decode_blood_pressure_measurement,
    "2A36": decode_intermediate_cuff_pressure,
    "2A49": decode_blood_pressure_feature,
    "2A2B": decode_current_time,
    "2A29": lambda data: decode_dis_string("2A29", data),
    "2A23": decode_system_id,
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

# Mostly-plausible payloads reach deeper than uniform noise: a valid flags byte followed
# by about the right number of bytes, and dates with small field values.
plausible_bp = st.builds(
    lambda flags, rest: bytes((flags,)) + rest,
    st.integers(0, 0x1F) | st.integers(0, 255),
    st.binary(min_size=0, max_size=22),
)
plausible_time = st.builds(
    lambda year, fields, rest: year.to_bytes(2, "little") + bytes(fields) + rest,
    st.sampled_from([0, 1581, 1582, 2024, 9999, 10000, 65535]),
    st.lists(st.integers(0, 62), min_size=5, max_size=5),
    st.binary(max_size=4),
)
# A valid-looking Dispenser Event head (flags, sequence, event type 0-13, then a date).
plausible_event = st.builds(
    lambda flags, seq, kind, rest: (
        bytes((flags,)) + seq.to_bytes(4, "little") + bytes((kind,)) + rest
    ),
    st.integers(0, 7) | st.integers(0, 255),
    st.integers(0, 3),
    st.integers(0, 13),
    plausible_time,
)
# RACP requests: a request opcode, an operator, a filter type and a few bytes.
plausible_racp = st.builds(
    lambda op, operator, rest: bytes((op, operator)) + rest,
    st.integers(0, 7),
    st.integers(0, 7),
    st.binary(max_size=10),
)
# Glucose / weight / schedule / status heads: small leading values then a date.
plausible_dated = st.builds(
    lambda head, rest: head + rest,
    st.binary(min_size=1, max_size=5),
    plausible_time,
)
payloads = (
    st.binary(max_size=40)
    | plausible_bp
    | plausible_time
    | plausible_event
    | plausible_racp
    | plausible_dated
)


def _check(decoder: Callable[[bytes], object], data: bytes, characteristic: str) -> None:
    try:
        result = decoder(data)
    except DecodeError as err:
        assert err.characteristic == characteristic
        assert 0 <= err.offset <= len(data)
        assert str(err).startswith(f"{characteristic} at byte {err.offset}: ")
    else:
        assert isinstance(result, BaseModel | str)


@pytest.mark.parametrize("characteristic", sorted(DECODERS))
@settings(max_examples=400)
@given(data=payloads)
def test_arbitrary_bytes(characteristic: str, data: bytes) -> None:
    _check(DECODERS[characteristic], data, characteristic)


@settings(max_examples=300)
@given(
    characteristic=st.sampled_from([u for u, _ in supported_characteristics()]),
    data=payloads,
)
def test_registry_arbitrary_bytes(characteristic: str, data: bytes) -> None:
    _check(lambda d: decode_characteristic(characteristic, d), data, characteristic)


@given(st.binary(max_size=24))
def test_bytearray_and_memoryview_inputs(data: bytes) -> None:
    # bleak hands over bytearray; the codecs must treat it like bytes.
    for view in (bytearray(data), memoryview(data)):
        for characteristic, decoder in DECODERS.items():
            _check(decoder, view, characteristic)  # type: ignore[arg-type]
