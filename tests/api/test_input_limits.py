"""Input the API cannot store or should not take answers 4xx, never 500 (issue 11): NUL
and lone surrogates, out-of-range instants and offsets, oversized bodies, tokens with
out-of-range claims; 422 replies quote only an excerpt of the input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth import Role
from hemhub.settings import Settings
from tests.api.helpers import (
    Seed,
    api_client,
    bearer,
    make_settings,
    sign_claims,
    token_claims,
)


def nurse(settings: Settings) -> dict[str, str]:
    return bearer(settings, Role.NURSE, "a")


def raw_json(text: str) -> dict[str, Any]:
    """Request arguments sending `text` as the body verbatim (JSON escapes stay escapes)."""
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


@pytest.mark.parametrize(
    "body",
    [
        '{"note": "ok\\u0000"}',  # NUL
        '{"note": "\\ud800"}',  # a lone surrogate
    ],
    ids=["nul", "lone-surrogate"],
)
async def test_unstorable_resolve_note_is_422(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, body: str
) -> None:
    r = await client.post(
        f"/api/v1/alerts/{seed.alert_a_open}/resolve",
        **{**raw_json(body), "headers": {**raw_json(body)["headers"], **nurse(settings)}},
    )
    assert r.status_code == 422, r.text
    assert "note" in r.text
    # Nothing changed.
    alerts = (await client.get("/api/v1/alerts", headers=nurse(settings))).json()
    assert {a["id"]: a["status"] for a in alerts}[str(seed.alert_a_open)] == "open"


@pytest.mark.parametrize(
    "body",
    [
        '{"rules": {"bp_high": {"systolic": 170}}, "note": "a\\u0000b"}',
        '{"rules": {"bp_high\\u0000": {"systolic": 170}}}',
        '{"rules": {"bp_high": {"\\udfff": 1}}}',
        '{"rules": {"bp_high": {"systolic": 170}}, "note": "\\ud800"}',
    ],
    ids=["note-nul", "key-nul", "key-surrogate", "note-surrogate"],
)
async def test_unstorable_threshold_text_is_422(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, body: str
) -> None:
    args = raw_json(body)
    r = await client.put(
        f"/api/v1/patients/{seed.alice}/thresholds",
        content=args["content"],
        headers={**args["headers"], **nurse(settings)},
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("name", ["North\\u0000", "\\ud83d"])
async def test_unstorable_care_unit_name_is_422(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, name: str
) -> None:
    args = raw_json(f'{{"name": "{name}"}}')
    r = await client.post(
        "/api/v1/care-units",
        content=args["content"],
        headers={**args["headers"], **bearer(settings, Role.HMC, "a")},
    )
    assert r.status_code == 422, r.text


async def test_instants_outside_the_sane_range_are_422(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    year_1 = "0001-01-01T00:00:00+01:00"
    r = await client.put(
        f"/api/v1/patients/{seed.alice}/thresholds",
        json={"rules": {}, "applies_from": year_1},
        headers=nurse(settings),
    )
    assert r.status_code == 422, r.text
    assert "1900" in r.text
    for path in (
        f"/api/v1/patients/{seed.alice}/observations?since={year_1}",
        f"/api/v1/patients/{seed.alice}/observations?until=9999-12-31T23:59:59-12:00",
        f"/api/v1/patients/{seed.alice}/thresholds?at={year_1}",
    ):
        r = await client.get(path.replace("+", "%2B"), headers=nurse(settings))
        assert r.status_code == 422, (path, r.text)
    r = await client.get(
        f"/api/v1/fleet/unattributed?since={year_1.replace('+', '%2B')}",
        headers=bearer(settings, Role.HMC, "a"),
    )
    assert r.status_code == 422, r.text
    # The edges of the range are taken.
    r = await client.get(
        f"/api/v1/patients/{seed.alice}/observations?since=1900-01-01T00:00:00Z",
        headers=nurse(settings),
    )
    assert r.status_code == 200, r.text


async def test_paging_is_bounded(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    r = await client.get("/api/v1/patients?offset=9223372036854775808", headers=nurse(settings))
    assert r.status_code == 422, r.text
    r = await client.get("/api/v1/patients?offset=1000000", headers=nurse(settings))
    assert r.status_code == 200 and r.json() == []


async def test_422_quotes_only_an_excerpt_of_the_input(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    note = "x" * 200_000
    r = await client.post(
        f"/api/v1/alerts/{seed.alert_a_open}/resolve", json={"note": note}, headers=nurse(settings)
    )
    assert r.status_code == 422
    assert len(r.content) < 2_000
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "note"]
    assert error["input"] == "x" * 80 + "…"
    # A lone surrogate is quoted escaped (a reply must be valid UTF-8).
    args = raw_json('{"note": "\\ud800", "extra": 1}')
    r = await client.post(
        f"/api/v1/alerts/{seed.alert_a_open}/resolve",
        content=args["content"],
        headers={**args["headers"], **nurse(settings)},
    )
    assert r.status_code == 422
    assert "\\ud800" in r.json()["detail"][0]["input"]


async def test_body_over_the_limit_is_413(tmp_path: Path, database_url: str, seed: Seed) -> None:
    settings = make_settings(tmp_path, database_url, api_max_body_bytes=4096)
    async with api_client(settings) as client:
        url = f"/api/v1/alerts/{seed.alert_a_open}/resolve"
        r = await client.post(url, json={"note": "n" * 5000}, headers=nurse(settings))
        assert r.status_code == 413, r.text
        # Under the limit, the same request is answered normally.
        r = await client.post(url, json={"note": "n" * 1000}, headers=nurse(settings))
        assert r.status_code == 200, r.text


async def test_body_limit_is_enforced_while_the_body_streams_in(
    tmp_path: Path, database_url: str, seed: Seed
) -> None:
    """No Content-Length, 64 KiB chunks without end: the API stops reading past the limit."""
    settings = make_settings(tmp_path, database_url, api_max_body_bytes=1024 * 1024)
    app = create_app(settings)
    chunk = b" " * 65536
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < 800}  # 50 MiB

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in nurse(settings).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/alerts/{seed.alert_a_open}/resolve",
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("hemhub.test", 80),
        "app": app,
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert pulled <= 1024 * 1024 // len(chunk) + 1  # 17 chunks read of 800


@pytest.mark.parametrize(
    "overrides",
    [{"exp": 10**12}, {"exp": 1e300}, {"sub": "nurse\x00"}, {"tenant": "\ud800"}],
    ids=["exp-1e12", "exp-1e300", "sub-nul", "tenant-surrogate"],
)
async def test_signed_token_with_out_of_range_claims_is_401(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, overrides: dict[str, Any]
) -> None:
    token = sign_claims(settings, token_claims(settings, **overrides))
    r = await client.get("/api/v1/patients", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert "invalid claim" in r.json()["detail"]


def test_api_refuses_a_self_made_key_unless_allowed(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from api.app import SelfMadeKeyRefused

    with pytest.raises(SelfMadeKeyRefused, match="HEMHUB_JWT_ALLOW_SELF_MADE_KEY"):
        create_app(make_settings(tmp_path, database_url, jwt_allow_self_made_key=False))
    with caplog.at_level("WARNING"):
        create_app(make_settings(tmp_path, database_url, jwt_allow_self_made_key=True))
    assert any("SECURITY" in r.getMessage() for r in caplog.records)
    # A JWKS needs no such setting.
    create_app(
        make_settings(
            tmp_path, database_url, jwt_allow_self_made_key=False, jwt_jwks_url="http://idp/jwks"
        )
    )


def test_hemhub_api_refuses_to_start_on_a_self_made_key(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMHUB_")}
    env |= {"HEMHUB_DATABASE_URL": "postgresql://127.0.0.1/none", "HEMHUB_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "hemhub.cli", "api"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert "HEMHUB_JWT_ALLOW_SELF_MADE_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "demo-signing-key.pem").exists()


async def test_open_alerts_come_in_triage_order(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, database_url: str
) -> None:
    """Severity first (critical, high, medium, low), then the longest waiting first; a
    recent low-severity repetition does not lift an alert above a critical one."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM alerts WHERE tenant_id = 'a'")

        def alert(rule: str, severity: str, opened_hours_ago: int, last_hours_ago: int) -> str:
            row = conn.execute(
                "INSERT INTO alerts (tenant_id, patient_id, rule, rule_version, severity, status,"
                " reason, measured_at, opened_at, last_at, count)"
                " VALUES ('a', %s, %s, 1, %s, 'open', 'r', now() - make_interval(hours => %s),"
                " now() - make_interval(hours => %s), now() - make_interval(hours => %s), 1)"
                " RETURNING id",
                (seed.alice, rule, severity, opened_hours_ago, opened_hours_ago, last_hours_ago),
            ).fetchone()
            assert row is not None
            return str(row[0])

        low_old = alert("sensor_a", "low", 50, 0)
        critical_new = alert("glucose_low", "critical", 1, 1)
        high = alert("bp_high", "high", 3, 2)
        critical_old = alert("spo2_low", "critical", 5, 5)
        medium = alert("weight_gain", "medium", 10, 0)
        low_new = alert("sensor_b", "low", 2, 0)
    r = await client.get("/api/v1/alerts?status=open", headers=nurse(settings))
    assert [a["id"] for a in r.json()] == [
        critical_old,
        critical_new,
        high,
        medium,
        low_old,
        low_new,
    ]
    # Without a status filter too, open alerts come in the same order.
    r = await client.get("/api/v1/alerts", headers=nurse(settings))
    assert [a["id"] for a in r.json()][:6] == [
        critical_old,
        critical_new,
        high,
        medium,
        low_old,
        low_new,
    ]
