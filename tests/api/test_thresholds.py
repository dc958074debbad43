"""GET/PUT /api/v1/patients/{id}/thresholds: versions, tenancy, validation, audit."""

from __future__ import annotations

import uuid

import httpx

from api.auth import Role
from hemhub.settings import Settings
from ingest.programmes import PROFILE_VERSION as PROFILE
from tests.api.helpers import Seed, audit_rows, bearer


async def test_default_is_the_programme_profile(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    r = await client.get(
        f"/api/v1/patients/{seed.arne}/thresholds", headers=bearer(settings, Role.NURSE, "a")
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["programme"], body["version"], body["source"]) == (
        "heart_failure",
        PROFILE,
        "programme",
    )
    assert body["threshold_set_id"] is None and body["history"] == []
    assert body["rules"]["trends"]["weight_gain_3d"] == {
        "kind": "weight_gain",
        "kg": 2.0,
        "days": 3.0,
        "severity": "high",
        "enabled": True,
    }


async def test_put_creates_a_new_version_by_the_caller(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    url = f"/api/v1/patients/{seed.alice}/thresholds"
    headers = bearer(settings, Role.NURSE, "a", sub="dr-eva")
    change = {
        "rules": {"ranges": {"blood_pressure_high": {"high": {"systolic": 160}}}},
        "applies_from": "2026-01-01T00:00:00Z",
        "note": "target after medication change",
    }
    r = await client.put(url, json=change, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["version"], body["source"], body["created_by"]) == (
        PROFILE + 1,
        "patient",
        "dr-eva",
    )
    assert body["rules"]["ranges"]["blood_pressure_high"]["high"] == {
        "systolic": 160.0,
        "diastolic": 110.0,
    }
    r = await client.put(url, json={"rules": {"missing_data": {"grace_hours": 2}}}, headers=headers)
    assert r.json()["version"] == PROFILE + 2
    got = (await client.get(url, headers=headers)).json()
    assert got["version"] == PROFILE + 2
    assert [h["version"] for h in got["history"]] == [PROFILE + 2, PROFILE + 1]
    assert got["rules"]["ranges"]["blood_pressure_high"]["high"]["systolic"] == 160.0
    actions = [(row[3], row[5]) for row in audit_rows(database_url)]
    assert actions.count(("thresholds.change", seed.alice)) == 2
    assert ("thresholds.read", seed.alice) in actions


async def test_put_rejects_invalid_documents_and_other_tenants(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    nurse_a = bearer(settings, Role.NURSE, "a")
    bad = {"rules": {"ranges": {"blood_pressure_high": {"urgent": {"systolic": 1}}}}}
    r = await client.put(f"/api/v1/patients/{seed.alice}/thresholds", json=bad, headers=nurse_a)
    assert r.status_code == 422
    ok = {"rules": {"missing_data": {"grace_hours": 1}}}
    for patient in (seed.bert, uuid.uuid4()):  # another principal's patient, unknown id
        r = await client.put(f"/api/v1/patients/{patient}/thresholds", json=ok, headers=nurse_a)
        assert r.status_code == 404
        r = await client.get(f"/api/v1/patients/{patient}/thresholds", headers=nurse_a)
        assert r.status_code == 404
    hmc = bearer(settings, Role.HMC, "a")
    r = await client.put(f"/api/v1/patients/{seed.alice}/thresholds", json=ok, headers=hmc)
    assert r.status_code == 403
