"""What the FHIR API supports: one table, read by the search-parameter parser (which
refuses anything not in it) and by `/metadata` (which states it), so the
CapabilityStatement is true by construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FHIR_VERSION = "4.0.1"


@dataclass(frozen=True)
class SearchParam:
    name: str
    #: FHIR search parameter type: reference, token, date, number
    type: str
    documentation: str


@dataclass(frozen=True)
class ResourceSupport:
    type: str
    profile: str | None
    params: tuple[SearchParam, ...]
    includes: tuple[str, ...] = ()
    documentation: str = ""


_PATIENT = SearchParam("patient", "reference", "Patient/<id> or <id>: of one resident")
_COUNT = SearchParam("_count", "number", "entries per page, 1 to 1000 (default 100)")

#: Every resource type served, with its search parameters (interactions: read and
#: search-type for each).
RESOURCES: tuple[ResourceSupport, ...] = (
    ResourceSupport(
        "Patient",
        None,
        (SearchParam("_id", "token", "the resident's id (comma: any of)"), _COUNT),
        documentation="the residents the caller sees (its principal's and those shared with it)",
    ),
    ResourceSupport(
        "Observation",
        "http://hl7.org/fhir/StructureDefinition/vitalsigns",
        (
            _PATIENT,
            SearchParam("code", "token", "LOINC code, [system]|code, comma: any of"),
            SearchParam("date", "date", "effective time; prefixes eq, ge, gt, le, lt"),
            SearchParam(
                "_lastUpdated",
                "date",
                "when hemhub stored the reading; prefixes eq, ge, gt, le, lt",
            ),
            _COUNT,
        ),
        includes=("Observation:patient", "Observation:device"),
        documentation=(
            "readings, in the order hemhub committed them; paging and the next-pull link"
            " are commit-ordered cursors (docs/fhir.md)"
        ),
    ),
    ResourceSupport("Device", None, (_PATIENT, _COUNT)),
    ResourceSupport("DeviceUseStatement", None, (_PATIENT, _COUNT)),
    ResourceSupport("Flag", None, (_PATIENT, _COUNT), documentation="alerts"),
)

BY_TYPE = {r.type: r for r in RESOURCES}

#: Parameters every search takes besides its own: the paging token and the format.
CONTROL_PARAMS = ("_cursor", "_format", "_include")

#: The subject-access operation (api.fhir.subject_access).
SUBJECT_ACCESS_OPERATION = "subject-access"


def capability_statement(base_url: str, software_version: str) -> dict[str, Any]:
    """The CapabilityStatement `/metadata` answers."""
    resources = []
    for r in RESOURCES:
        entry: dict[str, Any] = {
            "type": r.type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": p.name, "type": p.type, "documentation": p.documentation} for p in r.params
            ],
        }
        if r.profile:
            entry["supportedProfile"] = [r.profile]
        if r.includes:
            entry["searchInclude"] = list(r.includes)
        if r.documentation:
            entry["documentation"] = r.documentation
        if r.type == "Patient":
            entry["operation"] = [
                {
                    "name": SUBJECT_ACCESS_OPERATION,
                    "definition": "urn:hemhub:fhir:OperationDefinition/subject-access",
                    "documentation": (
                        "GET Patient/<id>/$subject-access: everything held about the resident"
                        " as one collection Bundle; HMC or admin of its principal"
                    ),
                }
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-06",
        "kind": "instance",
        "software": {"name": "hemhub", "version": software_version},
        "implementation": {"description": "hemhub FHIR R4 read and search", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Bearer tokens (role integration, nurse or admin); every answer confined to"
                    " the token's principal and what is shared with it; every read audited."
                ),
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "RS256 JWT bearer tokens with sub, role and tenant claims",
                },
                "resource": resources,
            }
        ],
    }
