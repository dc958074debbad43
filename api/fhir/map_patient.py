"""A resident as a FHIR Patient (no I/O).

hemhub holds no personal identity number, so the identifier is the pseudonymous id
hemhub gave the resident (`codes.RESIDENT_ID_SYSTEM`); a principal that keeps
personnummer would add it under `codes.PERSONNUMMER_SYSTEM` (docs/fhir.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.fhir import codes


def patient(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`: patients (id, tenant_id, display_name, created_at, deactivated_at)."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(row["id"]),
        "identifier": [
            {"use": "secondary", "system": codes.RESIDENT_ID_SYSTEM, "value": str(row["id"])}
        ],
        "active": row["deactivated_at"] is None,
        "name": [{"text": str(row["display_name"])}],
        "managingOrganization": {
            "identifier": {"system": codes.PRINCIPAL_SYSTEM, "value": str(row["tenant_id"])},
            "display": str(row["tenant_id"]),
        },
    }
    return resource
