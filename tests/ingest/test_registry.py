"""Registry operations against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from ingest import registry
from ingest.migrations import migrate
from tests.factories import device

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_ensure_tenant_is_idempotent_and_renames(conn: psycopg.Connection[Any]) -> None:
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    registry.ensure_tenant(conn, "kommun-a", "Kommun Alfa")
    assert conn.execute("SELECT id, name FROM tenants").fetchall() == [("kommun-a", "Kommun Alfa")]


def test_create_patient(conn: psycopg.Connection[Any]) -> None:
    registry.ensure_tenant(conn, "region-x", "Region X")
    p1 = registry.create_patient(conn, "region-x", "Anna")
    p2 = registry.create_patient(conn, "region-x", "Bo", programme="heart_failure")
    assert p1 != p2
    rows = conn.execute(
        "SELECT id, tenant_id, display_name, programme FROM patients ORDER BY display_name"
    ).fetchall()
    assert rows == [
        (p1, "region-x", "Anna", "hypertension"),
        (p2, "region-x", "Bo", "heart_failure"),
    ]


def test_ensure_device_upserts_on_stable_id(conn: psycopg.Connection[Any]) -> None:
    dev = device(serial="S-1")
    first = registry.ensure_device(conn, dev, seen_at=T0)
    again = registry.ensure_device(
        conn, dev.model_copy(update={"firmware": "1.1"}), seen_at=T0 + timedelta(days=1)
    )
    older = registry.ensure_device(
        conn, dev.model_copy(update={"firmware": "0.9"}), seen_at=T0 - timedelta(days=1)
    )
    assert first == again == older
    assert registry.device_id_by_stable_id(conn, dev.stable_id) == first
    row = conn.execute("SELECT firmware, first_seen_at, last_seen_at FROM devices").fetchone()
    assert row == ("1.1", T0, T0 + timedelta(days=1))
    # without a serial the address is the identity
    bare = device(serial="").model_copy(update={"serial": None})
    assert registry.ensure_device(conn, bare) != first
    assert registry.device_id_by_stable_id(conn, bare.address) is not None


def test_assignment_lifecycle(conn: psycopg.Connection[Any]) -> None:
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    registry.ensure_tenant(conn, "region-b", "Region B")
    a = registry.create_patient(conn, "kommun-a", "A")
    b = registry.create_patient(conn, "region-b", "B")
    dev = registry.ensure_device(conn, device(serial="S-2"))

    first = registry.assign_device(conn, dev, a, T0)
    with pytest.raises(registry.AssignmentError, match="still assigned"):
        registry.assign_device(conn, dev, b, T0 + timedelta(days=1))
    with pytest.raises(registry.AssignmentError, match="not after the start"):
        registry.end_assignment(conn, dev, T0)
    assert registry.end_assignment(conn, dev, T0 + timedelta(days=10)) == first
    with pytest.raises(registry.AssignmentError, match="no open assignment"):
        registry.end_assignment(conn, dev, T0 + timedelta(days=11))
    # a new period may not start inside the previous one
    with pytest.raises(registry.AssignmentError, match="cannot start before"):
        registry.assign_device(conn, dev, b, T0 + timedelta(days=5))
    second = registry.assign_device(conn, dev, b, T0 + timedelta(days=10))

    rows = conn.execute(
        "SELECT id, patient_id, tenant_id, started_at, ended_at FROM device_assignments"
        " ORDER BY started_at"
    ).fetchall()
    assert rows == [
        (first, a, "kommun-a", T0, T0 + timedelta(days=10)),
        (second, b, "region-b", T0 + timedelta(days=10), None),  # tenant from the patient
    ]


def test_assignment_rejects_unknowns_and_naive_times(conn: psycopg.Connection[Any]) -> None:
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    patient = registry.create_patient(conn, "kommun-a", "A")
    dev = registry.ensure_device(conn, device(serial="S-3"))
    with pytest.raises(registry.RegistryError, match="UTC offset"):
        registry.assign_device(conn, dev, patient, T0.replace(tzinfo=None))
    with pytest.raises(registry.RegistryError, match="unknown patient"):
        registry.assign_device(conn, dev, dev, T0)
    with pytest.raises(registry.RegistryError, match="unknown device"):
        registry.assign_device(conn, patient, patient, T0)
    assert conn.execute("SELECT count(*) FROM device_assignments").fetchone() == (0,)


def test_registry_works_inside_a_caller_transaction(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:  # not autocommit: the caller commits
        registry.ensure_tenant(conn, "kommun-a", "Kommun A")
        patient = registry.create_patient(conn, "kommun-a", "A")
        dev = registry.ensure_device(conn, device(serial="S-4"))
        registry.assign_device(conn, dev, patient, T0)
        with pytest.raises(registry.AssignmentError):
            registry.assign_device(conn, dev, patient, T0 + timedelta(days=1))
        conn.commit()  # the failed call rolled back to its savepoint only
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM device_assignments").fetchone() == (1,)


# --- care units and fleet ownership --------------------------------------------------------


def test_care_units(conn: psycopg.Connection[Any]) -> None:
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    registry.ensure_tenant(conn, "region-b", "Region B")
    north = registry.create_care_unit(conn, "kommun-a", " Norr ")
    south = registry.create_care_unit(conn, "kommun-a", "Syd")
    west = registry.create_care_unit(conn, "region-b", "Norr")  # names are per tenant
    with pytest.raises(registry.RegistryError, match="already has a care unit named 'Norr'"):
        registry.create_care_unit(conn, "kommun-a", "Norr")
    with pytest.raises(registry.RegistryError, match="needs a name"):
        registry.create_care_unit(conn, "kommun-a", "  ")
    with pytest.raises(registry.RegistryError, match="unknown tenant"):
        registry.create_care_unit(conn, "nobody", "X")

    a = registry.create_patient(conn, "kommun-a", "A")
    registry.place_patient(conn, a, north)
    with pytest.raises(registry.RegistryError, match="not a unit of tenant kommun-a"):
        registry.place_patient(conn, a, west)
    with pytest.raises(registry.RegistryError, match="unknown patient"):
        registry.place_patient(conn, uuid4(), north)
    units = registry.care_units(conn, "kommun-a")
    assert [(u.id, u.name, u.tenant_id, u.residents) for u in units] == [
        (north, "Norr", "kommun-a", 1),
        (south, "Syd", "kommun-a", 0),
    ]
    registry.place_patient(conn, a, None)
    row = conn.execute("SELECT care_unit_id FROM patients WHERE id = %s", (a,)).fetchone()
    assert row == (None,)
    assert [u.residents for u in registry.care_units(conn, "kommun-a")] == [0, 0]
    assert [u.id for u in registry.care_units(conn, "region-b")] == [west]


def test_device_owner_from_first_assignment(conn: psycopg.Connection[Any]) -> None:
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    registry.ensure_tenant(conn, "region-b", "Region B")
    a = registry.create_patient(conn, "kommun-a", "A")
    b = registry.create_patient(conn, "region-b", "B")
    dev = registry.ensure_device(conn, device(serial="S-OWN"))

    def owner() -> object:
        row = conn.execute("SELECT owner_tenant_id FROM devices WHERE id = %s", (dev,)).fetchone()
        return row[0] if row else "missing"

    assert owner() is None
    registry.assign_device(conn, dev, a, T0)
    assert owner() == "kommun-a"
    registry.end_assignment(conn, dev, T0 + timedelta(days=1))
    registry.assign_device(conn, dev, b, T0 + timedelta(days=2))
    assert owner() == "kommun-a"  # lent on to another principal, still a's fleet
    registry.set_device_owner(conn, dev, "region-b")
    assert owner() == "region-b"
    registry.set_device_owner(conn, dev, None)
    assert owner() is None
    with pytest.raises(registry.RegistryError, match="unknown tenant"):
        registry.set_device_owner(conn, dev, "nobody")
    with pytest.raises(registry.RegistryError, match="unknown device"):
        registry.set_device_owner(conn, uuid4(), "kommun-a")


def test_deactivate_patient(conn: psycopg.Connection[Any]) -> None:
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    a = registry.create_patient(conn, "kommun-a", "A")
    dev = registry.ensure_device(conn, device(serial="S-D"))
    registry.assign_device(conn, dev, a, T0)
    with pytest.raises(registry.AssignmentError, match="still has devices assigned"):
        registry.deactivate_patient(conn, a, by="hmc-1", reason="moved")
    # an assignment ending in the future would still attribute: refused too
    now = datetime.now(UTC)
    registry.end_assignment(conn, dev, now + timedelta(days=1))
    with pytest.raises(registry.AssignmentError, match="S-D"):
        registry.deactivate_patient(conn, a, by="hmc-1", reason="moved")
    conn.execute("UPDATE device_assignments SET ended_at = %s", (now - timedelta(hours=1),))
    with pytest.raises(registry.RegistryError, match="reason"):
        registry.deactivate_patient(conn, a, by="hmc-1", reason=" ")
    at = registry.deactivate_patient(conn, a, by="hmc-1", reason="moved")
    assert conn.execute(
        "SELECT deactivated_at, deactivated_by, deactivation_reason FROM patients"
    ).fetchall() == [(at, "hmc-1", "moved")]
    with pytest.raises(registry.RegistryError, match="was deactivated"):
        registry.deactivate_patient(conn, a, by="hmc-1", reason="again")
    with pytest.raises(registry.AssignmentError, match="deactivated"):
        registry.assign_device(conn, dev, a, now)
    with pytest.raises(registry.RegistryError, match="unknown patient"):
        registry.deactivate_patient(conn, uuid4(), by="hmc-1", reason="x")
