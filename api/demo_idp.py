"""The demo identity provider: OpenID Connect authorization code flow with PKCE (S256).

`hemhub demo` and the browser tests sign in here as one of a few demo users (a nurse and
an HMC technician in each of two principals, and an admin), with one demo password. It
signs with the demo key, so the API, which trusts that key, takes its access tokens.
Never in production: `create_app` refuses it unless the self-made key is allowed.

Only what the web app uses: discovery, the sign-in page (GET shows, POST decides),
the token endpoint (authorization_code only, PKCE required), the JWKS and logout.
Authorization codes live in memory, once only, for CODE_TTL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from api.auth import Role, demo_jwks, issue_token, sign_with_demo_key
from hemhub.settings import Settings

#: Where the demo provider answers, under the API's origin.
PREFIX = "/idp"
CODE_TTL_S = 60.0
#: RFC 7636 §4.1: a verifier is 43 to 128 unreserved characters.
VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
MAX_FORM_BYTES = 16 * 1024

#: The demo's two principals: the municipality the simulated homes belong to, and a
#: neighbour whose users must never see its data.
PRINCIPALS = {"demo": "Demokommunen", "demo-b": "Grannkommunen"}


@dataclass(frozen=True)
class DemoUser:
    login: str
    sub: str
    name: str
    role: Role
    tenant: str


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("nurse-a", "nurse@demo", "Sara Lind", Role.NURSE, "demo"),
    DemoUser("hmc-a", "hmc@demo", "Johan Berg", Role.HMC, "demo"),
    DemoUser("nurse-b", "nurse@demo-b", "Elin Ström", Role.NURSE, "demo-b"),
    DemoUser("hmc-b", "hmc@demo-b", "Omar Haddad", Role.HMC, "demo-b"),
    DemoUser("admin", "admin@demo", "Maria Ek", Role.ADMIN, "demo"),
)
USERS_BY_LOGIN = {u.login: u for u in DEMO_USERS}


def demo_password(settings: Settings) -> str:
    """The demo users' password: the setting, else one made once per data directory."""
    if settings.demo_password:
        return settings.demo_password
    path = settings.demo_password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("x", encoding="utf-8") as f:
                f.write(secrets.token_urlsafe(9))
            path.chmod(0o600)
        except FileExistsError:
            pass  # another process made it first: theirs is the password
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class _Grant:
    user: DemoUser
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    expires: float


def s256(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- the sign-in page --------------------------------------------------------------------

_TEXTS = {
    "sv": {
        "title": "Logga in (demo)",
        "intro": "Demoinloggning: välj en demoanvändare och skriv demolösenordet som"
        " hemhub demo skrev ut.",
        "user": "Användare",
        "password": "Lösenord",
        "submit": "Logga in",
        "wrong": "Fel lösenord eller ingen användare vald.",
    },
    "en": {
        "title": "Sign in (demo)",
        "intro": "Demo sign-in: pick a demo user and type the demo password that"
        " hemhub demo printed.",
        "user": "User",
        "password": "Password",
        "submit": "Sign in",
        "wrong": "Wrong password, or no user picked.",
    },
}
_ROLES = {
    "sv": {"nurse": "sjuksköterska", "hmc": "hjälpmedelscentralen", "admin": "admin"},
    "en": {"nurse": "nurse", "hmc": "assistive technology centre", "admin": "admin"},
}

_PAGE_CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none';"
    " base-uri 'none'"
)


def _sign_in_page(params: dict[str, str], language: str, error: bool) -> str:
    text = _TEXTS[language]
    e = html.escape
    hidden = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in params.items()
    )
    users = "".join(
        f'<li><label><input type="radio" name="login" value="{e(u.login)}" required>'
        f" {e(u.name)}: {e(_ROLES[language][u.role.value])}, {e(PRINCIPALS[u.tenant])}"
        f' <span class="muted">({e(u.login)})</span></label></li>'
        for u in DEMO_USERS
    )
    problem = (
        f'<p class="message message-error" role="alert">{e(text["wrong"])}</p>' if error else ""
    )
    return f"""<!doctype html>
<html lang="{language}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{e(text["title"])}: hemhub</title>
<link rel="stylesheet" href="/static/css/core.css"></head>
<body><main class="signin"><form class="card signin-card" method="post" action="{PREFIX}/authorize">
<h1>{e(text["title"])}</h1><p>{e(text["intro"])}</p>{problem}
<fieldset><legend>{e(text["user"])}</legend><ul class="demo-users">{users}</ul></fieldset>
<div class="field"><label for="password">{e(text["password"])}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
</div>{hidden}<button type="submit" class="button-primary">{e(text["submit"])}</button>
</form></main></body></html>"""


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body, status, headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-store"}
    )


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """RFC 6749 §5.2 error answer of the token endpoint."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status,
        headers={"Cache-Control": "no-store"},
    )


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as single values (the last one wins)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


class DemoProvider:
    """The provider's state: outstanding authorization codes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.password = demo_password(settings)
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def issuer(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    def allowed_redirect(self, request: Request, uri: str) -> bool:
        # The web app itself, on the origin the browser used: nothing else gets a code.
        return uri == str(request.base_url)

    def _client_problem(self, request: Request, params: dict[str, str]) -> str | None:
        """What is wrong with the client or redirect URI (shown, never redirected to)."""
        if params.get("client_id") != self.settings.oidc_client_id:
            return "unknown client_id"
        if not self.allowed_redirect(request, params.get("redirect_uri", "")):
            return "redirect_uri not registered"
        return None

    def _request_problem(self, params: dict[str, str]) -> str | None:
        if params.get("response_type") != "code":
            return "unsupported_response_type"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "invalid_request"  # PKCE S256 is required
        if "openid" not in params.get("scope", "").split():
            return "invalid_scope"
        return None

    def authorize_params(self, raw: dict[str, str]) -> dict[str, str]:
        keep = (
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "ui_locales",
        )
        return {k: raw[k] for k in keep if k in raw}

    def page_or_problem(
        self, request: Request, params: dict[str, str], *, error: bool = False
    ) -> Response:
        problem = self._client_problem(request, params)
        if problem is not None:
            return _html(f"<!doctype html><title>hemhub</title><p>{html.escape(problem)}</p>", 400)
        refused = self._request_problem(params)
        if refused is not None:
            return self._redirect(params, {"error": refused})
        language = "en" if params.get("ui_locales", "").startswith("en") else "sv"
        return _html(_sign_in_page(params, language, error), 401 if error else 200)

    def _redirect(self, params: dict[str, str], answer: dict[str, str]) -> RedirectResponse:
        if "state" in params:
            answer = {**answer, "state": params["state"]}
        return RedirectResponse(f"{params['redirect_uri']}?{urlencode(answer)}", status_code=303)

    def decide(self, request: Request, form: dict[str, str]) -> Response:
        params = self.authorize_params(form)
        problem = self._client_problem(request, params) or self._request_problem(params)
        if problem is not None:
            return self.page_or_problem(request, params)
        user = USERS_BY_LOGIN.get(form.get("login", ""))
        password_ok = hmac.compare_digest(form.get("password", "").encode(), self.password.encode())
        if user is None or not password_ok:
            return self.page_or_problem(request, params, error=True)
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._grants = {c: g for c, g in self._grants.items() if g.expires > now}
            self._grants[code] = _Grant(
                user=user,
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                challenge=params["code_challenge"],
                nonce=params.get("nonce"),
                expires=now + CODE_TTL_S,
            )
        return self._redirect(params, {"code": code})

    def exchange(self, request: Request, form: dict[str, str]) -> JSONResponse:
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # once only
        if grant is None or grant.expires <= time.monotonic():
            return _oauth_error("invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != grant.client_id:
            return _oauth_error("invalid_client", "client_id does not match the code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri does not match the code")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or not set(verifier) <= VERIFIER_CHARS:
            return _oauth_error("invalid_request", "code_verifier missing or malformed")
        if not hmac.compare_digest(s256(verifier), grant.challenge):
            return _oauth_error("invalid_grant", "code_verifier does not match the challenge")
        ttl = timedelta(seconds=self.settings.demo_token_ttl_s)
        user = grant.user
        access = issue_token(
            self.settings, sub=user.sub, role=user.role, tenant=user.tenant, ttl=ttl, name=user.name
        )
        now = datetime.now(UTC)
        id_claims: dict[str, Any] = {
            "iss": self.issuer(request),
            "aud": grant.client_id,
            "sub": user.sub,
            "name": user.name,
            "iat": now,
            "exp": now + ttl,
        }
        if grant.nonce is not None:
            id_claims["nonce"] = grant.nonce
        return JSONResponse(
            {
                "access_token": access,
                "id_token": sign_with_demo_key(self.settings, id_claims),
                "token_type": "Bearer",
                "expires_in": int(ttl.total_seconds()),
                "scope": "openid profile",
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )


def demo_idp_router(settings: Settings) -> APIRouter:
    """The demo provider's routes (mounted by `create_app` when `demo_idp` is on)."""
    provider = DemoProvider(settings)
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/.well-known/openid-configuration")
    async def discovery(request: Request) -> JSONResponse:
        issuer = provider.issuer(request)
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
                "end_session_endpoint": f"{issuer}/logout",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile"],
                "token_endpoint_auth_methods_supported": ["none"],
                "claims_supported": ["sub", "name", "role", "tenant"],
            }
        )

    @router.get("/jwks")
    async def jwks() -> JSONResponse:
        return JSONResponse(demo_jwks(settings))

    @router.get("/authorize")
    async def authorize_page(request: Request) -> Response:
        params = provider.authorize_params(dict(request.query_params))
        return provider.page_or_problem(request, params)

    @router.post("/authorize")
    async def authorize_decide(request: Request) -> Response:
        return provider.decide(request, await _form(request))

    @router.post("/token")
    async def token(request: Request) -> JSONResponse:
        return provider.exchange(request, await _form(request))

    @router.get("/logout")
    async def logout(request: Request) -> Response:
        target = request.query_params.get("post_logout_redirect_uri", "")
        if provider.allowed_redirect(request, target):
            return RedirectResponse(target, status_code=303)
        return RedirectResponse("/", status_code=303)

    return router
