"""`hemhub decode`: the decoded model, and for a clinical measurement how the hub sends it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hemhub.cli import EXIT_USAGE, main


def decode(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["decode", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else out), err


def test_blood_pressure_shows_model_and_clinical_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = decode(capsys, "2A35", "1e 7800 5000 5a00 e9070c1f173b00 4800 02 0c00")
    assert code == 0 and err == ""
    # The raw model, as before.
    assert (out["systolic"], out["diastolic"], out["pulse"], out["user_id"]) == (120, 80, 72, 2)
    assert out["timestamp"] == "2025-12-31T23:59:00"
    clinical = out["clinical"]
    assert clinical["is_device_error"] is False
    assert clinical["is_patient_value"] is True
    assert clinical["status"] == ["irregular_pulse", "pulse_above_range"]
    assert [(v["name"], v["loinc"], v["unit"], v["value"]) for v in clinical["values"]] == [
        ("systolic", "8480-6", "mm[Hg]", 120.0),
        ("diastolic", "8462-4", "mm[Hg]", 80.0),
        ("mean_arterial", "8478-0", "mm[Hg]", 90.0),
        ("pulse", "8867-4", "/min", 72.0),
    ]


def test_kpa_values_are_shown_as_sent_in_mmhg(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, "2A35", "01 a0f0 6bf0 78f0")  # 16.0 / 10.7 / 12.0 kPa
    assert code == 0 and out["unit"] == "kPa" and out["systolic"] == 16.0
    assert [v["value"] for v in out["clinical"]["values"]] == [120.0, 80.3, 90.0]
    assert {v["unit"] for v in out["clinical"]["values"]} == {"mm[Hg]"}


def test_device_error_reading(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, "2A35", "14 ff07 ff07 ff07 ff07 0000")
    assert code == 0
    assert out["systolic"] == "nan"
    assert out["clinical"]["is_device_error"] is True
    assert out["clinical"]["is_patient_value"] is False
    assert [v["value"] for v in out["clinical"]["values"]] == [None] * 4


def test_oximeter_invalid_measurement_is_a_device_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = decode(capsys, "2A5E", "02 6100 4800 0080")
    assert code == 0 and out["spo2"] == 97.0
    clinical = out["clinical"]
    assert clinical["is_device_error"] is True and clinical["status"] == ["invalid_measurement"]
    assert [(v["loinc"], v["unit"], v["value"]) for v in clinical["values"]] == [
        ("2708-6", "%", None),
        ("59408-5", "%", None),
        ("8867-4", "/min", None),
    ]


def test_glucose_control_solution_is_not_a_patient_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = decode(capsys, "2A18", "02 0100 e9070102081e00 5fb0 4a")
    assert code == 0 and out["concentration"] == 95.0
    clinical = out["clinical"]
    assert clinical["is_patient_value"] is False
    assert clinical["non_patient_reason"] == "control_solution"
    assert clinical["is_device_error"] is False
    assert clinical["status"] == ["control_solution"]
    assert clinical["values"] == [
        {"name": "glucose", "loinc": "2339-0", "value": None, "unit": "mg/dL"}
    ]


def test_glucose_patient_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, "0x2a18", "06 0100 e9070102081e00 3fc0 11")
    assert code == 0
    assert out["clinical"]["values"] == [
        {"name": "glucose", "loinc": "15074-8", "value": 6.3, "unit": "mmol/L"}
    ]
    assert out["clinical"]["is_patient_value"] is True


def test_intermediate_cuff_pressure_is_never_sent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, "2A36", "00 7800 ff07 ff07")
    assert code == 0 and out["intermediate"] is True
    assert out["clinical"]["values"] is None
    assert out["clinical"]["is_patient_value"] is False
    assert "not a measurement result" in out["clinical"]["not_sent"]


def test_non_measurement_has_no_clinical_part(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, "2A49", "0100")
    assert code == 0 and out["body_movement_detection"] is True
    assert "clinical" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("2A5E", "0096004800"), "2A5E at byte 1: SpO2 150 % outside the physical range"),
        (("2A5E", "00FF0F4800"), "2A5E at byte 1: SpO2 -1 % outside the physical range"),
        (("2A18", "02 0100 e9070102081e00 ffff 11"), "2A18 at byte 10: glucose"),
        (("2A35", "1e 7800"), "2A35 at byte 3: truncated"),
        (("2A35", "zz"), "is not a sequence of hex bytes"),
        (("2A99", "00"), "no codec for characteristic 2A99"),
        (("nonsense", "00"), "is not a Bluetooth UUID"),
        (("2A35",), "give CHARACTERISTIC and HEX"),
    ],
)
def test_malformed_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, out, err = decode(capsys, *argv)
    assert code == EXIT_USAGE == 2
    assert out == ""
    assert err.startswith("hemhub decode: ") and message in err
    assert err.count("\n") == 1 and err.endswith("\n")
