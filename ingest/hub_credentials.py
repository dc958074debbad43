"""Broker passwords of hubs in Mosquitto's own format (sans-I/O).

A hub's password is made here, shown once, and only its hash is kept: the `$7$` format
of `mosquitto_passwd` (Mosquitto 2.0+): `$7$<iterations>$<base64 salt>$<base64
PBKDF2-HMAC-SHA512>`. The broker reads the hashes from its password file, which
`hemhub broker-passwd` writes from the database (docs/operations.md).

The password is 32 random bytes (256 bits): no dictionary reaches it, so the iteration
count only has to be what Mosquitto does itself (101) and every hub reconnecting after a
broker restart costs the broker little.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from hemhub.contract import HUB_ID_PATTERN

#: What `mosquitto_passwd` uses (Mosquitto 2.0).
ITERATIONS = 101
SALT_BYTES = 12
_HASH_RE = re.compile(r"^\$7\$([0-9]+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_HUB_ID_RE = re.compile(HUB_ID_PATTERN)


def new_password() -> str:
    """A fresh hub password (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """The `$7$` hash Mosquitto checks `password` against."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(password: str, hashed: str) -> bool:
    """Whether `password` matches a `$7$` hash."""
    match = _HASH_RE.match(hashed)
    if match is None:
        return False
    iterations, salt, digest = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    mine = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(mine, digest)


def password_file(entries: Iterable[tuple[str, str]]) -> str:
    """A Mosquitto password file: one `user:hash` line per (hub id, hash), sorted."""
    lines = []
    for hub_id, hashed in sorted(entries):
        if not _HUB_ID_RE.match(hub_id) or not _HASH_RE.match(hashed):
            raise ValueError(f"not a hub id and $7$ hash: {hub_id!r}")
        lines.append(f"{hub_id}:{hashed}\n")
    return "".join(lines)
