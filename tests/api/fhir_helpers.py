"""Helpers of the FHIR tests: validation of every emitted resource with fhir.resources
(R4B models) and the vital-signs profile's required elements, and readings of every
measurement type inserted in bulk."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
from fhir.resources.R4B import get_fhir_model_class
from psycopg.types.json import Jsonb

from tests.api.helpers import key

VITAL_SIGNS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
UCUM = "http://unitsofmeasure.org"
#: The vital-signs profiles' codes (http://hl7.org/fhir/R4/observation-vitalsigns.html).
VITAL_SIGNS_CODES = {"85354-9", "8867-4", "29463-7", "59408-5", "2708-6", "39156-5", "8302-2"}


def validate(resource: dict[str, Any]) -> None:
    """Raise unless `resource` is a valid R4B resource (and a Bundle's entries too), and
    an Observation also meets the vital-signs profile's required elements."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        validate(entry["resource"])
    if resource["resourceType"] == "Observation":
        check_vital_signs(resource)


def check_vital_signs(obs: dict[str, Any]) -> None:
    """The vital-signs profile: status, category vital-signs, code (LOINC), subject,
    effective[x], a value or components or a dataAbsentReason, UCUM units."""
    codes = {c["code"] for c in obs["code"].get("coding", [])}
    if not codes & VITAL_SIGNS_CODES:
        return  # glucose (laboratory) and medication-robot events are not vital signs
    assert obs["status"] in ("registered", "preliminary", "final", "amended")
    assert any(
        c["system"] == VITAL_SIGNS_CATEGORY and c["code"] == "vital-signs"
        for cat in obs["category"]
        for c in cat["coding"]
    )
    assert obs["subject"]["reference"].startswith("Patient/")
    assert "effectiveDateTime" in obs
    has_value = "valueQuantity" in obs or "dataAbsentReason" in obs
    if "85354-9" in codes:
        components = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
        assert {"8480-6", "8462-4"} <= set(components)
        for c in components.values():
            assert "valueQuantity" in c or "dataAbsentReason" in c
            if "valueQuantity" in c:
                assert c["valueQuantity"]["system"] == UCUM
                assert c["valueQuantity"]["code"] == "mm[Hg]"
        has_value = True
    assert has_value
    if "valueQuantity" in obs:
        q = obs["valueQuantity"]
        assert q["system"] == UCUM and q["code"] == q["unit"]
        expected = {"8867-4": "/min", "29463-7": "kg", "59408-5": "%", "2708-6": "%"}
        for code, unit in expected.items():
            if code in codes:
                assert q["code"] == unit


def bp(systolic: float, diastolic: float, pulse: float | None) -> list[dict[str, Any]]:
    return [
        {"name": "systolic", "loinc": "8480-6", "value": systolic, "unit": "mm[Hg]"},
        {"name": "diastolic", "loinc": "8462-4", "value": diastolic, "unit": "mm[Hg]"},
        {"name": "mean_arterial", "loinc": "8478-0", "value": None, "unit": "mm[Hg]"},
        {"name": "pulse", "loinc": "8867-4", "value": pulse, "unit": "/min"},
    ]


VALUES: dict[str, list[dict[str, Any]]] = {
    "blood_pressure": bp(150, 95, 72),
    "body_weight": [
        {"name": "weight", "loinc": "29463-7", "value": 81.2, "unit": "kg"},
        {"name": "bmi", "loinc": "39156-5", "value": 26.5, "unit": "kg/m2"},
    ],
    "pulse_oximetry": [
        {"name": "spo2", "loinc": "2708-6", "value": 93, "unit": "%"},
        {"name": "spo2_pulse_ox", "loinc": "59408-5", "value": 93, "unit": "%"},
        {"name": "pulse", "loinc": "8867-4", "value": 88, "unit": "/min"},
    ],
    "glucose": [{"name": "glucose", "loinc": "15074-8", "value": 5.4, "unit": "mmol/L"}],
}

_INSERT_READING = """
INSERT INTO readings (measured_at, idempotency_key, hub_id, device_id, patient_id,
    tenant_id, measurement_type, characteristic, "values", status, device_time,
    hub_received_at, clock_source, clock_offset_s, hub_clock_synced, late, raw, event,
    quarantine)
VALUES (%s, %s, 'hub-1', %s, %s, %s, %s, '2A35', %s, %s, NULL, %s, 'set_by_hub', 0, true,
    false, '\\x00', %s, %s)
"""


def add_reading(
    conn: psycopg.Connection[Any],
    *,
    label: str,
    device: uuid.UUID,
    patient: uuid.UUID | None,
    tenant: str | None,
    measured_at: datetime,
    measurement_type: str = "blood_pressure",
    values: list[dict[str, Any]] | None = None,
    status: list[str] | None = None,
    event: dict[str, Any] | None = None,
    quarantine: str | None = None,
) -> str:
    """One reading (and its key row, as ingest stores them: in one transaction)."""
    k = key(label)
    conn.execute(
        "INSERT INTO reading_keys (idempotency_key, measured_at) VALUES (%s, %s)",
        (k, measured_at),
    )
    conn.execute(
        _INSERT_READING,
        (
            measured_at,
            k,
            device,
            patient,
            tenant,
            measurement_type,
            Jsonb(VALUES[measurement_type] if values is None else values),
            status or [],
            measured_at + timedelta(seconds=2),
            Jsonb(event) if event is not None else None,
            quarantine,
        ),
    )
    return k


def add_many(
    conn: psycopg.Connection[Any],
    *,
    prefix: str,
    n: int,
    device: uuid.UUID,
    patient: uuid.UUID,
    tenant: str,
    start: datetime,
    pulse: float | None = None,
) -> list[str]:
    """`n` blood-pressure readings a minute apart, in one statement (keys returned); with
    a `pulse`, each is two Observations (the panel and a heart rate)."""
    rows = conn.execute(
        """
        WITH k AS (
            INSERT INTO reading_keys (idempotency_key, measured_at)
            SELECT encode(sha256(convert_to(%(prefix)s || i, 'UTF8')), 'hex'),
                   %(start)s::timestamptz + i * interval '1 minute'
            FROM generate_series(1, %(n)s) AS i
            RETURNING idempotency_key, measured_at
        )
        INSERT INTO readings (measured_at, idempotency_key, hub_id, device_id, patient_id,
            tenant_id, measurement_type, characteristic, "values", hub_received_at,
            clock_source, clock_offset_s, hub_clock_synced, raw)
        SELECT measured_at, idempotency_key, 'hub-1', %(device)s, %(patient)s, %(tenant)s,
            'blood_pressure', '2A35', %(values)s, measured_at, 'set_by_hub', 0, true, '\\x00'
        FROM k
        RETURNING idempotency_key
        """,
        {
            "prefix": prefix,
            "start": start,
            "n": n,
            "device": device,
            "patient": patient,
            "tenant": tenant,
            "values": Jsonb(bp(130, 85, pulse)),
        },
    ).fetchall()
    return [r[0] for r in rows]


def device_of(conn: psycopg.Connection[Any], patient: uuid.UUID) -> uuid.UUID:
    row = conn.execute(
        "SELECT device_id FROM device_assignments WHERE patient_id = %s", (patient,)
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def pull_all(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[list[dict[str, Any]], str | None]:
    """Every match of a search, following `next`; and the last page's `next-pull`."""
    found: list[dict[str, Any]] = []
    while True:
        r = await client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        found += [e["resource"] for e in page["entry"] if e["search"]["mode"] == "match"]
        links = {link["relation"]: link["url"] for link in page["link"]}
        if "next" not in links:
            return found, links.get("next-pull")
        url = links["next"]


def reading_key_of(observation: dict[str, Any]) -> str:
    return str(observation["identifier"][0]["value"]).split("/")[0]
