"""Paging tokens of FHIR searches (no I/O).

A token says where the next page starts; it is opaque to clients but not secret, and
it cannot widen what they see: it is bound to the caller's principal and to the exact
search it continues (a token with another principal, or used with other parameters,
is refused with 400), and every page re-applies the caller's scope (`queries.visible`),
so an edited position only moves within what the caller may see anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from api.fhir.params import SearchError

VERSION = 1


@dataclass(frozen=True)
class Cursor:
    tenant: str
    #: Hash of the search's canonical parameters (without the token).
    search: str
    #: The commit horizon of the pull the page belongs to (None: compute a fresh one,
    #: a next pull); Observation searches only.
    horizon: int | None
    #: Where the next page starts: for Observations [xid, reading key, part index],
    #: for the other types [last id].
    after: list[Any]


def is_xid(value: object) -> bool:
    """A transaction id as the token writes it: decimal digits within xid8's range."""
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= 20
        and int(value) < 2**64
    )


def search_hash(resource: str, canonical: list[tuple[str, str]]) -> str:
    text = json.dumps([resource, canonical], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode(cursor: Cursor) -> str:
    body = {"v": VERSION, "t": cursor.tenant, "s": cursor.search, "a": cursor.after}
    if cursor.horizon is not None:
        body["h"] = str(cursor.horizon)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, *, tenant: str, search: str) -> Cursor:
    """The token's cursor, checked against the caller and the search it continues."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise SearchError("_cursor is not a paging token of this server") from exc
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise SearchError("_cursor is not a paging token of this server")
    if body.get("t") != tenant:
        raise SearchError("_cursor was issued to another principal")
    if body.get("s") != search:
        raise SearchError("_cursor belongs to another search: keep the parameters of its link")
    after = body.get("a")
    horizon = body.get("h")
    if not isinstance(after, list) or (horizon is not None and not is_xid(horizon)):
        raise SearchError("_cursor is not a paging token of this server")
    return Cursor(tenant, search, int(horizon) if horizon is not None else None, after)
