"""A principal never sees another's resources through the FHIR API: not by a direct
read, a search, an _include, nor an edited paging link; a share shows what it covers."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import psycopg
import pytest

from api.auth import Role
from api.fhir.map_observation import observation_id
from hemhub.settings import Settings
from tests.api.fhir_helpers import add_many, device_of, pull_all, reading_key_of, validate
from tests.api.helpers import NOW, Seed, audit_rows, bearer

pytestmark = pytest.mark.asyncio

BASE = "/fhir/r4"


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle["entry"]}


async def test_direct_reads_of_another_principals_resources_are_404(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    b = bearer(settings, Role.INTEGRATION, "b", sub="journal-b")
    a = bearer(settings, Role.INTEGRATION, "a")
    uses = (await client.get(f"{BASE}/DeviceUseStatement?patient={seed.alice}", headers=a)).json()
    use = uses["entry"][0]["resource"]
    for url in (
        f"{BASE}/Patient/{seed.alice}",
        f"{BASE}/Observation/{observation_id(seed.alice_readings[0], 'bp')}",
        f"{BASE}/Flag/{seed.alert_a_open}",
        f"{BASE}/DeviceUseStatement/{use['id']}",
        f"{BASE}/{use['device']['reference']}",
    ):
        r = await client.get(url, headers=b)
        assert r.status_code == 404, url
        validate(r.json())
        # The same read by its own principal answers.
        assert (await client.get(url, headers=a)).status_code == 200, url
    # Each refusal is audited (probing for another's ids is seen).
    refused = [r for r in audit_rows(database_url) if r[0] == "journal-b"]
    assert len(refused) == 5 and all(r[6] == {"outcome": "not_found"} for r in refused)


async def test_searches_and_includes_show_only_the_callers(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    b = bearer(settings, Role.INTEGRATION, "b")
    everything = (
        await client.get(
            f"{BASE}/Observation?_include=Observation:patient&_include=Observation:device",
            headers=b,
        )
    ).json()
    kinds = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in everything["entry"]}
    assert kinds == {("Observation", "match"), ("Patient", "include"), ("Device", "include")}
    observations = [e["resource"] for e in everything["entry"] if e["search"]["mode"] == "match"]
    assert {reading_key_of(o) for o in observations} == {seed.bert_reading}
    patients = [
        e["resource"] for e in everything["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert [p["id"] for p in patients] == [str(seed.bert)]
    # Asking for another's resident by id finds nothing (not an error: a search).
    for resource in ("Observation", "Flag", "Device", "DeviceUseStatement"):
        r = await client.get(f"{BASE}/{resource}?patient={seed.alice}", headers=b)
        assert r.status_code == 200 and r.json()["entry"] == [], resource
    r = await client.get(f"{BASE}/Patient?_id={seed.alice},{seed.bert}", headers=b)
    assert _ids(r.json()) == {str(seed.bert)}
    for resource, own in (("Patient", {str(seed.bert)}), ("Flag", {str(seed.alert_b_open)})):
        assert _ids((await client.get(f"{BASE}/{resource}", headers=b)).json()) == own


def _token(url: str) -> dict[str, Any]:
    token = dict(parse_qsl(urlsplit(url).query))["_cursor"]
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return body


def _with_token(url: str, body: dict[str, Any], **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    query["_cursor"] = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    return f"{parts.path}?{urlencode(query)}"


async def test_edited_paging_links_never_reach_another_principal(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_many(
            conn,
            prefix="a",
            n=30,
            device=device_of(conn, seed.alice),
            patient=seed.alice,
            tenant="a",
            start=NOW - timedelta(days=1),
        )
        add_many(
            conn,
            prefix="b",
            n=30,
            device=device_of(conn, seed.bert),
            patient=seed.bert,
            tenant="b",
            start=NOW - timedelta(days=1),
        )
    a = bearer(settings, Role.INTEGRATION, "a")
    b = bearer(settings, Role.INTEGRATION, "b")
    page = (await client.get(f"{BASE}/Observation?_count=5", headers=a)).json()
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    # Another principal's token holder cannot use a's link...
    r = await client.get(next_url, headers=b)
    assert r.status_code == 400 and "another principal" in r.json()["issue"][0]["diagnostics"]
    # ...nor a's token rewritten to name b ...
    body = _token(next_url)
    r = await client.get(_with_token(next_url, {**body, "t": "b"}), headers=a)
    assert r.status_code == 400
    # ... nor the link with its search changed (another resident).
    r = await client.get(_with_token(next_url, body, patient=str(seed.bert)), headers=a)
    assert r.status_code == 400 and "another search" in r.json()["issue"][0]["diagnostics"]
    # b's own token, its position moved to the start and its horizon to the end of time:
    # still only b's readings (the scope is applied on every page).
    b_page = (await client.get(f"{BASE}/Observation?_count=5", headers=b)).json()
    b_next = next(link["url"] for link in b_page["link"] if link["relation"] == "next")
    edited = {**_token(b_next), "a": ["0", "", -1], "h": str(2**62)}
    found, _ = await pull_all(client, _with_token(b_next, edited), b)
    assert found and all(o["subject"]["reference"] == f"Patient/{seed.bert}" for o in found)
    # Tokens of the resources paged by id too.
    resources = await client.get(f"{BASE}/Patient?_count=1", headers=a)
    patient_next = next(
        link["url"] for link in resources.json()["link"] if link["relation"] == "next"
    )
    r = await client.get(patient_next, headers=b)
    assert r.status_code == 400


async def test_a_share_shows_the_shared_period_only(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    """Region b is granted Alice for the last 36 hours: it sees her, and of her readings
    those measured in the period (the last one), through the same rule as the API."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO patient_shares (patient_id, owner_tenant_id, grantee_tenant_id, purpose,"
            " reason, starts_at, ends_at, granted_by)"
            " VALUES (%s, 'a', 'b', 'care', 'hospital stay', %s, %s, 'admin-a')",
            (seed.alice, NOW - timedelta(hours=36), NOW + timedelta(days=1)),
        )
    b = bearer(settings, Role.NURSE, "b")
    r = await client.get(f"{BASE}/Observation?patient={seed.alice}", headers=b)
    assert {reading_key_of(e["resource"]) for e in r.json()["entry"]} == {seed.alice_readings[2]}
    assert (await client.get(f"{BASE}/Patient/{seed.alice}", headers=b)).status_code == 200
    older = observation_id(seed.alice_readings[0], "bp")
    assert (await client.get(f"{BASE}/Observation/{older}", headers=b)).status_code == 404


async def test_hostile_paging_tokens_are_400_never_500(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_many(
            conn,
            prefix="h",
            n=10,
            device=device_of(conn, seed.alice),
            patient=seed.alice,
            tenant="a",
            start=NOW - timedelta(days=1),
        )
    a = bearer(settings, Role.INTEGRATION, "a")
    page = (await client.get(f"{BASE}/Observation?_count=2", headers=a)).json()
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    body = _token(next_url)
    for edit in (
        {"a": ["1", "\u0000", 0]},
        {"a": ["9" * 40, "", 0]},
        {"a": ["1", "", "0"]},
        {"a": ["1", "", True]},
        {"a": "x"},
        {"h": "9" * 30},
        {"h": -1},
        {"v": 2},
    ):
        r = await client.get(_with_token(next_url, {**body, **edit}), headers=a)
        assert r.status_code == 400, (edit, r.text)
        validate(r.json())
    patients = (await client.get(f"{BASE}/Patient?_count=1", headers=a)).json()
    patient_next = next(link["url"] for link in patients["link"] if link["relation"] == "next")
    for after in (["not-a-uuid"], [1], []):
        r = await client.get(
            _with_token(patient_next, {**_token(patient_next), "a": after}), headers=a
        )
        assert r.status_code == 400, after
