"""The access-log review (GET /api/v1/audit, /api/v1/audit/export): an auditor (or admin)
answers "who looked at this resident?" from the principal's own rows only, with filters
and paging; the CSV export is RFC 4180 and formula-safe; the review is itself audited."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from api.auth import Role
from api.csv_export import csv_lines, safe_cell
from api.routers.audit import COLUMNS
from hemhub.settings import Settings
from tests.api.helpers import Seed, audit_rows, bearer


def _auditor(settings: Settings, tenant: str = "a") -> dict[str, str]:
    return bearer(settings, Role.AUDITOR, tenant, f"auditor@{tenant}")


async def _review(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    r = await client.get("/api/v1/audit", params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _accesses(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> datetime:
    """Anna reads Alice's readings, Bo lists the residents (Alice and Arne), a nurse of B
    reads Bert's; then Bo reads Alice's again after the instant returned."""
    anna = bearer(settings, Role.NURSE, "a", "anna")
    bo = bearer(settings, Role.NURSE, "a", "bo")
    await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=anna)
    await client.get("/api/v1/patients", headers=bo)
    await client.get(
        f"/api/v1/patients/{seed.bert}/observations", headers=bearer(settings, Role.NURSE, "b")
    )
    between = datetime.now(UTC)
    await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=bo)
    return between


async def test_who_looked_at_this_resident(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    between = await _accesses(client, settings, seed)
    page = await _review(client, _auditor(settings), patient=str(seed.alice))
    seen = [(e["subject"], e["action"], e["resource"]) for e in page["entries"]]
    assert seen == [
        ("anna", "observations.read", f"patients/{seed.alice}/observations"),
        ("bo", "patients.list", "patients"),
        ("bo", "observations.read", f"patients/{seed.alice}/observations"),
    ]
    first = page["entries"][0]
    assert first["patient_display_name"] == "Alice Andersson"
    assert first["role"] == "nurse" and first["detail"]["count"] == 3
    assert len(first["row_hash"]) == 64 and first["pseudonymised"] is False
    assert page["next_after"] is None

    # by user, by action, by period
    by_bo = await _review(client, _auditor(settings), subject="bo")
    assert {e["patient_id"] for e in by_bo["entries"]} == {str(seed.alice), str(seed.arne)}
    lists = await _review(client, _auditor(settings), action="patients.list")
    assert [e["patient_id"] for e in lists["entries"]] == [str(seed.alice), str(seed.arne)]
    both = await _review(
        client, _auditor(settings), action=["patients.list", "observations.read"], subject="anna"
    )
    assert len(both["entries"]) == 1
    nurses = ["observations.read", "patients.list"]  # not the auditor's own reviews
    later = await _review(
        client,
        _auditor(settings),
        patient=str(seed.alice),
        action=nurses,
        **{"from": between.isoformat()},
    )
    assert [e["subject"] for e in later["entries"]] == ["bo"]
    earlier = await _review(
        client, _auditor(settings), patient=str(seed.alice), action=nurses, to=between.isoformat()
    )
    assert [e["subject"] for e in earlier["entries"]] == ["anna", "bo"]

    # principal B's auditor sees B's row only; A's never shows Bert
    b_rows = await _review(client, _auditor(settings, "b"))
    assert [e["patient_id"] for e in b_rows["entries"]] == [str(seed.bert)]
    bert = await _review(client, _auditor(settings), patient=str(seed.bert))
    assert bert["entries"] == []

    # the reviews were audited: one row per resident shown, the filters in the detail
    rows = [r for r in audit_rows(database_url) if r[3] == "audit.list"]
    first_review = next(r for r in rows if r[0] == "auditor@a")
    assert first_review[2] == "a" and first_review[5] == seed.alice
    assert first_review[6]["patient"] == str(seed.alice)  # type: ignore[index]
    assert first_review[6]["count"] == 3  # type: ignore[index]
    # and the next review shows the reviews
    again = await _review(client, _auditor(settings), action="audit.list", subject="auditor@a")
    assert again["entries"] and again["entries"][0]["resource"] == "audit"


async def test_pages_hold_every_entry_once(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    nurse = bearer(settings, Role.NURSE, "a", "anna")
    for _ in range(7):
        await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=nurse)
    whole = await _review(client, _auditor(settings), subject="anna")
    assert len(whole["entries"]) == 7
    ids: list[int] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"subject": "anna", "limit": 3}
        if after is not None:
            params["after"] = after
        page = await _review(client, _auditor(settings), **params)
        ids += [e["id"] for e in page["entries"]]
        after = page["next_after"]
        if after is None:
            break
    assert ids == [e["id"] for e in whole["entries"]]


async def test_who_may_review_and_bad_filters(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    for role, status in (
        (Role.NURSE, 403),
        (Role.HMC, 403),
        (Role.INTEGRATION, 403),
        (Role.ADMIN, 200),
        (Role.AUDITOR, 200),
    ):
        r = await client.get("/api/v1/audit", headers=bearer(settings, role, "a"))
        assert r.status_code == status, (role, r.text)
        r = await client.get("/api/v1/audit/export", headers=bearer(settings, role, "a"))
        assert r.status_code == status, (role, r.text)
    unit_token = bearer(settings, Role.AUDITOR, "a", care_units=[uuid.uuid4()])
    r = await client.get("/api/v1/audit", headers=unit_token)
    assert r.status_code == 403 and "care-unit" in r.json()["detail"]
    now = datetime.now(UTC)
    for params, why in (
        ({"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}, "before"),
        ({"subject": "a\x00b"}, "NUL"),
        ({"subject": "x" * 300}, "characters"),
        ({"action": "x\x00"}, "NUL"),
        ({"patient": "not-a-uuid"}, "uuid"),
        ({"limit": "0"}, "greater"),
        ({"from": "yesterday"}, "datetime"),
        ({"from": "2026-01-01T00:00:00"}, "timezone"),
    ):
        r = await client.get("/api/v1/audit", params=params, headers=_auditor(settings))
        assert r.status_code == 422, (params, r.text)
        assert why.lower() in r.text.lower(), (params, r.text)


async def test_csv_export_is_rfc4180_formula_safe_and_audited(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    await _accesses(client, settings, seed)
    # a subject a spreadsheet would run as a formula
    evil = bearer(settings, Role.NURSE, "a", '=HYPERLINK("http://x")')
    await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=evil)
    listed = await _review(client, _auditor(settings), patient=str(seed.alice))

    r = await client.get(
        "/api/v1/audit/export", params={"patient": str(seed.alice)}, headers=_auditor(settings)
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text.endswith("\r\n") and "\r\n" in r.text
    table = list(csv.reader(io.StringIO(r.text, newline="")))
    assert table[0] == list(COLUMNS)
    body = [dict(zip(COLUMNS, row, strict=True)) for row in table[1:]]
    # the export holds what existed when it began: the list's rows, and the list's own
    # audit row for Alice
    assert [int(row["id"]) for row in body][: len(listed["entries"])] == [
        e["id"] for e in listed["entries"]
    ]
    assert body[-1]["action"] == "audit.list"
    assert [row["subject"] for row in body][3] == '\'=HYPERLINK("http://x")'
    assert body[0]["patient_display_name"] == "Alice Andersson"
    assert json.loads(body[0]["detail"])["count"] == 3
    assert datetime.fromisoformat(body[0]["at"]).tzinfo is not None

    exported = [r for r in audit_rows(database_url) if r[3] == "audit.export"]
    assert [(r[0], r[5]) for r in exported] == [("auditor@a", seed.alice)]
    assert exported[0][6]["rows"] == len(body)  # type: ignore[index]


def test_csv_cells_a_spreadsheet_would_run_are_quoted() -> None:
    for formula in ("=1+1", "+1", "-1+A1", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(formula) == "'" + formula
    assert [safe_cell(v) for v in ("nurse-1", -3, 2.5, None, "")] == [
        "nurse-1",
        "-3",
        "2.5",
        "",
        "",
    ]
    assert csv_lines(["a", "b"], [["x,y", '"q"']]) == '"x,y","""q"""\r\n'
