"""Access log of patient data (required by Swedish patient-data law, and checked).

Call these inside the same transaction as the read they record: if the audit row
cannot be written the read fails too, so no patient data leaves unlogged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from api.auth import Principal


async def record_access(
    conn: AsyncConnection[Any],
    principal: Principal,
    action: str,
    resource: str,
    patient_id: uuid.UUID | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """One audit row: who (sub, role, tenant) did what to which resource/patient."""
    await conn.execute(
        "INSERT INTO audit_log (subject, role, tenant_id, action, resource, patient_id, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            principal.sub,
            principal.role.value,
            principal.tenant,
            action,
            resource,
            patient_id,
            Jsonb(dict(detail)) if detail is not None else None,
        ),
    )


async def record_access_many(
    conn: AsyncConnection[Any],
    principal: Principal,
    action: str,
    resource: str,
    patient_ids: Iterable[uuid.UUID],
    detail: Mapping[str, Any] | None = None,
) -> None:
    """One row per patient whose data a list response showed.

    Why per patient: the log is reviewed as "who looked at this patient", which the
    (patient_id, at) index answers only if each patient has its own row. An empty
    response still leaves one row (patient_id NULL): the access itself happened.
    """
    ids = list(dict.fromkeys(patient_ids))  # unique, order kept
    if not ids:
        await record_access(conn, principal, action, resource, None, detail)
        return
    await conn.execute(
        "INSERT INTO audit_log (subject, role, tenant_id, action, resource, patient_id, detail)"
        " SELECT %s, %s, %s, %s, %s, p, %s FROM unnest(%s::uuid[]) AS p",
        (
            principal.sub,
            principal.role.value,
            principal.tenant,
            action,
            resource,
            Jsonb(dict(detail)) if detail is not None else None,
            ids,
        ),
    )
