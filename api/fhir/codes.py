"""Code systems, identifier systems and extension URLs the FHIR API uses.

hemhub's own are URNs under `urn:hemhub:fhir:` (names, not addresses: nothing needs to
be fetched to read them; docs/fhir.md defines each).
"""

from __future__ import annotations

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_PRIORITY_CODES = "http://hl7.org/fhir/flag-priority-code"
FLAG_DETAIL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-detail"
AUDIT_EVENT_TYPE = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_ACTION = "http://hl7.org/fhir/audit-event-action"
DEVICE_NAME_TYPE = "http://hl7.org/fhir/device-nametype"
#: Swedish personal identity number (personnummer); hemhub holds none today.
PERSONNUMMER_SYSTEM = "urn:oid:1.2.752.129.2.1.3.1"

_HEMHUB = "urn:hemhub:fhir:"
#: A resident's pseudonymous id (the id hemhub gave it; no personal identity number).
RESIDENT_ID_SYSTEM = _HEMHUB + "resident-id"
#: A reading's idempotency key (what identifies a measurement across hubs and replays).
READING_ID_SYSTEM = _HEMHUB + "reading-key"
DEVICE_ID_SYSTEM = _HEMHUB + "device-stable-id"
PRINCIPAL_SYSTEM = _HEMHUB + "principal"
#: Codes of what has no LOINC code here: medication-robot events, threshold sets.
HEMHUB_CODES = _HEMHUB + "CodeSystem/hemhub"
#: The alert rules (ingest.rules; `hemhub alerts rules` lists them).
ALERT_RULE_CODES = _HEMHUB + "CodeSystem/alert-rule"
ALERT_SEVERITY_EXTENSION = _HEMHUB + "StructureDefinition/alert-severity"
ALERT_STATUS_EXTENSION = _HEMHUB + "StructureDefinition/alert-status"
#: How the measurement time was established by the hub (docs/gateway.md, clock trust).
CLOCK_TRUST_EXTENSION = _HEMHUB + "StructureDefinition/clock-trust"
THRESHOLD_SET_EXTENSION = _HEMHUB + "StructureDefinition/threshold-set"
