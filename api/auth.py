"""Bearer tokens: RS256 JWTs carrying who (sub), what they may do (role) and whose data (tenant).

Production verifies tokens against the identity provider's JWKS (`HEMHUB_JWT_JWKS_URL`).
The demo signs and verifies with a local RSA key file, so `hemhub demo` works offline.
Every rejection is a 401 with `WWW-Authenticate: Bearer` and a `detail` saying why, so
an integrator can tell an expired token from a misconfigured audience.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.text import excerpt, text_problem
from hemhub.settings import Settings, get_settings

#: Only RS256: accepting whatever `alg` the token names invites algorithm-confusion attacks.
ALGORITHMS = ["RS256"]
#: Tolerated clock difference between the issuer and us.
LEEWAY = timedelta(seconds=30)
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub", "role", "tenant"]


class Role(StrEnum):
    NURSE = "nurse"
    HMC = "hmc"
    ADMIN = "admin"
    INTEGRATION = "integration"
    #: Reviews the principal's access log (who read or changed which resident's data).
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller; `tenant` scopes every query it makes.

    `care_units`, when not None (the token's optional `care_units` claim), narrows it
    further to the residents placed in those care units of the tenant: residents in no
    unit or in another unit answer 404 like another principal's. An empty set sees no
    resident at all (fail closed).
    """

    sub: str
    role: Role
    tenant: str
    care_units: frozenset[uuid.UUID] | None = None
    #: The token's `exp`: a live stream ends then (the client reconnects with a new token).
    expires_at: datetime | None = None
    #: The token's optional `name` claim (OpenID Connect): shown, never trusted for access.
    name: str | None = None

    @property
    def care_unit_list(self) -> list[uuid.UUID] | None:
        """The care-unit scope as a query parameter (None: the whole tenant)."""
        return None if self.care_units is None else sorted(self.care_units)


# --- the demo key -----------------------------------------------------------------------


def ensure_demo_key(path: Path) -> None:
    """Create an RSA-2048 private key PEM at `path` (mode 0600) unless one exists."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: two processes starting together must not both write (one wins, the other
    # keeps the winner's key); the mode is set at creation, never world-readable.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


@lru_cache(maxsize=8)
def _load_private_key(path: Path, mtime_ns: int) -> rsa.RSAPrivateKey:
    # mtime_ns is part of the cache key so that a replaced key file is picked up.
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


def _demo_private_key(settings: Settings) -> rsa.RSAPrivateKey:
    path = settings.demo_key_file
    return _load_private_key(path, path.stat().st_mtime_ns)


def _b64url_int(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> dict[str, str]:
    """The public half as a JWK, with its RFC 7638 thumbprint as `kid`."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = pub.public_numbers()
    members = {"e": _b64url_int(numbers.e), "kty": "RSA", "n": _b64url_int(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return {**members, "kid": kid, "alg": "RS256", "use": "sig"}


def demo_jwks(settings: Settings) -> dict[str, list[dict[str, str]]]:
    """The demo key's public half as a JWKS document (what an identity provider serves)."""
    ensure_demo_key(settings.demo_key_file)
    return {"keys": [public_jwk(_demo_private_key(settings))]}


def issue_token(
    settings: Settings,
    *,
    sub: str,
    role: Role,
    tenant: str,
    ttl: timedelta = timedelta(hours=12),
    care_units: Iterable[uuid.UUID | str] | None = None,
    name: str | None = None,
) -> str:
    """A token signed with the demo key (demo, tests, CLI); production tokens come from the IdP.

    `name` (the OpenID Connect `name` claim) is what the web app shows as the user."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        "role": str(role),
        "tenant": tenant,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if care_units is not None:
        claims["care_units"] = [str(uuid.UUID(str(u))) for u in care_units]
    if name is not None:
        claims["name"] = name
    return sign_with_demo_key(settings, claims)


def sign_with_demo_key(settings: Settings, claims: dict[str, Any]) -> str:
    """`claims` as an RS256 JWT signed with the demo key, its `kid` in the header."""
    ensure_demo_key(settings.demo_key_file)
    key = _demo_private_key(settings)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": public_jwk(key)["kid"]})


# --- verification -----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    # One client per URL for the process: it caches the key set (5 min) and rate-limits
    # refetches for unknown key ids, so a flood of forged kids cannot hammer the IdP.
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)


def _unauthorized(detail: str, *, error: bool = True) -> HTTPException:
    # RFC 6750: a request without credentials gets a bare challenge, a bad token an error code.
    challenge = 'Bearer error="invalid_token"' if error else "Bearer"
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge}
    )


def _verification_key(token: str, settings: Settings) -> Any:
    if settings.jwt_jwks_url:
        try:
            return _jwks_client(settings.jwt_jwks_url).get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            # Our side cannot reach the IdP: not the caller's fault, so not a 401.
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="cannot fetch the issuer's keys"
            ) from exc
        except jwt.DecodeError as exc:
            raise _unauthorized("malformed token") from exc
        except jwt.PyJWKClientError as exc:
            raise _unauthorized("token signed with an unknown key") from exc
    try:
        return _demo_private_key(settings).public_key()
    except FileNotFoundError as exc:
        raise _unauthorized("no demo signing key configured on this server") from exc


def verify_token(token: str, settings: Settings) -> Principal:
    """Check signature, expiry, issuer, audience and the hemhub claims; raise 401 otherwise."""
    key = _verification_key(token, settings)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("token expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise _unauthorized("bad signature") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _unauthorized(f"missing claim: {exc.claim}") from exc
    except jwt.InvalidAudienceError as exc:
        raise _unauthorized("wrong audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise _unauthorized("wrong issuer") from exc
    except jwt.ImmatureSignatureError as exc:
        raise _unauthorized("token not yet valid") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise _unauthorized("signing algorithm not allowed") from exc
    except jwt.DecodeError as exc:
        raise _unauthorized("malformed token") from exc
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc

    sub, role, tenant = claims["sub"], claims["role"], claims["tenant"]
    if not _storable_identifier(tenant):
        raise _unauthorized("invalid claim: tenant")
    if not _storable_identifier(sub):
        raise _unauthorized("invalid claim: sub")
    try:
        parsed_role = Role(role)
    except (ValueError, TypeError) as exc:
        raise _unauthorized(f"unknown role: {excerpt(repr(role))}") from exc
    return Principal(
        sub=sub,
        role=parsed_role,
        tenant=tenant,
        care_units=_care_units_claim(claims.get("care_units", None), "care_units" in claims),
        expires_at=_expiry(claims["exp"]),
        name=_display_name(claims.get("name")),
    )


#: The longest `sub` or `tenant` taken (they are written to every audit row).
MAX_IDENTIFIER_CHARS = 256
#: The latest `exp` taken: 9999-12-31T23:59:59Z, the last instant a datetime can hold.
MAX_EXP = 253402300799


def _storable_identifier(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_IDENTIFIER_CHARS
        and text_problem(value) is None
    )


def _display_name(value: Any) -> str | None:
    """The `name` claim when it is a storable string; anything else is ignored (display only)."""
    return value if _storable_identifier(value) else None


def _expiry(exp: Any) -> datetime:
    """The `exp` claim as an instant; a number PyJWT took but no clock reaches is a 401."""
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 <= exp <= MAX_EXP:
        raise _unauthorized("invalid claim: exp")
    return datetime.fromtimestamp(exp, UTC)


def _care_units_claim(value: Any, present: bool) -> frozenset[uuid.UUID] | None:
    """The optional `care_units` claim: a list of care-unit ids (UUID strings)."""
    if not present:
        return None
    # A present but malformed claim is rejected, never ignored: ignoring it would widen
    # the caller's view to the whole principal.
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _unauthorized("invalid claim: care_units")
    try:
        return frozenset(uuid.UUID(v) for v in value)
    except ValueError as exc:
        raise _unauthorized("invalid claim: care_units") from exc


_bearer = HTTPBearer(auto_error=False, description="RS256 JWT with sub, role and tenant claims")


def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Principal:
    """FastAPI dependency: the verified caller.

    A plain `def` on purpose: FastAPI runs it in a worker thread, so a JWKS fetch
    (blocking urllib inside PyJWKClient) never stalls the event loop.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token", error=False)
    return verify_token(credentials.credentials, settings)


def require_role(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits only `roles` (403 for any other authenticated caller)."""
    allowed = frozenset(roles)

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role.value!r} may not do this",
            )
        return principal

    return dependency


#: Who may do what (FastAPI parameter types of the routers).
Nurse = Annotated[Principal, Depends(require_role(Role.NURSE, Role.ADMIN))]
Reader = Annotated[Principal, Depends(require_role(Role.NURSE, Role.ADMIN, Role.INTEGRATION))]
#: The principal's fleet and organisation: its HMC (assistive-technology centre) and admins.
Fleet = Annotated[Principal, Depends(require_role(Role.HMC, Role.ADMIN))]
#: Reading the principal's registry (residents' administrative data, no clinical values).
Registry = Annotated[Principal, Depends(require_role(Role.NURSE, Role.HMC, Role.ADMIN))]
#: Decisions about disclosing patient data to another principal (sharing): admins only.
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
#: Reviewing the principal's access log (docs/audit.md): its auditors and admins.
Auditor = Annotated[Principal, Depends(require_role(Role.AUDITOR, Role.ADMIN))]
