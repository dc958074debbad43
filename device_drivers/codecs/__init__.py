"""Pure codecs for the GATT characteristics of BLE health devices (no I/O, no bleak).

Decoders raise `DecodeError` (a ValueError) and nothing else for any payload.
"""

from device_drivers.codecs.blood_pressure import (
    BLOOD_PRESSURE_FEATURE,
    BLOOD_PRESSURE_MEASUREMENT,
    INTERMEDIATE_CUFF_PRESSURE,
    KPA_TO_MMHG,
    USER_ID_UNKNOWN,
    BloodPressureFeature,
    BloodPressureMeasurement,
    BloodPressureStatus,
    BloodPressureUnit,
    PulseRange,
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
    encode_blood_pressure_feature,
    encode_blood_pressure_measurement,
    encode_intermediate_cuff_pressure,
)
from device_drivers.codecs.current_time import (
    CURRENT_TIME,
    AdjustReason,
    CurrentTime,
    current_time_from_datetime,
    decode_current_time,
    encode_current_time,
)
from device_drivers.codecs.device_information import (
    DIS_CHARACTERISTICS,
    DeviceInformationString,
    decode_dis,
    decode_dis_string,
)
from device_drivers.codecs.errors import DecodeError, EncodeError
from device_drivers.codecs.ieee11073 import (
    Measured,
    SpecialValue,
    decode_date_time,
    decode_float,
    decode_sfloat,
    encode_date_time,
    encode_float,
    encode_sfloat,
)
from device_drivers.codecs.registry import (
    decode_characteristic,
    normalize_uuid,
    supported_characteristics,
)

__all__ = [
    "BLOOD_PRESSURE_FEATURE",
    "BLOOD_PRESSURE_MEASUREMENT",
    "CURRENT_TIME",
    "DIS_CHARACTERISTICS",
    "INTERMEDIATE_CUFF_PRESSURE",
    "KPA_TO_MMHG",
    "USER_ID_UNKNOWN",
    "AdjustReason",
    "BloodPressureFeature",
    "BloodPressureMeasurement",
    "BloodPressureStatus",
    "BloodPressureUnit",
    "CurrentTime",
    "DecodeError",
    "DeviceInformationString",
    "EncodeError",
    "Measured",
    "PulseRange",
    "SpecialValue",
    "current_time_from_datetime",
    "decode_blood_pressure_feature",
    "decode_blood_pressure_measurement",
    "decode_characteristic",
    "decode_current_time",
    "decode_date_time",
    "decode_dis",
    "decode_dis_string",
    "decode_float",
    "decode_intermediate_cuff_pressure",
    "decode_sfloat",
    "encode_blood_pressure_feature",
    "encode_blood_pressure_measurement",
    "encode_current_time",
    "encode_date_time",
    "encode_float",
    "encode_intermediate_cuff_pressure",
    "encode_sfloat",
    "normalize_uuid",
    "supported_characteristics",
]
