"""Bearer-token verification: demo key, JWKS from a real loopback HTTP server, roles."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from api.auth import Role, demo_jwks, ensure_demo_key, issue_token
from hemhub.settings import Settings
from tests.api.helpers import (
    Seed,
    api_client,
    bearer,
    make_settings,
    sign_claims,
    token_claims,
)

_claims, _sign = token_claims, sign_claims


def test_ensure_demo_key_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "demo.pem"
    ensure_demo_key(path)
    first = path.read_bytes()
    assert first.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ensure_demo_key(path)  # an existing key is never replaced (tokens out there use it)
    assert path.read_bytes() == first


async def test_issued_token_round_trip(settings: Settings) -> None:
    token = issue_token(settings, sub="anna", role=Role.NURSE, tenant="a")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == demo_jwks(settings)["keys"][0]["kid"]
    async with api_client(settings) as client:
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.json() == {
        "sub": "anna",
        "role": "nurse",
        "tenant": "a",
        "care_units": None,
        "name": None,
        "time_zone": "Europe/Stockholm",  # the principal's (the default: no tenant row here)
    }


@pytest.mark.parametrize(
    ("make_token", "detail"),
    [
        (lambda s: _sign(s, _claims(s, exp=datetime.now(UTC) - timedelta(hours=1))), "expired"),
        (lambda s: _sign(s, _claims(s, aud="someone-else")), "wrong audience"),
        (lambda s: _sign(s, _claims(s, iss="evil-idp")), "wrong issuer"),
        (lambda s: _sign(s, _claims(s, tenant=None)), "missing claim: tenant"),
        (lambda s: _sign(s, _claims(s, role=None)), "missing claim: role"),
        (lambda s: _sign(s, _claims(s, exp=None)), "missing claim: exp"),
        (lambda s: _sign(s, _claims(s, role="superuser")), "unknown role"),
        (lambda s: "not.a.jwt", "malformed"),
        # alg=none and HS256 keyed with public material: algorithm confusion must fail.
        (lambda s: jwt.encode(_claims(s), "", algorithm="none"), "algorithm not allowed"),
        (lambda s: jwt.encode(_claims(s), "x" * 32, algorithm="HS256"), "algorithm not allowed"),
    ],
    ids=[
        "expired",
        "audience",
        "issuer",
        "no-tenant",
        "no-role",
        "no-exp",
        "role",
        "garbage",
        "alg-none",
        "alg-hs256",
    ],
)
async def test_bad_tokens_are_401(settings: Settings, make_token: Any, detail: str) -> None:
    token = make_token(settings)
    async with api_client(settings) as client:
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert detail in r.json()["detail"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_missing_token_is_401_with_challenge(settings: Settings) -> None:
    async with api_client(settings) as client:
        for path in ("/api/v1/me", "/api/v1/patients", "/api/v1/alerts"):
            r = await client.get(path)
            assert r.status_code == 401
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json()["detail"] == "missing bearer token"
        r = await client.get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert r.status_code == 401


async def test_wrong_signature_is_401(settings: Settings, tmp_path: Path) -> None:
    # Same claims and issuer, but signed by a key this server does not trust.
    other = make_settings(
        tmp_path, str(settings.database_url), jwt_private_key_file=tmp_path / "other.pem"
    )
    token = issue_token(other, sub="mallory", role=Role.ADMIN, tenant="b")
    async with api_client(settings) as client:
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json()["detail"] == "bad signature"


async def test_tampered_claims_are_401(settings: Settings) -> None:
    token = issue_token(settings, sub="anna", role=Role.NURSE, tenant="a")
    header, _payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps(
            {**jwt.decode(token, options={"verify_signature": False}), "tenant": "b"}
        ).encode()
    ).decode()
    async with api_client(settings) as client:
        r = await client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}
        )
    assert r.status_code == 401
    assert r.json()["detail"] == "bad signature"


async def test_roles(settings: Settings, seed: Seed) -> None:
    async with api_client(settings) as client:
        hmc = bearer(settings, Role.HMC, "a")
        integration = bearer(settings, Role.INTEGRATION, "a")
        admin = bearer(settings, Role.ADMIN, "a")
        r = await client.get("/api/v1/patients", headers=hmc)
        assert r.status_code == 403 and "hmc" in r.json()["detail"]
        assert (await client.get("/api/v1/alerts", headers=integration)).status_code == 403
        r = await client.post(f"/api/v1/alerts/{seed.alert_a_open}/ack", headers=integration)
        assert r.status_code == 403
        r = await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=integration)
        assert r.status_code == 200 and len(r.json()) == 3
        r = await client.get(f"/api/v1/patients/{seed.alice}/observations", headers=hmc)
        assert r.status_code == 403
        assert (await client.get("/api/v1/alerts", headers=admin)).status_code == 200


# --- JWKS (production path), served by a real HTTP server on loopback ----------------------


class _JwksServer:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def idp(tmp_path: Path, settings: Settings) -> Iterator[tuple[_JwksServer, Settings]]:
    """An 'identity provider': its key signs tokens, its JWKS is served over HTTP."""
    idp_settings = make_settings(
        tmp_path,
        str(settings.database_url),
        jwt_private_key_file=tmp_path / "idp.pem",
        jwt_issuer="https://idp.example",
        jwt_audience="hemhub-prod",
    )
    with _JwksServer(demo_jwks(idp_settings)) as server:
        yield server, idp_settings.model_copy(update={"jwt_jwks_url": server.url})


async def test_jwks_verification(idp: tuple[_JwksServer, Settings], settings: Settings) -> None:
    server, api_settings = idp
    token = issue_token(api_settings, sub="anna@idp", role=Role.NURSE, tenant="a")
    async with api_client(api_settings) as client:
        for _ in range(3):
            r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert r.json()["sub"] == "anna@idp"
        assert server.hits == 1  # the key set is cached, not fetched per request

        # A token from the demo key (not in the IdP's key set) is refused.
        foreign = issue_token(
            settings.model_copy(
                update={
                    "jwt_issuer": api_settings.jwt_issuer,
                    "jwt_audience": api_settings.jwt_audience,
                }
            ),
            sub="mallory",
            role=Role.ADMIN,
            tenant="a",
        )
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {foreign}"})
        assert r.status_code == 401
        assert r.json()["detail"] == "token signed with an unknown key"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")

        # A token signed by the trusted key still gets the precise reason when expired.
        expired = issue_token(
            api_settings, sub="anna@idp", role=Role.NURSE, tenant="a", ttl=timedelta(hours=-1)
        )
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and r.json()["detail"] == "token expired"


async def test_jwks_unreachable_is_503(settings: Settings) -> None:
    with _JwksServer({"keys": []}) as server:
        url = server.url
    # The server is gone: nothing listens on that port any more.
    down = settings.model_copy(update={"jwt_jwks_url": url})
    token = issue_token(settings, sub="anna", role=Role.NURSE, tenant="a")
    async with api_client(down) as client:
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503
