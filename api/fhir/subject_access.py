"""A resident's data on request: everything hemhub holds about one resident as one FHIR
collection Bundle (the right of access, GDPR art. 15), for the HMC or an admin of the
resident's own principal, itself audited.

What it holds: the Patient; every reading attributed to the resident as Observations
(device errors without values, like the search); every alert as a Flag; every
assignment period as a DeviceUseStatement with its Device; every threshold set as a
Basic; and every audit row about the resident as an AuditEvent (docs/fhir.md).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from api.access import not_found, patient_data
from api.auth import Fleet
from api.db import DbConn
from api.fhir import bundle, fhir_queries, map_device, map_flag, map_record
from api.fhir.map_observation import observations
from api.fhir.map_patient import patient as patient_resource
from api.fhir.outcome import FhirResponse
from api.fhir.router import base_url, scope, scope_params

router = APIRouter(prefix="/fhir/r4", tags=["fhir"])

#: Every row of a resident in one answer (the LIMIT of the paged queries).
ALL = 2**31 - 1


@router.get("/Patient/{patient_id}/$subject-access", response_class=FhirResponse)
async def subject_access(
    patient_id: str, request: Request, principal: Fleet, conn: DbConn
) -> FhirResponse:
    """Everything held about the resident, as one collection Bundle."""
    resource = f"fhir/Patient/{patient_id[:80]}/$subject-access"
    async with patient_data(conn, principal, "fhir.subject_access", resource) as access:
        try:
            pid = uuid.UUID(patient_id)
        except ValueError:
            raise access.refuse(not_found("patient"), None, {"outcome": "not_found"}) from None
        # Only the resident's own principal answers for it (a share does not cover this).
        await access.require_patient(pid)
        own = {**scope_params(principal), "patient": pid, "after": fhir_queries.FIRST_UUID}
        patient_scope = scope(principal, at=None, tenant="p.tenant_id", patient="p.id")
        cur = await conn.execute(
            fhir_queries.PATIENTS_SQL.format(scope=patient_scope, filters="AND p.id = %(patient)s"),
            {**own, "limit": 1},
        )
        resources: list[dict[str, Any]] = [patient_resource(r) for r in await cur.fetchall()]
        cur = await conn.execute(
            fhir_queries.PATIENT_READINGS_SQL.format(
                scope=scope(
                    principal, at="r.measured_at", tenant="r.tenant_id", patient="r.patient_id"
                )
            ),
            own,
        )
        readings = await cur.fetchall()
        device_ids = {r["device_id"] for r in readings}
        observation_resources = [m.resource for r in readings for m in observations(r)]
        cur = await conn.execute(
            fhir_queries.FLAGS_SQL.format(
                scope=scope(
                    principal, at="a.measured_at", tenant="a.tenant_id", patient="a.patient_id"
                ),
                filters="AND a.patient_id = %(patient)s",
            ),
            {**own, "limit": ALL},
        )
        flags = [map_flag.flag(r) for r in await cur.fetchall()]
        cur = await conn.execute(
            fhir_queries.ASSIGNMENTS_SQL.format(
                scope=patient_scope, filters="AND da.patient_id = %(patient)s"
            ),
            {**own, "limit": ALL},
        )
        assignments = await cur.fetchall()
        device_ids |= {a["device_id"] for a in assignments}
        cur = await conn.execute(fhir_queries.DEVICES_BY_ID_SQL, {"ids": sorted(device_ids)})
        devices = [map_device.device(d) for d in await cur.fetchall()]
        cur = await conn.execute(fhir_queries.THRESHOLDS_SQL, {"patient": pid})
        thresholds = [map_record.threshold_set(t) for t in await cur.fetchall()]
        cur = await conn.execute(fhir_queries.AUDIT_SQL, {"patient": pid})
        audit_events = [map_record.audit_event(a) for a in await cur.fetchall()]
        resources += observation_resources + flags
        resources += [map_device.device_use_statement(a) for a in assignments] + devices
        resources += thresholds + audit_events
        await access.record(
            pid,
            {
                "readings": len(readings),
                "observations": len(observation_resources),
                "alerts": len(flags),
                "assignments": len(assignments),
                "threshold_sets": len(thresholds),
                "audit_events": len(audit_events),
            },
        )
    return FhirResponse(bundle.collection(base_url(request), resources))
