"""Default threshold profiles per care programme (see docs/alerts.md for the sources).

A profile is a partial threshold document (ingest.thresholds.Thresholds) laid over
`COMMON`, as a JSON merge patch. Profiles are code, reviewed like code; a change to
any of them must raise `PROFILE_VERSION`, which is the version alerts record while a
resident has no override of their own. Residents' overrides (table threshold_sets)
continue the numbering after it.

Units: pressures mm[Hg], pulse /min, SpO2 %, glucose mmol/L, weight kg. A "high"
limit fires at value >= limit, a "low" limit at value < limit.
"""

from __future__ import annotations

from typing import Any

#: The version of the built-in profiles; raise it with every change below.
PROFILE_VERSION = 1

Document = dict[str, Any]

#: What every programme starts from: only the limits no resident should pass unseen.
COMMON: Document = {
    "ranges": {
        # ESH 2023: >= 180/110 is grade 3 / the threshold of hypertensive urgency.
        "blood_pressure_high": {"high": {"systolic": 180, "diastolic": 110}},
        # Symptomatic hypotension, falls in the elderly.
        "blood_pressure_low": {"high": {"systolic": 90}},
        "pulse_high": {"medium": {"pulse": 120}, "high": {"pulse": 140}},
        "pulse_low": {"medium": {"pulse": 45}, "high": {"pulse": 40}},
    },
    "trends": {},
}

#: Programme -> merge patch over COMMON.
PROFILES: dict[str, Document] = {
    "hypertension": {},
    "heart_failure": {
        "ranges": {
            "pulse_high": {"medium": {"pulse": 110}, "high": {"pulse": 130}},
            "spo2_low": {"high": {"spo2": 92}, "critical": {"spo2": 88}},
        },
        # ESC 2021 heart-failure guideline: weight gain > 2 kg in 3 days -> act.
        "trends": {"weight_gain_3d": {"kg": 2.0, "days": 3, "severity": "high"}},
    },
    "copd": {
        # BTS: target saturation 88-92 % for COPD at risk of hypercapnia.
        "ranges": {
            "spo2_low": {"medium": {"spo2": 90}, "high": {"spo2": 88}, "critical": {"spo2": 85}}
        },
    },
    "diabetes": {
        "ranges": {
            # ADA/IHSG: < 3.9 mmol/L level 1, < 3.0 level 2 hypoglycaemia.
            "glucose_low": {"high": {"glucose": 3.9}, "critical": {"glucose": 3.0}},
            "glucose_high": {"medium": {"glucose": 15.0}, "high": {"glucose": 20.0}},
        },
    },
}

PROGRAMMES: tuple[str, ...] = tuple(PROFILES)


def merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, null deletes, else replace."""
    if not isinstance(patch, dict):
        return patch
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def profile(programme: str) -> Document:
    """The full default document of a programme; an unknown programme gets COMMON."""
    result: Document = merge_patch(COMMON, PROFILES.get(programme, {}))
    return result
