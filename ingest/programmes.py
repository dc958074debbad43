"""Default threshold profiles per care programme, made from the sourced rule table
(ingest.catalogue; docs/alerts.md shows it).

A profile is a complete threshold document (ingest.thresholds.Thresholds): the
catalogue's baseline rows (safety limits for every programme) with the programme's own
rows laid over them (a programme's row for the same rule and severity replaces the
baseline's). Profiles are code, reviewed like code; a change to the catalogue must raise
`PROFILE_VERSION`, which is the version alerts record while a resident has no override
of their own. Residents' overrides (table threshold_sets) continue the numbering after
it, so an alert opened under an older profile keeps saying which version opened it.

Units: pressures mm[Hg], pulse /min, SpO2 %, glucose mmol/L (and mg/dL as
glucose_mg_dl), weight kg. A "high" limit fires at value >= limit, a "low" limit at
value < limit; weight gains at more than `kg`.
"""

from __future__ import annotations

from typing import Any

from ingest import catalogue
from ingest.catalogue import BASELINE, DefaultRule

#: The version of the built-in profiles; raise it with every change of the catalogue.
#: 1: ungraded blood pressure, SpO2 only in heart failure and COPD, glucose only in
#: diabetes, weight gain >= 2 kg in 3 days in heart failure (hemhub before issue 12).
#: 2: the sourced catalogue (graded, baseline limits for every programme).
PROFILE_VERSION = 2

Document = dict[str, Any]

PROGRAMMES: tuple[str, ...] = catalogue.PROGRAMMES

#: The NEWS2 SpO2 scale each programme starts with (2: at risk of hypercapnic failure).
SPO2_SCALE: dict[str, int] = {"copd": 2}


def applies(row: DefaultRule, programme: str, scale: int) -> bool:
    """Whether a catalogue row is part of a programme's profile (on a given SpO2 scale)."""
    if row.spo2_scale is not None:
        return row.spo2_scale == scale
    return BASELINE in row.programmes or programme in row.programmes


def spo2_tiers(scale: int) -> dict[str, dict[str, float]]:
    """The spo2_low tiers of a NEWS2 scale (1 or 2)."""
    return {
        str(r.severity): dict(r.limits) for r in catalogue.rows("range") if r.spo2_scale == scale
    }


def profile(programme: str) -> Document:
    """The full default document of a programme; an unknown programme gets the baseline."""
    scale = SPO2_SCALE.get(programme, 1)
    ranges: dict[str, dict[str, dict[str, float]]] = {}
    # baseline first, then the programme's own rows over it
    rows = [r for r in catalogue.rows("range") if applies(r, programme, scale)]
    rows.sort(key=lambda r: BASELINE not in r.programmes)
    for r in rows:
        ranges.setdefault(r.rule, {})[str(r.severity)] = dict(r.limits)
    trends = {
        r.rule: {
            "kind": "weight_gain",
            "kg": r.kg,
            "days": r.days,
            "severity": str(r.severity),
            "enabled": programme in r.on_for,
        }
        for r in catalogue.rows("weight_gain")
    }
    return {"ranges": ranges, "trends": trends, "spo2_scale": scale}


def flag_rules() -> Document:
    """The device-flag rules (every programme; also the default of documents without)."""
    return {
        r.rule: {
            "kind": "device_flag",
            "flags": list(r.flags),
            "count": r.count,
            "days": r.days,
            "severity": str(r.severity),
        }
        for r in catalogue.rows("device_flag")
    }


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


def programmes_of(row: DefaultRule) -> tuple[str, ...]:
    """The programmes whose profile holds the row, as it is (not replaced by their own)."""
    out = []
    for p in PROGRAMMES:
        doc = profile(p)
        if row.kind == "range":
            if doc["ranges"].get(row.rule, {}).get(str(row.severity)) == dict(row.limits) and (
                row.spo2_scale is None or doc["spo2_scale"] == row.spo2_scale
            ):
                out.append(p)
        elif row.kind == "weight_gain":
            if doc["trends"][row.rule]["enabled"]:
                out.append(p)
        else:
            out.append(p)
    return tuple(out)
