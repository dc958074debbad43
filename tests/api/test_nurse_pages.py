"""The nurse's pages' endpoints against a real, migrated PostgreSQL: the triage queue,
an alert's page, a resident's chart and medication calendar; confinement and audit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import psycopg
import pytest

from api.auth import Role
from hemhub.settings import Settings
from ingest.migrations import MigrationReport
from tests.api.helpers import audit_rows, bearer
from tests.api.nurse_helpers import NOW, Ward, seed_ward


@pytest.fixture
def ward(database_url: str, migration: MigrationReport) -> Ward:
    return seed_ward(database_url)


def nurse(settings: Settings, tenant: str = "a", **kw: object) -> dict[str, str]:
    return bearer(settings, Role.NURSE, tenant, "anna", **kw)  # type: ignore[arg-type]


def audits(database_url: str, action: str) -> list[tuple[object, ...]]:
    return [r for r in audit_rows(database_url) if r[3] == action]


# --- triage queue -------------------------------------------------------------------------


async def test_triage_is_severity_first_then_longest_waiting(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    r = await client.get("/api/v1/triage", headers=nurse(settings))
    assert r.status_code == 200, r.text
    body = r.json()
    # Critical first though newest; of the two high ones the longer waiting first.
    assert [a["id"] for a in body["alerts"]] == [
        str(ward.critical),
        str(ward.high_old),
        str(ward.high_new),
        str(ward.medium),
    ]
    assert body["counts"] == {"critical": 1, "high": 2, "medium": 1, "low": 0}
    assert body["total"] == 4
    top = body["alerts"][0]
    assert top["patient_display_name"] == "Greta Lind"
    assert top["care_unit_name"] == "Norr"
    assert top["rule_version"] == 3
    # The reason in codes and numbers, from the reading and the version that fired.
    assert top["reason_parts"] == {
        "kind": "range",
        "direction": "above",
        "values": [
            {"metric": "systolic", "value": 225.0, "unit": "mm[Hg]"},
            {"metric": "diastolic", "value": 125.0, "unit": "mm[Hg]"},
        ],
        "limits": [
            {"metric": "systolic", "value": 220.0, "unit": "mm[Hg]"},
            {"metric": "diastolic", "value": 120.0, "unit": "mm[Hg]"},
        ],
        "flags": [],
        "event": None,
    }
    pulse = body["alerts"][2]["reason_parts"]
    assert pulse["values"] == [{"metric": "pulse", "value": 135.0, "unit": "/min"}]
    assert pulse["limits"] == [{"metric": "pulse", "value": 131.0, "unit": "/min"}]
    assert body["alerts"][3]["reason_parts"]["kind"] == "other"
    assert body["care_units"] == [{"id": str(ward.unit), "name": "Norr"}]
    # One audit row per resident shown.
    rows = audits(database_url, "triage.read")
    assert {r[5] for r in rows} == {ward.greta, ward.harald}


async def test_triage_filters_by_care_unit_and_programme(
    client: httpx.AsyncClient, settings: Settings, ward: Ward
) -> None:
    r = await client.get(
        "/api/v1/triage", params={"care_unit": str(ward.unit)}, headers=nurse(settings)
    )
    assert [a["id"] for a in r.json()["alerts"]] == [str(ward.critical), str(ward.high_new)]
    assert r.json()["counts"]["medium"] == 0
    r = await client.get(
        "/api/v1/triage", params={"programme": "heart_failure"}, headers=nurse(settings)
    )
    assert [a["id"] for a in r.json()["alerts"]] == [str(ward.high_old), str(ward.medium)]
    # A page of the most urgent; the counts and total are of all.
    r = await client.get("/api/v1/triage", params={"limit": 2}, headers=nurse(settings))
    assert [a["id"] for a in r.json()["alerts"]] == [str(ward.critical), str(ward.high_old)]
    assert r.json()["total"] == 4
    r = await client.get("/api/v1/triage", params={"programme": "x"}, headers=nurse(settings))
    assert r.status_code == 422 and "programme" in r.json()["detail"]


async def test_triage_is_confined_to_the_principal_and_its_care_units(
    client: httpx.AsyncClient, settings: Settings, ward: Ward
) -> None:
    r = await client.get("/api/v1/triage", headers=nurse(settings, "b"))
    assert [a["id"] for a in r.json()["alerts"]] == [str(ward.ivar_alert)]
    assert r.json()["care_units"] == []
    # Another principal's unit id filters to nothing rather than leaking.
    r = await client.get(
        "/api/v1/triage", params={"care_unit": str(ward.unit)}, headers=nurse(settings, "b")
    )
    assert r.json()["alerts"] == [] and r.json()["total"] == 0
    # A unit-scoped token sees its unit's residents only.
    r = await client.get("/api/v1/triage", headers=nurse(settings, care_units=[ward.unit]))
    assert {a["patient_id"] for a in r.json()["alerts"]} == {str(ward.greta)}
    r = await client.get("/api/v1/triage", headers=bearer(settings, Role.HMC, "a", "tech"))
    assert r.status_code == 403


# --- an alert's page ----------------------------------------------------------------------


async def test_alert_page_shows_readings_thresholds_and_who_did_what(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    h = nurse(settings)
    r = await client.post(
        f"/api/v1/alerts/{ward.critical}/ack", json={"note": "called Greta"}, headers=h
    )
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    r = await client.post(
        f"/api/v1/alerts/{ward.critical}/resolve",
        json={"note": "doctor adjusted the dose"},
        headers=bearer(settings, Role.NURSE, "a", "bo"),
    )
    assert r.status_code == 200 and r.json()["resolution_note"] == "doctor adjusted the dose"
    r = await client.get(f"/api/v1/alerts/{ward.critical}/page", headers=h)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["alert"]["status"] == "resolved"
    # Readings of the measurement from 3 days before to 1 day after, oldest first.
    readings = page["readings"]
    assert len(readings) == 3 + 2  # days 3, 2, 1 before, the pulse one and the critical one
    assert [x["measured_at"] for x in readings] == sorted(x["measured_at"] for x in readings)
    fired = [x for x in readings if x["fired"]]
    assert [x["id"] for x in fired] == [ward.critical_reading]
    assert {x["time_note"] for x in readings} == {None, "hub_clock_unsynced"}
    # The version that fired, not the programme default.
    assert page["thresholds"]["version"] == 3
    assert page["thresholds"]["threshold_set_id"] == str(ward.override)
    assert page["thresholds"]["note"] == "lower after medication change"
    assert page["thresholds"]["rules"]["ranges"]["blood_pressure_high"]["high"] == {
        "systolic": 170.0,
        "diastolic": 105.0,
    }
    assert [(e["action"], e["actor"], e["note"]) for e in page["history"]] == [
        ("opened", "hemhub", None),
        ("acknowledged", "anna", "called Greta"),
        ("resolved", "bo", "doctor adjusted the dose"),
    ]
    assert [r[4:6] for r in audits(database_url, "alert.read")] == [
        (f"alerts/{ward.critical}", ward.greta)
    ]


async def test_alert_page_of_a_missing_data_alert_shows_that_measurement(
    client: httpx.AsyncClient, settings: Settings, ward: Ward
) -> None:
    r = await client.get(f"/api/v1/alerts/{ward.medium}/page", headers=nurse(settings))
    assert r.status_code == 200
    page = r.json()
    assert page["alert"]["reason_parts"]["kind"] == "other"
    assert page["thresholds"]["source"] == "programme"
    assert page["readings"] == []  # Harald has no blood pressure: that is the alert


async def test_alert_page_of_another_principal_is_404_and_audited(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    r = await client.get(f"/api/v1/alerts/{ward.ivar_alert}/page", headers=nurse(settings))
    assert r.status_code == 404
    r = await client.get(f"/api/v1/alerts/{uuid.uuid4()}/page", headers=nurse(settings))
    assert r.status_code == 404
    refused = audits(database_url, "alert.read")
    assert len(refused) == 2 and all(row[6] == {"outcome": "not_found"} for row in refused)
    # Nor can it be acknowledged from there.
    r = await client.post(f"/api/v1/alerts/{ward.ivar_alert}/ack", headers=nurse(settings))
    assert r.status_code == 404


async def test_acknowledging_twice_keeps_one_step(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    for _ in range(2):
        r = await client.post(
            f"/api/v1/alerts/{ward.high_new}/ack", json={"note": "seen"}, headers=nurse(settings)
        )
        assert r.status_code == 200
    with psycopg.connect(database_url) as conn:
        steps = conn.execute(
            "SELECT action, actor, note FROM alert_events WHERE alert_id = %s", (ward.high_new,)
        ).fetchall()
    assert steps == [("acknowledged", "anna", "seen")]
    r = await client.post(
        f"/api/v1/alerts/{ward.high_new}/ack", json={"note": "x" * 2001}, headers=nurse(settings)
    )
    assert r.status_code == 422


# --- a resident's chart ------------------------------------------------------------------


async def test_chart_holds_the_points_bands_markers_and_missing_data(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    r = await client.get(
        f"/api/v1/patients/{ward.greta}/chart", params={"days": 30}, headers=nurse(settings)
    )
    assert r.status_code == 200, r.text
    chart = r.json()
    assert chart["display_name"] == "Greta Lind" and chart["care_unit_name"] == "Norr"
    # 29 daily readings inside the 30 days (the 30th is at the edge) plus two today.
    systolic = chart["series"]["systolic"]
    assert len(systolic) in (31, 32)
    assert systolic[-1]["v"] == 225.0
    assert chart["downsampled"]["systolic"] is False
    assert [p["v"] for p in chart["series"]["weight"]] == [70 + i * 0.5 for i in range(10)]
    changes = [c["change"] for c in chart["weight_change"]]
    assert changes[:3] == [None, None, None] and changes[3:] == [1.5] * 7
    assert chart["units"]["systolic"] == "mm[Hg]" and chart["units"]["glucose"] == "mmol/L"
    # The programme default for 20 days, then Greta's version 3 for the last 10.
    segments = chart["bands"]["systolic"]
    assert [s["version"] for s in segments] == [2, 3]
    assert {"severity": "high", "value": 170.0} in segments[1]["above"]
    assert {"severity": "high", "value": 91.0} in segments[0]["below"]
    assert segments[0]["to"] == segments[1]["from"]
    markers = {m["id"]: m for m in chart["markers"]}
    assert markers[str(ward.critical)]["metrics"] == ["systolic", "diastolic"]
    assert markers[str(ward.high_new)]["metrics"] == ["pulse"]
    (bp_schedule,) = chart["missing"]
    assert bp_schedule["measurement_type"] == "blood_pressure"
    assert bp_schedule["overdue"] is False and bp_schedule["every_s"] == 86400
    assert chart["unsynced_readings"] == 15  # every other day's reading
    assert audits(database_url, "chart.read")[0][5] == ward.greta


async def test_chart_of_a_resident_with_no_readings_tells_what_is_missing(
    client: httpx.AsyncClient, settings: Settings, ward: Ward
) -> None:
    r = await client.get(
        f"/api/v1/patients/{ward.harald}/chart", params={"days": 7}, headers=nurse(settings)
    )
    chart = r.json()
    assert chart["series"]["systolic"] == []
    (bp_schedule,) = chart["missing"]
    assert bp_schedule["overdue"] is True and bp_schedule["last_valid_at"] is None
    assert len(bp_schedule["gaps"]) == 1


async def test_chart_of_90_days_downsamples_a_dense_series(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        device = conn.execute(
            "SELECT device_id FROM readings WHERE patient_id = %s LIMIT 1", (ward.greta,)
        ).fetchone()
        assert device is not None
        conn.execute(
            """
            INSERT INTO readings (measured_at, idempotency_key, hub_id, device_id, patient_id,
                tenant_id, measurement_type, characteristic, "values", hub_received_at,
                clock_source, clock_offset_s, hub_clock_synced, raw)
            SELECT %(now)s - i * interval '2 hours', 'dense-' || i, 'hub-n', %(device)s,
                %(patient)s, 'a', 'pulse_oximetry', '2A5F',
                jsonb_build_array(jsonb_build_object('name', 'spo2', 'loinc', '2708-6',
                    'value', 90 + i %% 8, 'unit', '%%')),
                %(now)s, 'set_by_hub', 0, true, '\\x00'
            FROM generate_series(1, 1000) i
            """,
            {"now": NOW, "device": device[0], "patient": ward.greta},
        )
    r = await client.get(
        f"/api/v1/patients/{ward.greta}/chart", params={"days": 90}, headers=nurse(settings)
    )
    chart = r.json()
    spo2 = chart["series"]["spo2"]
    assert chart["downsampled"]["spo2"] is True and 0 < len(spo2) <= 300
    assert sum(p["n"] for p in spo2) == 1000
    assert min(p["lo"] for p in spo2) == 90 and max(p["hi"] for p in spo2) == 97
    r = await client.get(
        f"/api/v1/patients/{ward.greta}/chart", params={"days": 10}, headers=nurse(settings)
    )
    assert r.status_code == 422 and "7, 30, 90" in r.json()["detail"]


async def test_chart_and_adherence_of_another_principal_are_404(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    for path in ("chart", "adherence"):
        r = await client.get(f"/api/v1/patients/{ward.ivar}/{path}", headers=nurse(settings))
        assert r.status_code == 404, path
    r = await client.get(
        f"/api/v1/patients/{ward.harald}/chart", headers=nurse(settings, care_units=[ward.unit])
    )
    assert r.status_code == 404  # outside the token's care unit
    refused = audits(database_url, "chart.read")
    assert [row[5] for row in refused] == [ward.ivar, ward.harald]


# --- medication calendar ------------------------------------------------------------------


async def test_adherence_calendar_counts_doses_per_local_day(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    r = await client.get(
        f"/api/v1/patients/{ward.greta}/adherence",
        params={"days": 14, "tz": "Europe/Stockholm"},
        headers=nurse(settings),
    )
    assert r.status_code == 200, r.text
    cal = r.json()
    assert cal["has_dispenser"] is True and len(cal["days"]) == 14
    totals = {k: sum(d[k] for d in cal["days"]) for k in ("due", "taken", "late", "missed")}
    assert totals == {"due": 7, "taken": 6, "late": 0, "missed": 1}
    missed_day = (NOW - timedelta(days=2)).date().isoformat()
    assert any(d["date"] == missed_day and d["missed"] == 1 for d in cal["days"])
    r = await client.get(f"/api/v1/patients/{ward.harald}/adherence", headers=nurse(settings))
    assert r.json()["has_dispenser"] is False
    r = await client.get(
        f"/api/v1/patients/{ward.greta}/adherence",
        params={"tz": "Mars/Olympus"},
        headers=nurse(settings),
    )
    assert r.status_code == 422 and "time zone" in r.json()["detail"]
    assert audits(database_url, "adherence.read")[0][5] == ward.greta


async def test_erasing_a_resident_takes_the_notes_on_its_alerts(
    client: httpx.AsyncClient, settings: Settings, ward: Ward, database_url: str
) -> None:
    r = await client.post(
        f"/api/v1/alerts/{ward.critical}/resolve",
        json={"note": "Greta's daughter called"},
        headers=nurse(settings),
    )
    assert r.status_code == 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE patients SET deactivated_at = now(), deactivated_by = 'hmc',"
            " deactivation_reason = 'moved' WHERE id = %s",
            (ward.greta,),
        )
        conn.execute(
            "UPDATE device_assignments SET ended_at = now() WHERE patient_id = %s", (ward.greta,)
        )
    r = await client.post(
        f"/api/v1/residents/{ward.greta}/erasure",
        json={"basis": "request"},
        headers=bearer(settings, Role.HMC, "a", "tech"),
    )
    assert r.status_code == 200, r.text
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT count(*) FROM alert_events").fetchone()
    assert left == (0,)
