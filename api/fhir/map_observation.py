"""A stored reading as FHIR Observations, per the R4 vital-signs profiles (no I/O).

One reading can be several Observations: a cuff's reading is a blood-pressure panel
(85354-9, systolic 8480-6 and diastolic 8462-4 as components) and, when the cuff
reported the pulse, a heart rate (8867-4); an oximeter's is an SpO2 (59408-5 with
2708-6) and a heart rate; a scale's a body weight (29463-7) and, when sent, a BMI and a
height. Each is a `Part` with a fixed suffix, so an Observation's id is stable:
`<reading key in base32>-<suffix>`.

A reading the device flagged as its own fault (ingest.health.DEVICE_ERROR_FLAGS and
DEVICE_ERROR_EVENTS) is never exported as a value: its first Observation carries
dataAbsentReason `error` instead of every value, and the flags in a note.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.fhir import codes
from ingest.health import DEVICE_ERROR_EVENTS, DEVICE_ERROR_FLAGS


@dataclass(frozen=True)
class Part:
    """One Observation made from a reading."""

    suffix: str
    #: (LOINC code, display) of Observation.code, the first the profile's.
    loinc: tuple[tuple[str, str], ...]
    category: str
    #: A panel's components (LOINC, display, required by the profile).
    components: tuple[tuple[str, str, bool], ...] = ()
    #: The stored values' LOINC codes whose value this Observation carries.
    value_loincs: tuple[str, ...] = ()
    #: Observation.code from hemhub's code system instead of LOINC (an event).
    hemhub_code: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes a `code` search matches this Part with."""
        return tuple(c for c, _ in self.loinc) + ((self.hemhub_code,) if self.hemhub_code else ())


_HEART_RATE = Part("hr", (("8867-4", "Heart rate"),), "vital-signs", value_loincs=("8867-4",))

#: The Observations of each measurement type, the first always made (the reading's own).
PARTS: dict[str, tuple[Part, ...]] = {
    "blood_pressure": (
        Part(
            "bp",
            (("85354-9", "Blood pressure panel with all children optional"),),
            "vital-signs",
            components=(
                ("8480-6", "Systolic blood pressure", True),
                ("8462-4", "Diastolic blood pressure", True),
                ("8478-0", "Mean blood pressure", False),
            ),
        ),
        _HEART_RATE,
    ),
    "body_weight": (
        Part("wt", (("29463-7", "Body weight"),), "vital-signs", value_loincs=("29463-7",)),
        Part(
            "bmi",
            (("39156-5", "Body mass index (BMI) [Ratio]"),),
            "vital-signs",
            value_loincs=("39156-5",),
        ),
        Part("ht", (("8302-2", "Body height"),), "vital-signs", value_loincs=("8302-2",)),
    ),
    "pulse_oximetry": (
        Part(
            "spo2",
            (
                ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
                ("2708-6", "Oxygen saturation in Arterial blood"),
            ),
            "vital-signs",
            value_loincs=("59408-5", "2708-6"),
        ),
        _HEART_RATE,
    ),
    # Glucose is not one of the vital-signs profiles: a glucometer's result is laboratory.
    "glucose": (
        Part(
            "glu",
            (("2339-0", "Glucose [Mass/volume] in Blood"),),
            "laboratory",
            value_loincs=("2339-0",),
        ),
        Part(
            "glum",
            (("15074-8", "Glucose [Moles/volume] in Blood"),),
            "laboratory",
            value_loincs=("15074-8",),
        ),
    ),
    "medication_event": (Part("med", (), "activity", hemhub_code="medication-event"),),
}

#: Which (measurement type, part suffix) a code of a `code` search names.
PARTS_BY_CODE: dict[str, list[tuple[str, str]]] = {
    code: [(t, p.suffix) for t, parts in PARTS.items() for p in parts if code in p.codes]
    for parts in PARTS.values()
    for part in parts
    for code in part.codes
}


def observation_id(reading_key: str, suffix: str) -> str:
    """A FHIR id (at most 64 of [A-Za-z0-9-.]) for a reading's Part: the 64-hex key is
    too long with a suffix, so it is written in base32 (52 characters)."""
    digest = bytes.fromhex(reading_key)
    return base64.b32encode(digest).decode().rstrip("=").lower() + "-" + suffix


def parse_observation_id(resource_id: str) -> tuple[str, str] | None:
    """(reading key, suffix) of an Observation id, None if it cannot be one of ours."""
    encoded, _, suffix = resource_id.partition("-")
    if len(encoded) != 52 or not suffix:
        return None
    try:
        digest = base64.b32decode(encoded.upper() + "====")
    except (binascii.Error, ValueError):
        return None
    return (digest.hex(), suffix) if len(digest) == 32 else None


def device_error_flags(status: Sequence[str], event: Mapping[str, Any] | None) -> list[str]:
    """What makes a reading the device's own fault (empty: a measurement)."""
    found = [s for s in status if s in DEVICE_ERROR_FLAGS]
    if event is not None and event.get("kind") in DEVICE_ERROR_EVENTS:
        found.append(f"event:{event['kind']}")
    return found


def _instant(value: datetime) -> str:
    return value.isoformat()


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}


_ERROR = {"coding": [{"system": codes.DATA_ABSENT_REASON, "code": "error", "display": "Error"}]}
_MISSING = {
    "coding": [{"system": codes.DATA_ABSENT_REASON, "code": "unknown", "display": "Unknown"}],
    "text": "the device reported a special value (NaN, NRes or out of range)",
}


def _value(entry: Mapping[str, Any] | None, error: bool) -> dict[str, Any]:
    """valueQuantity, or dataAbsentReason when there is none to give."""
    if error:
        return {"dataAbsentReason": _ERROR}
    if entry is None or entry.get("value") is None:
        return {"dataAbsentReason": _MISSING}
    return {"valueQuantity": _quantity(float(entry["value"]), str(entry["unit"]))}


def _code(part: Part) -> dict[str, Any]:
    if part.hemhub_code is not None:
        return {
            "coding": [{"system": codes.HEMHUB_CODES, "code": part.hemhub_code}],
            "text": "medication robot event",
        }
    return {
        "coding": [{"system": codes.LOINC, "code": c, "display": d} for c, d in part.loinc],
        "text": part.loinc[0][1],
    }


def clock_trust_extension(row: Mapping[str, Any]) -> dict[str, Any]:
    """How the hub established the measurement time (docs/fhir.md)."""
    return {
        "url": codes.CLOCK_TRUST_EXTENSION,
        "extension": [
            {"url": "source", "valueCode": str(row["clock_source"])},
            {"url": "offsetSeconds", "valueDecimal": float(row["clock_offset_s"])},
            {"url": "hubClockSynced", "valueBoolean": bool(row["hub_clock_synced"])},
            {"url": "late", "valueBoolean": bool(row["late"])},
        ],
    }


@dataclass
class MappedObservation:
    part_index: int
    suffix: str
    resource: dict[str, Any] = field(default_factory=dict)


def observations(
    row: Mapping[str, Any], *, only_codes: Iterable[str] | None = None
) -> list[MappedObservation]:
    """The Observations of a reading row (readings joined with reading_keys), in Part
    order; with `only_codes`, only the Parts a `code` search names."""
    parts = PARTS.get(str(row["measurement_type"]), ())
    wanted = set(only_codes) if only_codes is not None else None
    values: list[Mapping[str, Any]] = list(row["values"] or [])
    by_loinc = {str(v.get("loinc")): v for v in values}
    event = row["event"]
    errors = device_error_flags(row["status"] or [], event)
    other_flags = [s for s in (row["status"] or []) if s not in DEVICE_ERROR_FLAGS]
    out: list[MappedObservation] = []
    for index, part in enumerate(parts):
        primary = index == 0
        if errors and not primary:
            continue  # an error reading is one Observation without values
        entry = next((by_loinc[c] for c in part.value_loincs if c in by_loinc), None)
        if not primary and (entry is None or entry.get("value") is None):
            continue  # a heart rate, BMI or height only when the device sent one
        if primary and part.value_loincs and entry is None and not errors:
            continue  # a glucose reading has one of its two units
        if wanted is not None and not wanted.intersection(part.codes):
            continue
        out.append(
            MappedObservation(index, part.suffix, _resource(row, part, entry, errors, other_flags))
        )
    return out


def _resource(
    row: Mapping[str, Any],
    part: Part,
    entry: Mapping[str, Any] | None,
    errors: list[str],
    other_flags: list[str],
) -> dict[str, Any]:
    key = str(row["idempotency_key"])
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id(key, part.suffix),
        "meta": {"lastUpdated": _instant(row["stored_at"])},
        "extension": [clock_trust_extension(row)],
        "identifier": [{"system": codes.READING_ID_SYSTEM, "value": f"{key}/{part.suffix}"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": codes.OBSERVATION_CATEGORY,
                        "code": part.category,
                        "display": {
                            "vital-signs": "Vital Signs",
                            "laboratory": "Laboratory",
                            "activity": "Activity",
                        }[part.category],
                    }
                ]
            }
        ],
        "code": _code(part),
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "effectiveDateTime": _instant(row["measured_at"]),
        "issued": _instant(row["stored_at"]),
        "device": {"reference": f"Device/{row['device_id']}"},
    }
    error = bool(errors)
    if part.components:
        values = {str(v.get("loinc")): v for v in (row["values"] or [])}
        resource["component"] = [
            {
                "code": {
                    "coding": [{"system": codes.LOINC, "code": code, "display": display}],
                    "text": display,
                },
                **_value(values.get(code), error),
            }
            for code, display, required in part.components
            if required or (code in values and values[code].get("value") is not None)
        ]
        if error:
            resource["dataAbsentReason"] = _ERROR
    elif part.hemhub_code is not None:
        event = row["event"] or {}
        if error:
            resource["dataAbsentReason"] = _ERROR
        else:
            resource["valueCodeableConcept"] = {
                "coding": [{"system": codes.HEMHUB_CODES, "code": f"event-{event.get('kind')}"}],
                "text": str(event.get("kind")),
            }
    else:
        resource.update(_value(entry, error))
    notes = []
    if errors:
        notes.append("device error, no value exported: " + ", ".join(errors))
    if other_flags:
        notes.append("device flags: " + ", ".join(other_flags))
    event = row["event"]
    if event is not None and not error:
        details = {k: v for k, v in event.items() if k != "kind" and v is not None}
        if details:
            notes.append("event " + ", ".join(f"{k}={v}" for k, v in sorted(details.items())))
    if notes:
        resource["note"] = [{"text": n} for n in notes]
    return resource
