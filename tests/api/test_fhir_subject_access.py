"""A resident's data on request: one collection Bundle of everything held about them,
for the HMC or an admin of their principal, audited, with nothing of anyone else."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.auth import Role
from hemhub.settings import Settings
from tests.api.fhir_helpers import add_many, add_reading, device_of, reading_key_of, validate
from tests.api.helpers import NOW, Seed, audit_rows, bearer

pytestmark = pytest.mark.asyncio


async def test_subject_access_bundle_holds_all_of_the_resident_and_nothing_else(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        dev = device_of(conn, seed.alice)
        keys = add_many(
            conn,
            prefix="sar",
            n=500,
            device=dev,
            patient=seed.alice,
            tenant="a",
            start=NOW - timedelta(days=30),
        )
        error = add_reading(
            conn,
            label="sar-error",
            device=dev,
            patient=seed.alice,
            tenant="a",
            measured_at=NOW - timedelta(hours=3),
            status=["general_device_fault"],
        )
        add_many(
            conn,
            prefix="bert",
            n=50,
            device=device_of(conn, seed.bert),
            patient=seed.bert,
            tenant="b",
            start=NOW - timedelta(days=30),
        )
        conn.execute(
            "INSERT INTO threshold_sets (tenant_id, patient_id, version, programme, rules,"
            " created_by, applies_from, note) VALUES ('a', %s, 2, 'hypertension', %s,"
            " 'nurse-7', now(), 'lower after the stroke')",
            (seed.alice, Jsonb({"bp_systolic_high": 150})),
        )
    # A nurse looked at her earlier: that access is part of what is held about her.
    await client.get(f"/fhir/r4/Patient/{seed.alice}", headers=bearer(settings, Role.NURSE, "a"))
    r = await client.get(
        f"/fhir/r4/Patient/{seed.alice}/$subject-access",
        headers=bearer(settings, Role.HMC, "a", sub="hmc-1"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body)
    assert body["type"] == "collection"
    resources = [e["resource"] for e in body["entry"]]
    kinds = Counter(x["resourceType"] for x in resources)
    assert kinds["Patient"] == 1 and kinds["Flag"] == 2
    assert kinds["DeviceUseStatement"] == 1 and kinds["Device"] == 1 and kinds["Basic"] == 1
    observations = [x for x in resources if x["resourceType"] == "Observation"]
    assert {reading_key_of(o) for o in observations} == set(keys) | set(seed.alice_readings) | {
        error
    }
    faulty = [o for o in observations if reading_key_of(o) == error]
    assert len(faulty) == 1 and faulty[0]["dataAbsentReason"]["coding"][0]["code"] == "error"
    events = [x for x in resources if x["resourceType"] == "AuditEvent"]
    assert any(e["agent"][0]["who"]["identifier"]["value"] == "nurse-1" for e in events)
    threshold = next(x for x in resources if x["resourceType"] == "Basic")
    rules = next(e for e in threshold["extension"][0]["extension"] if e["url"] == "rules")
    assert json.loads(rules["valueString"]) == {"bp_systolic_high": 150}
    # Nothing of anyone else: no reference to another resident, no other id anywhere.
    text = json.dumps(body)
    assert str(seed.bert) not in text and str(seed.arne) not in text
    assert seed.bert_reading not in text and str(seed.alert_b_open) not in text
    # Itself audited, with what it held.
    row = [x for x in audit_rows(database_url) if x[0] == "hmc-1"][-1]
    assert row[3] == "fhir.subject_access" and row[5] == seed.alice
    assert row[6]["readings"] == 504


async def test_subject_access_is_for_the_residents_own_hmc_and_admin(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    url = f"/fhir/r4/Patient/{seed.alice}/$subject-access"
    assert (await client.get(url, headers=bearer(settings, Role.ADMIN, "a"))).status_code == 200
    for role in (Role.NURSE, Role.INTEGRATION):
        r = await client.get(url, headers=bearer(settings, role, "a"))
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.get(url, headers=bearer(settings, Role.HMC, "b"))
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    r = await client.get(
        "/fhir/r4/Patient/x/$subject-access", headers=bearer(settings, Role.HMC, "a")
    )
    assert r.status_code == 404
