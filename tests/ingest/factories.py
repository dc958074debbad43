"""Helpers of the ingest tests: seeding the registry and reading back what was stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from hemhub.contract import DeviceIdentity
from ingest import registry
from tests.factories import device

Conn = psycopg.Connection[Any]

#: From when a test's hub has its devices on its allow-list unless a test says otherwise:
#: before any reading a test makes.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def entitle(
    conn: Conn,
    hub_id: str,
    device_id: UUID,
    tenant_id: str = "kommun-a",
    since: datetime = LONG_AGO,
) -> None:
    """Register the hub under the tenant and put the device on its allow-list from
    `since`: the hub may write for the device (see ingest.pipeline)."""
    registry.ensure_tenant(conn, tenant_id, tenant_id.title())
    registry.register_hub(conn, hub_id, tenant_id)
    registry.allow_device(conn, hub_id, device_id, since)


def seeded_device(
    conn: Conn,
    *,
    serial: str,
    tenant_id: str = "kommun-a",
    patient_name: str = "Resident A",
    assigned_from: datetime | None = None,
    hub_id: str | None = None,
) -> tuple[DeviceIdentity, UUID, UUID | None]:
    """A device in the registry; assigned to a new patient from `assigned_from` if given,
    and on the allow-list of hub `hub_id` of the tenant (since `LONG_AGO`) if given.

    Returns (identity, device id, patient id or None).
    """
    identity = device(serial=serial)
    device_id = registry.ensure_device(conn, identity)
    patient_id: UUID | None = None
    if assigned_from is not None:
        registry.ensure_tenant(conn, tenant_id, tenant_id.title())
        patient_id = registry.create_patient(conn, tenant_id, patient_name)
        registry.assign_device(conn, device_id, patient_id, assigned_from)
    if hub_id is not None:
        entitle(conn, hub_id, device_id, tenant_id)
    return identity, device_id, patient_id


def readings_of_hub(conn: Conn, hub_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM readings WHERE hub_id = %s ORDER BY measured_at", (hub_id,)
        ).fetchall()


def alerts_of(conn: Conn, patient_id: UUID | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        if patient_id is None:
            return cur.execute("SELECT * FROM alerts ORDER BY opened_at").fetchall()
        return cur.execute(
            "SELECT * FROM alerts WHERE patient_id = %s ORDER BY opened_at", (patient_id,)
        ).fetchall()
