"""What the subject-access bundle holds besides readings: audit rows as AuditEvent and
threshold sets as Basic (no I/O).

Thresholds are hemhub's own documents (ingest.thresholds), with no FHIR resource of
their own: each version is a `Basic` with code `threshold-set`, its author and date,
and the document itself, verbatim, in an extension (docs/fhir.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from api.fhir import codes

#: Audit actions that only read (AuditEvent.action R); any other is E (executed).
_READ_VERBS = ("read", "list", "search", "export", "show", "stream")


def audit_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`: audit_log (id, at, subject, role, tenant_id, action, resource, patient_id,
    detail)."""
    action = str(row["action"])
    reads = any(verb in action for verb in _READ_VERBS)
    entity: dict[str, Any] = {
        "what": {"reference": f"Patient/{row['patient_id']}"},
        "description": str(row["resource"]),
    }
    if row["detail"] is not None:
        entity["detail"] = [
            {"type": "detail", "valueString": json.dumps(row["detail"], sort_keys=True)}
        ]
    return {
        "resourceType": "AuditEvent",
        "id": f"audit-{row['id']}",
        "type": {
            "system": codes.AUDIT_EVENT_TYPE,
            "code": "110110",
            "display": "Patient Record",
        },
        "subtype": [{"system": codes.HEMHUB_CODES, "code": action}],
        "action": "R" if reads else "E",
        "recorded": row["at"].isoformat(),
        "agent": [
            {
                "type": {"text": str(row["role"])},
                "who": {
                    "identifier": {"system": codes.PRINCIPAL_SYSTEM, "value": str(row["subject"])},
                    "display": f"{row['subject']} ({row['role']}, {row['tenant_id']})",
                },
                "requestor": True,
            }
        ],
        "source": {"observer": {"display": "hemhub"}},
        "entity": [entity],
    }


def threshold_set(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`: threshold_sets (id, patient_id, version, programme, rules, created_by,
    created_at, applies_from, note)."""
    parts: list[dict[str, Any]] = [
        {"url": "version", "valueInteger": int(row["version"])},
        {"url": "programme", "valueString": str(row["programme"])},
        {"url": "appliesFrom", "valueDateTime": row["applies_from"].isoformat()},
        {"url": "rules", "valueString": json.dumps(row["rules"], sort_keys=True)},
    ]
    if row["note"]:
        parts.append({"url": "note", "valueString": str(row["note"])})
    return {
        "resourceType": "Basic",
        "id": str(row["id"]),
        "extension": [{"url": codes.THRESHOLD_SET_EXTENSION, "extension": parts}],
        "code": {
            "coding": [{"system": codes.HEMHUB_CODES, "code": "threshold-set"}],
            "text": "alert thresholds of the resident",
        },
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "created": row["created_at"].date().isoformat(),
        "author": {"display": str(row["created_by"])},
    }
