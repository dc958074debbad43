"""The one way a request reaches patient data: scoped to the caller, audit-logged, fail closed.

Every router that reads or changes patient data does it inside `patient_data(...)`:
the block runs in one transaction with its audit rows, so if the audit row cannot be
written the read fails too and no patient data leaves unlogged. A block that ends
without recording an access (or saying it showed nothing) is an error, not an answer.
A request refused for a patient or alert it may not reach is audited after the
rollback, so probing for other principals' ids is seen.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import HTTPException

from api import audit, queries
from api.auth import Principal
from api.db import Conn
from ingest.fleet_common import Actor, Conflict, FleetError, NotFound


def not_found(what: str) -> HTTPException:
    return HTTPException(404, detail=f"{what} not found")


class UnauditedAccess(RuntimeError):
    """A block under `patient_data` ended without an audit row: nothing is answered."""


class Access:
    """What one request did with patient data; handed out by `patient_data`."""

    def __init__(self, conn: Conn, principal: Principal, action: str, resource: str) -> None:
        self.conn = conn
        self.principal = principal
        self.action = action
        self.resource = resource
        self.accounted = False
        #: (patient, detail) of a refusal, recorded once the transaction rolled back.
        self.refusal: tuple[uuid.UUID | None, dict[str, Any]] | None = None

    async def require_patient(
        self, patient_id: uuid.UUID, *, lock: bool = False, shared: bool = False
    ) -> str:
        """404 unless the caller may reach the patient; return the patient's principal.

        By default (anything that changes, and whatever a share does not cover) only a
        resident of the caller's own principal, within the token's care units when it names
        some (`queries.own`). `shared=True` (reading the resident, its readings and alerts)
        also admits one another principal shares with the caller's (`queries.visible`).
        `lock` holds the patient's row until commit.
        """
        care_units = self.principal.care_units is not None
        scope = (
            queries.visible(at=None, care_units=care_units)
            if shared
            else queries.own(care_units=care_units)
        )
        found = await (
            await self.conn.execute(
                queries.PATIENT_IN_SCOPE_SQL.format(scope=scope) + (" FOR UPDATE" if lock else ""),
                {
                    "id": patient_id,
                    **queries.scope_params(self.principal.tenant, self.principal.care_unit_list),
                },
            )
        ).fetchone()
        if found is None:
            raise self.refuse(not_found("patient"), patient_id, {"outcome": "not_found"})
        return str(found["tenant_id"])

    def refuse(
        self, error: HTTPException, patient_id: uuid.UUID | None, detail: Mapping[str, Any]
    ) -> HTTPException:
        """`error`, to raise; the refusal is audited after the rollback."""
        self.refusal = (patient_id, dict(detail))
        return error

    async def record(
        self, patient_id: uuid.UUID | None, detail: Mapping[str, Any] | None = None
    ) -> None:
        """One audit row for this access (patient_id None: no single patient)."""
        await audit.record_access(
            self.conn, self.principal, self.action, self.resource, patient_id, detail
        )
        self.accounted = True

    async def record_many(
        self, patient_ids: Iterable[uuid.UUID], detail: Mapping[str, Any] | None = None
    ) -> None:
        """One audit row per patient shown (one with no patient when none was)."""
        await audit.record_access_many(
            self.conn, self.principal, self.action, self.resource, patient_ids, detail
        )
        self.accounted = True

    def shows_nothing(self) -> None:
        """Nothing of any patient is answered (e.g. a live event the caller may not see)."""
        self.accounted = True


@asynccontextmanager
async def patient_data(
    conn: Conn, principal: Principal, action: str, resource: str
) -> AsyncIterator[Access]:
    """A transaction in which the caller reaches patient data, and the audit rows of it."""
    access = Access(conn, principal, action, resource)
    try:
        async with conn.transaction():
            yield access
            if not access.accounted:
                raise UnauditedAccess(f"{action} on {resource} wrote no audit row")
    except HTTPException:
        if access.refusal is not None:
            patient_id, detail = access.refusal
            async with conn.transaction():
                await audit.record_access(conn, principal, action, resource, patient_id, detail)
        raise


# --- fleet changes -----------------------------------------------------------------------


def fleet_actor(principal: Principal) -> Actor:
    """Who changes the fleet, as the fleet operations (ingest.inventory, ingest.hub_fleet)
    record it."""
    return Actor(subject=principal.sub, tenant=principal.tenant)


def _fleet_http_error(exc: FleetError) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(404, detail=str(exc))
    if isinstance(exc, Conflict):
        return HTTPException(409, detail=str(exc))
    return HTTPException(422, detail=str(exc))


@asynccontextmanager
async def fleet_change(
    conn: Conn, principal: Principal, action: str, resource: str
) -> AsyncIterator[Access]:
    """`patient_data` for a change of the fleet: the change and its audit row commit
    together; a refused change (unknown: 404, impossible now: 409 with the reason,
    invalid: 422) is answered and audited with its reason after the rollback."""
    async with patient_data(conn, principal, action, resource) as access:
        try:
            yield access
        except FleetError as exc:
            outcome = {404: "not_found", 409: "conflict"}.get(_fleet_http_error(exc).status_code)
            raise access.refuse(
                _fleet_http_error(exc), None, {"outcome": outcome or "invalid", "reason": str(exc)}
            ) from exc
