"""Bundles: searchsets with their paging links, and the subject-access collection."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode


def full_url(base: str, resource: dict[str, Any]) -> str:
    return f"{base}/{resource['resourceType']}/{resource['id']}"


def search_url(
    base: str, resource: str, canonical: list[tuple[str, str]], token: str | None
) -> str:
    items = list(canonical) + ([("_cursor", token)] if token else [])
    return f"{base}/{resource}" + (f"?{urlencode(items)}" if items else "")


def searchset(
    base: str,
    matches: Iterable[dict[str, Any]],
    includes: Iterable[dict[str, Any]],
    links: dict[str, str],
) -> dict[str, Any]:
    """A searchset of `matches` then `includes`, with links by relation."""
    entries = [
        {"fullUrl": full_url(base, r), "resource": r, "search": {"mode": "match"}} for r in matches
    ] + [
        {"fullUrl": full_url(base, r), "resource": r, "search": {"mode": "include"}}
        for r in includes
    ]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": datetime.now(UTC).isoformat()},
        "type": "searchset",
        "link": [{"relation": rel, "url": url} for rel, url in links.items()],
        "entry": entries,
    }


def collection(base: str, resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now},
        "type": "collection",
        "timestamp": now,
        "entry": [{"fullUrl": full_url(base, r), "resource": r} for r in resources],
    }
