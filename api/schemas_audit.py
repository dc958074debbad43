"""Models of the audit review (api.routers.audit) and of a resident's erasure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from api.schemas import _In, _Out


class AuditEntry(_Out):
    """One access to patient data: who, when, what, through which resource, whose data."""

    id: int
    at: datetime
    subject: str
    role: str
    action: str
    resource: str
    patient_id: uuid.UUID | None
    #: The resident's name, when the resident is one of the principal's own.
    patient_display_name: str | None
    detail: dict[str, Any] | list[Any] | None
    #: The row's place in the hash chain and its hash (docs/audit.md).
    chain_seq: int
    row_hash: str
    #: The resident was erased: patient_id is a pseudonym (docs/audit.md).
    pseudonymised: bool


class AuditPage(_Out):
    entries: list[AuditEntry]
    #: Pass as `after` for the next page; null on the last one.
    next_after: int | None


#: Why a resident is erased: the resident asked (and the principal found no duty to keep
#: the data here), the retention period ran out, or the record was made in error. A
#: choice, not free text, so that the erasure's own audit row holds nothing identifying.
ErasureBasis = Literal["request", "retention", "registered_in_error"]


class ErasureRequest(_In):
    basis: ErasureBasis


class ErasureReport(_Out):
    """What the erasure did; keep `pseudonym` with the resident's record in the journal
    to find the resident's rows of the access log later."""

    pseudonym: uuid.UUID
    basis: ErasureBasis
    readings_deleted: int
    alerts_deleted: int
    alert_events_deleted: int
    threshold_sets_deleted: int
    schedules_deleted: int
    shares_deleted: int
    device_periods_pseudonymised: int
    hub_periods_pseudonymised: int
    audit_rows: int
    audit_rows_digest: str
