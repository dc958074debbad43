"""FHIR R4 read and search: the CapabilityStatement, each resource type, each search
parameter, and OperationOutcome for every error; every resource emitted validates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role
from api.fhir.capabilities import RESOURCES
from api.fhir.map_observation import observation_id
from hemhub.settings import Settings
from tests.api.fhir_helpers import add_reading, device_of, reading_key_of, validate
from tests.api.helpers import NOW, Seed, api_client, audit_rows, bearer, make_settings

pytestmark = pytest.mark.asyncio

BASE = "/fhir/r4"


@dataclass
class Rich:
    """Alice's readings of every kind besides the seed's three cuff readings."""

    bp_pulse: str
    weight: str
    spo2: str
    glucose: str
    error: str
    event: str
    quarantined: str


@pytest.fixture
def rich(database_url: str, seed: Seed) -> Rich:
    with psycopg.connect(database_url, autocommit=True) as conn:
        dev = device_of(conn, seed.alice)

        def add(label: str, hours: int, **kw: Any) -> str:
            return add_reading(
                conn,
                label=label,
                device=dev,
                patient=kw.pop("patient", seed.alice),
                tenant=kw.pop("tenant", "a"),
                measured_at=NOW - timedelta(hours=hours),
                **kw,
            )

        return Rich(
            bp_pulse=add("bp-pulse", 10),
            weight=add("weight", 9, measurement_type="body_weight"),
            spo2=add("spo2", 8, measurement_type="pulse_oximetry"),
            glucose=add("glucose", 7, measurement_type="glucose"),
            error=add("error", 6, status=["sensor_malfunction", "irregular_pulse"]),
            event=add(
                "event",
                5,
                measurement_type="medication_event",
                values=[],
                event={"kind": "missed", "dose_id": 3, "needs_staff_attention": True},
            ),
            quarantined=add(
                "quarantined", 4, patient=None, tenant=None, quarantine="hub_not_entitled"
            ),
        )


async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = r.json()
    validate(body)
    return body


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


async def _search(
    client: httpx.AsyncClient, settings: Settings, query: str, role: Role = Role.INTEGRATION
) -> list[dict[str, Any]]:
    body = await _get(client, f"{BASE}/Observation?{query}", bearer(settings, role, "a"))
    return _matches(body)


async def test_metadata_states_the_table_the_router_uses(client: httpx.AsyncClient) -> None:
    body = await _get(client, f"{BASE}/metadata", {})
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    served = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert set(served) == {r.type for r in RESOURCES}
    assert {p["name"] for p in served["Observation"]["searchParam"]} == {
        "patient",
        "code",
        "date",
        "_lastUpdated",
        "_count",
    }
    assert served["Observation"]["searchInclude"] == ["Observation:patient", "Observation:device"]
    for resource in RESOURCES:
        assert {p["name"] for p in served[resource.type]["searchParam"]} == {
            p.name for p in resource.params
        }
        assert served[resource.type]["interaction"] == [{"code": "read"}, {"code": "search-type"}]
    assert served["Patient"]["operation"][0]["name"] == "subject-access"


async def test_every_declared_parameter_is_taken_and_others_refused(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    headers = bearer(settings, Role.INTEGRATION, "a")
    sample = {
        "patient": str(seed.alice),
        "_id": str(seed.alice),
        "code": "85354-9",
        "date": "ge2020",
        "_lastUpdated": "ge2020",
        "_count": "5",
    }
    for resource in RESOURCES:
        for param in resource.params:
            await _get(client, f"{BASE}/{resource.type}?{param.name}={sample[param.name]}", headers)
        r = await client.get(f"{BASE}/{resource.type}?colour=red", headers=headers)
        assert r.status_code == 400
        outcome = r.json()
        validate(outcome)
        assert outcome["issue"][0]["code"] == "not-supported"
        assert "colour" in outcome["issue"][0]["diagnostics"]


async def test_observations_of_every_kind_validate(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, rich: Rich
) -> None:
    found = await _search(client, settings, f"patient={seed.alice}&_count=1000")
    by_id = {o["id"]: o for o in found}
    # The seed's three cuff readings (no pulse: panel only) and the rich ones.
    assert observation_id(seed.alice_readings[0], "bp") in by_id
    assert (
        observation_id(rich.bp_pulse, "bp") in by_id
        and observation_id(rich.bp_pulse, "hr") in by_id
    )
    panel = by_id[observation_id(rich.bp_pulse, "bp")]
    assert [c["code"]["coding"][0]["code"] for c in panel["component"]] == ["8480-6", "8462-4"]
    assert panel["component"][0]["valueQuantity"]["value"] == 150
    assert panel["effectiveDateTime"].startswith((NOW - timedelta(hours=10)).date().isoformat())
    assert panel["device"]["reference"].startswith("Device/")
    trust = panel["extension"][0]
    assert trust["url"].endswith("clock-trust")
    assert {e["url"] for e in trust["extension"]} == {
        "source",
        "offsetSeconds",
        "hubClockSynced",
        "late",
    }
    assert by_id[observation_id(rich.weight, "wt")]["valueQuantity"]["code"] == "kg"
    assert observation_id(rich.weight, "bmi") in by_id
    spo2 = by_id[observation_id(rich.spo2, "spo2")]
    assert [c["code"] for c in spo2["code"]["coding"]] == ["59408-5", "2708-6"]
    glucose = by_id[observation_id(rich.glucose, "glum")]
    assert glucose["valueQuantity"]["code"] == "mmol/L"
    assert glucose["category"][0]["coding"][0]["code"] == "laboratory"
    # A device error is never a value; the medication event is a coded event.
    error = by_id[observation_id(rich.error, "bp")]
    assert error["dataAbsentReason"]["coding"][0]["code"] == "error"
    assert all("valueQuantity" not in c for c in error["component"])
    assert observation_id(rich.error, "hr") not in by_id
    assert "sensor_malfunction" in error["note"][0]["text"]
    assert by_id[observation_id(rich.event, "med")]["valueCodeableConcept"]["text"] == "missed"
    # A quarantined reading belongs to nobody: never exported.
    assert all(reading_key_of(o) != rich.quarantined for o in found)


async def test_search_by_code(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, rich: Rich
) -> None:
    hr = await _search(client, settings, "code=http://loinc.org|8867-4")
    assert {o["id"] for o in hr} == {
        observation_id(rich.bp_pulse, "hr"),
        observation_id(rich.spo2, "hr"),
    }
    both = await _search(client, settings, "code=29463-7,59408-5")
    assert {o["id"] for o in both} == {
        observation_id(rich.weight, "wt"),
        observation_id(rich.spo2, "spo2"),
    }
    r = await client.get(
        f"{BASE}/Observation?code=1234-5", headers=bearer(settings, Role.NURSE, "a")
    )
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


async def test_search_by_date_prefixes(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    # The seed: alice's cuff readings 3, 2 and 1 days ago (bert's is tenant b's).
    def at(days: int) -> str:
        return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")

    keys = seed.alice_readings

    async def found(query: str) -> set[str]:
        return {reading_key_of(o) for o in await _search(client, settings, query)}

    assert await found(f"date=ge{at(2)}") == {keys[1], keys[2]}
    assert await found(f"date=gt{at(2)}") == {keys[2]}
    assert await found(f"date=le{at(2)}") == {keys[0], keys[1]}
    assert await found(f"date=lt{at(2)}") == {keys[0]}
    assert await found(f"date=eq{at(2)}") == {keys[1]}
    assert await found(f"date={at(2)}") == {keys[1]}
    day = (NOW - timedelta(days=2)).date().isoformat()
    assert await found(f"date={day}") == {keys[1]}
    assert await found(f"date=ge{at(3)}&date=lt{at(1)}") == {keys[0], keys[1]}
    for bad in ("ne2020", "2020-13-01", "2020-01-01T10:00", "yesterday"):
        r = await client.get(
            f"{BASE}/Observation?date={bad}", headers=bearer(settings, Role.NURSE, "a")
        )
        assert r.status_code == 400, bad
        validate(r.json())


async def test_search_by_last_updated(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    stored = {
        reading_key_of(o): o["meta"]["lastUpdated"] for o in await _search(client, settings, "")
    }
    assert set(stored) == set(seed.alice_readings)
    with psycopg.connect(database_url, autocommit=True) as conn:
        later = add_reading(
            conn,
            label="later",
            device=device_of(conn, seed.alice),
            patient=seed.alice,
            tenant="a",
            measured_at=NOW - timedelta(days=10),
        )
    newest = max(stored.values())
    after = await _search(client, settings, f"_lastUpdated=gt{newest.replace('+00:00', 'Z')}")
    assert {reading_key_of(o) for o in after} == {later}  # its panel and heart rate
    assert await _search(client, settings, "_lastUpdated=lt2000-01-01") == []


async def test_count_and_paging_links(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, rich: Rich
) -> None:
    headers = bearer(settings, Role.INTEGRATION, "a")
    page = await _get(client, f"{BASE}/Observation?_count=2", headers)
    assert len(_matches(page)) == 2
    links = {link["relation"]: link["url"] for link in page["link"]}
    assert links["self"].endswith("/fhir/r4/Observation?_count=2")
    assert "_cursor=" in links["next"] and "_count=2" in links["next"]
    second = await _get(client, links["next"], headers)
    assert not {o["id"] for o in _matches(second)} & {o["id"] for o in _matches(page)}
    r = await client.get(f"{BASE}/Observation?_count=0", headers=headers)
    assert r.status_code == 400


async def test_include_patient_and_device(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    body = await _get(
        client,
        f"{BASE}/Observation?_include=Observation:patient&_include=Observation:device",
        bearer(settings, Role.INTEGRATION, "a"),
    )
    included = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "include"]
    assert {r["resourceType"] for r in included} == {"Patient", "Device"}
    patient = next(r for r in included if r["resourceType"] == "Patient")
    assert patient["id"] == str(seed.alice)
    assert patient["identifier"][0]["value"] == str(seed.alice)
    device = next(r for r in included if r["resourceType"] == "Device")
    assert device["manufacturer"] == "Omron" and device["serialNumber"] == "SN-A"
    r = await client.get(
        f"{BASE}/Observation?_include=Observation:performer",
        headers=bearer(settings, Role.NURSE, "a"),
    )
    assert r.status_code == 400


async def test_reads_of_each_type(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    headers = bearer(settings, Role.NURSE, "a")
    obs_id = observation_id(seed.alice_readings[2], "bp")
    obs = await _get(client, f"{BASE}/Observation/{obs_id}", headers)
    assert obs["id"] == obs_id and obs["note"] == [{"text": "device flags: irregular_pulse"}]
    patient = await _get(client, f"{BASE}/Patient/{seed.alice}", headers)
    assert patient["name"] == [{"text": "Alice Andersson"}] and patient["active"] is True
    uses = _matches(await _get(client, f"{BASE}/DeviceUseStatement?patient={seed.alice}", headers))
    assert len(uses) == 1 and uses[0]["status"] == "active"
    use = await _get(client, f"{BASE}/DeviceUseStatement/{uses[0]['id']}", headers)
    device_ref = use["device"]["reference"]
    device = await _get(client, f"{BASE}/{device_ref}", headers)
    assert device["modelNumber"] == "BP7150"
    flags = _matches(await _get(client, f"{BASE}/Flag?patient={seed.alice}", headers))
    assert {f["id"] for f in flags} == {str(seed.alert_a_open), str(seed.alert_a_resolved)}
    flag = await _get(client, f"{BASE}/Flag/{seed.alert_a_open}", headers)
    assert flag["status"] == "active"
    detail = next(e for e in flag["extension"] if e["url"].endswith("flag-detail"))
    assert detail["valueReference"]["reference"] == f"Observation/{obs_id}"
    resolved = await _get(client, f"{BASE}/Flag/{seed.alert_a_resolved}", headers)
    assert resolved["status"] == "inactive" and "end" in resolved["period"]
    patients = _matches(await _get(client, f"{BASE}/Patient", headers))
    assert {p["id"] for p in patients} == {str(seed.alice), str(seed.arne)}


async def test_errors_are_operation_outcomes(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    cases = [
        (f"{BASE}/Observation", {}, 401, "login"),
        (f"{BASE}/Observation", bearer(settings, Role.HMC, "a"), 403, "forbidden"),
        (f"{BASE}/Patient/{uuid.uuid4()}", bearer(settings, Role.NURSE, "a"), 404, "not-found"),
        (f"{BASE}/Patient/not-a-uuid", bearer(settings, Role.NURSE, "a"), 404, "not-found"),
        (f"{BASE}/Observation/nonsense", bearer(settings, Role.NURSE, "a"), 404, "not-found"),
        (f"{BASE}/Flag/{uuid.uuid4()}", bearer(settings, Role.NURSE, "a"), 404, "not-found"),
        (f"{BASE}/Medication", bearer(settings, Role.NURSE, "a"), 404, "not-found"),
        (f"{BASE}/Observation?_count=x", bearer(settings, Role.NURSE, "a"), 400, "invalid"),
        (f"{BASE}/Observation?patient=Device/1", bearer(settings, Role.NURSE, "a"), 400, "invalid"),
        (
            f"{BASE}/Observation?_format=xml",
            bearer(settings, Role.NURSE, "a"),
            400,
            "not-supported",
        ),
        (
            f"{BASE}/Observation?code:text=bp",
            bearer(settings, Role.NURSE, "a"),
            400,
            "not-supported",
        ),
        (f"{BASE}/Observation?_cursor=garbage", bearer(settings, Role.NURSE, "a"), 400, "invalid"),
        (f"{BASE}/Observation?patient=%00", bearer(settings, Role.NURSE, "a"), 400, "invalid"),
        (
            f"{BASE}/Observation?date=gt9999-12-31",
            bearer(settings, Role.NURSE, "a"),
            400,
            "invalid",
        ),
        (
            f"{BASE}/Observation?_lastUpdated=0000",
            bearer(settings, Role.NURSE, "a"),
            400,
            "invalid",
        ),
        (f"{BASE}/Observation?code=%00", bearer(settings, Role.NURSE, "a"), 400, "not-supported"),
        (
            f"{BASE}/Observation?patient=1&patient=2",
            bearer(settings, Role.NURSE, "a"),
            400,
            "invalid",
        ),
    ]
    for url, headers, status, code in cases:
        r = await client.get(url, headers=headers)
        assert r.status_code == status, (url, r.text)
        body = r.json()
        validate(body)
        assert body["resourceType"] == "OperationOutcome", url
        assert body["issue"][0]["code"] == code, (url, body)
    # The API's own paths keep their usual error body.
    r = await client.get("/api/v1/patients")
    assert r.status_code == 401 and "detail" in r.json()


async def test_searches_are_audited_per_resident(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    headers = bearer(settings, Role.INTEGRATION, "a", sub="journal")
    await _get(client, f"{BASE}/Observation?_include=Observation:patient", headers)
    await _get(client, f"{BASE}/Observation?patient={seed.arne}", headers)
    rows = [r for r in audit_rows(database_url) if r[0] == "journal"]
    assert [(r[3], r[4], r[5]) for r in rows] == [
        ("fhir.search", "fhir/Observation", seed.alice),
        ("fhir.search", "fhir/Observation", None),
    ]
    assert rows[0][6]["count"] == 3


async def test_database_unreachable_is_a_503_operation_outcome(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"  # port 9: discard, closed
    settings = make_settings(tmp_path, url)
    async with api_client(settings) as client:
        assert (await client.get(f"{BASE}/metadata")).status_code == 200  # needs no database
        r = await client.get(f"{BASE}/Observation", headers=bearer(settings, Role.NURSE, "a"))
    assert r.status_code == 503
    body = r.json()
    validate(body)
    assert body["issue"][0]["code"] == "transient"
