"""Helpers of the ingest tests: seeding the registry and reading back what was stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from hemhub.contract import DeviceIdentity
from ingest import registry
from tests.factories import device

Conn = psycopg.Connection[Any]


def seeded_device(
    conn: Conn,
    *,
    serial: str,
    tenant_id: str = "kommun-a",
    patient_name: str = "Resident A",
    assigned_from: datetime | None = None,
) -> tuple[DeviceIdentity, UUID, UUID | None]:
    """A device in the registry; assigned to a new patient from `assigned_from` if given.

    Returns (identity, device id, patient id or None).
    """
    identity = device(serial=serial)
    device_id = registry.ensure_device(conn, identity)
    patient_id: UUID | None = None
    if assigned_from is not None:
        registry.ensure_tenant(conn, tenant_id, tenant_id.title())
        patient_id = registry.create_patient(conn, tenant_id, patient_name)
        registry.assign_device(conn, device_id, patient_id, assigned_from)
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
