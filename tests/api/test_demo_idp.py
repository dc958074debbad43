"""The demo identity provider (authorization code + PKCE S256) and /api/v1/ui-config."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from api.app import SelfMadeKeyRefused, create_app
from api.demo_idp import s256
from hemhub.settings import Settings
from ingest.migrations import migrate
from tests.api.helpers import api_client, make_settings

BASE = "http://hemhub.test"
PASSWORD = "correct horse"
VERIFIER = "v" * 20 + "-._~" + "0123456789abcdefghijklmnop"  # 50 unreserved characters


def _authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": "hemhub-web",
        "redirect_uri": f"{BASE}/",
        "scope": "openid profile",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return params


async def _code(client: httpx.AsyncClient, login: str = "nurse-a", **overrides: str) -> str:
    form = {**_authorize_params(**overrides), "login": login, "password": PASSWORD}
    r = await client.post("/idp/authorize", data=form)
    assert r.status_code == 303, r.text
    target = urlsplit(r.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{BASE}/"
    answer = parse_qs(target.query)
    assert answer["state"] == ["st-1"]
    return answer["code"][0]


def _token_form(code: str, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": f"{BASE}/",
        "client_id": "hemhub-web",
        "code_verifier": VERIFIER,
    }
    form.update(overrides)
    return form


@pytest.fixture
def demo_settings(tmp_path: Path, database_url: str) -> Settings:
    migrate(database_url)
    return make_settings(tmp_path, database_url, demo_idp=True, demo_password=PASSWORD)


async def test_sign_in_with_pkce_gives_tokens_the_api_takes(demo_settings: Settings) -> None:
    async with api_client(demo_settings) as client:
        config = (await client.get("/api/v1/ui-config")).json()
        assert config == {
            "issuer": f"{BASE}/idp",
            "client_id": "hemhub-web",
            "scope": "openid profile",
            "default_language": "sv",
            "demo": True,
        }
        meta = (await client.get("/idp/.well-known/openid-configuration")).json()
        assert meta["issuer"] == config["issuer"]
        assert meta["code_challenge_methods_supported"] == ["S256"]

        page = await client.get("/idp/authorize", params=_authorize_params(ui_locales="en"))
        assert page.status_code == 200
        assert "form-action 'self'" in page.headers["content-security-policy"]
        for login in ("nurse-a", "hmc-a", "nurse-b", "hmc-b", "admin"):
            assert f'value="{login}"' in page.text
        assert "Sign in (demo)" in page.text

        code = await _code(client, "hmc-b")
        r = await client.post("/idp/token", data=_token_form(code))
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert tokens["token_type"] == "Bearer" and r.headers["cache-control"] == "no-store"
        id_claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
        assert id_claims["nonce"] == "n-1" and id_claims["iss"] == f"{BASE}/idp"
        assert id_claims["aud"] == "hemhub-web"

        me = await client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.status_code == 200
        body = me.json()
        assert (body["sub"], body["role"], body["tenant"]) == ("hmc@demo-b", "hmc", "demo-b")
        assert body["name"] == "Omar Haddad" and body["time_zone"] == "Europe/Stockholm"

        # A code is good once.
        again = await client.post("/idp/token", data=_token_form(code))
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_the_token_endpoint_refuses_a_wrong_verifier_client_or_redirect(
    demo_settings: Settings,
) -> None:
    async with api_client(demo_settings) as client:
        wrong = "w" * 50
        r = await client.post(
            "/idp/token", data=_token_form(await _code(client), code_verifier=wrong)
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        r = await client.post(
            "/idp/token", data=_token_form(await _code(client), client_id="someone-else")
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_client"
        r = await client.post(
            "/idp/token", data=_token_form(await _code(client), redirect_uri=f"{BASE}/x")
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        r = await client.post(
            "/idp/token", data=_token_form(await _code(client), code_verifier="short")
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"
        r = await client.post("/idp/token", data={"grant_type": "password"})
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


async def test_the_sign_in_page_refuses_without_redirecting_anywhere_unknown(
    demo_settings: Settings,
) -> None:
    async with api_client(demo_settings) as client:
        # A foreign redirect URI or client: an error page, never a redirect (open redirect).
        for bad in ({"redirect_uri": "https://evil.example/"}, {"client_id": "other"}):
            r = await client.get("/idp/authorize", params=_authorize_params(**bad))
            assert r.status_code == 400 and "location" not in r.headers
        # Without PKCE S256: back to the app with an error.
        for bad in ({"code_challenge_method": "plain"}, {"code_challenge": ""}):
            r = await client.get("/idp/authorize", params=_authorize_params(**bad))
            assert r.status_code == 303
            assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_request"]
        # A wrong password: the page again, with the reason, and no code.
        form = {**_authorize_params(), "login": "admin", "password": "guess"}
        r = await client.post("/idp/authorize", data=form)
        assert r.status_code == 401 and "location" not in r.headers
        assert re.search(r'role="alert"', r.text)


def test_the_demo_provider_is_refused_outside_a_demo(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none"
    with pytest.raises(SelfMadeKeyRefused):
        create_app(make_settings(tmp_path, url, demo_idp=True, jwt_allow_self_made_key=False))
    with pytest.raises(SelfMadeKeyRefused):
        create_app(
            make_settings(tmp_path, url, demo_idp=True, jwt_jwks_url="https://idp.example/jwks")
        )


async def test_a_configured_provider_is_named_and_allowed_by_the_csp(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(
        tmp_path, database_url, oidc_issuer="https://login.example.se/realms/kommun"
    )
    async with api_client(settings) as client:
        config = (await client.get("/api/v1/ui-config")).json()
        assert config["issuer"] == "https://login.example.se/realms/kommun"
        assert config["demo"] is False
        assert (await client.get("/idp/.well-known/openid-configuration")).status_code == 404
        csp = (await client.get("/")).headers["content-security-policy"]
        assert "connect-src 'self' https://login.example.se;" in csp
