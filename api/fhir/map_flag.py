"""An alert as a FHIR Flag (no I/O).

Flag, not DetectedIssue (docs/fhir.md): an alert is a warning about a resident that
stays in force until someone resolves it, which is Flag's lifecycle (status active or
inactive, `period` from opening to resolution). DetectedIssue's status is a report's
(preliminary, final, amended) and has no "no longer in force". The reading that raised
it is the standard `flag-detail` extension, its urgency the standard `flag-priority`;
hemhub's own severity and three states (open, acknowledged, resolved) are extensions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.fhir import codes
from api.fhir.map_observation import PARTS, observation_id

_PRIORITY = {"critical": "PH", "high": "PH", "medium": "PM", "low": "PL"}
_PRIORITY_DISPLAY = {"PH": "High priority", "PM": "Medium priority", "PL": "Low priority"}


def flag(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`: alerts (id, patient_id, rule, severity, status, reason, opened_at,
    resolved_at, reading_key, reading_type)."""
    period: dict[str, str] = {"start": row["opened_at"].isoformat()}
    if row["resolved_at"] is not None:
        period["end"] = row["resolved_at"].isoformat()
    priority = _PRIORITY[str(row["severity"])]
    extension: list[dict[str, Any]] = [
        {
            "url": codes.FLAG_PRIORITY_EXTENSION,
            "valueCodeableConcept": {
                "coding": [
                    {
                        "system": codes.FLAG_PRIORITY_CODES,
                        "code": priority,
                        "display": _PRIORITY_DISPLAY[priority],
                    }
                ]
            },
        },
        {"url": codes.ALERT_SEVERITY_EXTENSION, "valueCode": str(row["severity"])},
        {"url": codes.ALERT_STATUS_EXTENSION, "valueCode": str(row["status"])},
    ]
    parts = PARTS.get(str(row["reading_type"] or ""), ())
    if row["reading_key"] and parts:
        extension.append(
            {
                "url": codes.FLAG_DETAIL_EXTENSION,
                "valueReference": {
                    "reference": "Observation/"
                    + observation_id(row["reading_key"], parts[0].suffix)
                },
            }
        )
    return {
        "resourceType": "Flag",
        "id": str(row["id"]),
        "extension": extension,
        "status": "inactive" if row["status"] == "resolved" else "active",
        "category": [
            {"coding": [{"system": codes.FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}]}
        ],
        "code": {
            "coding": [{"system": codes.ALERT_RULE_CODES, "code": str(row["rule"])}],
            "text": str(row["last_reason"] or row["reason"]),
        },
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "period": period,
    }
