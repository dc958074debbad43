"""FHIR search parameters to a `SearchQuery` (no I/O): only what `capabilities` lists;
anything else is a `SearchError` (400 OperationOutcome), never silently ignored."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from api.fhir import capabilities, codes
from api.fhir.map_observation import PARTS_BY_CODE

DEFAULT_COUNT = 100
MAX_COUNT = 1000
MAX_VALUE_CHARS = 512


class SearchError(ValueError):
    """A search the server cannot run as asked; the message says why."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        #: OperationOutcome issue code: invalid, not-supported
        self.code = code


@dataclass(frozen=True)
class Bound:
    """One half of a time range: column `op` instant (op is >= or <)."""

    op: str
    at: datetime


@dataclass
class SearchQuery:
    resource: str
    patient: uuid.UUID | None = None
    ids: list[uuid.UUID] | None = None
    #: Observation codes asked for (None: all).
    codes: set[str] | None = None
    date: list[Bound] = field(default_factory=list)
    last_updated: list[Bound] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    include: set[str] = field(default_factory=set)
    cursor: str | None = None
    #: The query without its cursor, canonical: what a paging token is bound to.
    canonical: list[tuple[str, str]] = field(default_factory=list)


_DATE = re.compile(
    r"^(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?"
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,6})?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def parse_date(value: str) -> list[Bound]:
    """A `date` value with its prefix as bounds on the column; the value is a range by
    its precision (2026-03 is the whole month, UTC when no zone is given for a date)."""
    m = _DATE.match(value)
    if m is None:
        raise SearchError(f"not a FHIR date: {value[:64]!r}")
    prefix = m["prefix"] or "eq"
    if prefix in ("ne", "sa", "eb", "ap"):
        raise SearchError(f"date prefix {prefix!r} is not supported", "not-supported")
    if m["hour"] is not None and m["zone"] is None:
        raise SearchError(f"a date with a time needs a time zone (Z or +hh:mm): {value[:64]!r}")
    try:
        year, month, day = int(m["year"]), int(m["month"] or 1), int(m["day"] or 1)
        if m["hour"] is None:
            start = datetime(year, month, day, tzinfo=UTC)
            if m["day"] is not None:
                end = start + timedelta(days=1)
            elif m["month"] is not None:
                end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            else:
                end = datetime(year + 1, 1, 1, tzinfo=UTC)
        else:
            text = f"{m['year']}-{m['month']}-{m['day']}T{m['hour']}:{m['minute']}"
            text += f":{m['second'] or '00'}{m['fraction'] or ''}"
            zone = "+00:00" if m["zone"] == "Z" else m["zone"]
            start = datetime.fromisoformat(text + zone)
            if m["fraction"]:
                step = timedelta(microseconds=10 ** (6 - len(m["fraction"]) + 1))
            elif m["second"]:
                step = timedelta(seconds=1)
            else:
                step = timedelta(minutes=1)
            end = start + step
    except (ValueError, OverflowError) as exc:
        raise SearchError(f"not a valid date: {value[:64]!r} ({exc})") from exc
    return {
        "eq": [Bound(">=", start), Bound("<", end)],
        "ge": [Bound(">=", start)],
        "gt": [Bound(">=", end)],
        "le": [Bound("<", end)],
        "lt": [Bound("<", start)],
    }[prefix]


def parse_reference(value: str, resource: str) -> uuid.UUID:
    """`Patient/<uuid>`, `<uuid>` or a URL ending in `Patient/<uuid>`."""
    tail = value.rstrip("/").rsplit("/", 2)
    if len(tail) >= 2 and tail[-2] != resource:
        raise SearchError(f"expected a {resource} reference: {value[:80]!r}")
    try:
        return uuid.UUID(tail[-1])
    except ValueError as exc:
        raise SearchError(f"not a {resource} id: {value[:80]!r}") from exc


def parse_codes(value: str) -> set[str]:
    """`code=a,b` (any of); each `[system]|code` (LOINC or hemhub's) or a bare code."""
    found: set[str] = set()
    for token in value.split(","):
        system, bar, code = token.rpartition("|")
        if bar and system not in ("", codes.LOINC, codes.HEMHUB_CODES):
            raise SearchError(f"unknown code system {system[:80]!r}", "not-supported")
        if code not in PARTS_BY_CODE:
            raise SearchError(
                f"code {code[:32]!r} is none of the codes served"
                f" ({', '.join(sorted(PARTS_BY_CODE))})",
                "not-supported",
            )
        found.add(code)
    return found


def parse_search(resource: str, items: Iterable[tuple[str, str]]) -> SearchQuery:
    """The query of a search of `resource` from its (name, value) pairs."""
    support = capabilities.BY_TYPE[resource]
    allowed = {p.name for p in support.params} | set(capabilities.CONTROL_PARAMS)
    query = SearchQuery(resource)
    seen: set[str] = set()
    for name, value in items:
        if len(value) > MAX_VALUE_CHARS:
            raise SearchError(f"the value of {name[:32]!r} is too long")
        base, colon, modifier = name.partition(":")
        if base not in allowed:
            raise SearchError(
                f"unknown search parameter {name[:64]!r} for {resource}"
                f" (supported: {', '.join(sorted(allowed - {'_cursor'}))})",
                "not-supported",
            )
        if colon:
            raise SearchError(f"modifier {modifier[:32]!r} is not supported", "not-supported")
        if base != "_cursor":
            query.canonical.append((name, value))
        if base in ("patient", "_count", "_cursor", "_id") and base in seen:
            raise SearchError(f"{base} may be given once")
        seen.add(base)
        if base == "patient":
            query.patient = parse_reference(value, "Patient")
        elif base == "_id":
            try:
                query.ids = [uuid.UUID(v) for v in value.split(",")]
            except ValueError as exc:
                raise SearchError(f"not a {resource} id: {value[:80]!r}") from exc
        elif base == "code":
            asked = parse_codes(value)
            query.codes = asked if query.codes is None else query.codes & asked
        elif base == "date":
            query.date.extend(parse_date(value))
        elif base == "_lastUpdated":
            query.last_updated.extend(parse_date(value))
        elif base == "_count":
            if not value.isdigit() or int(value) < 1:
                raise SearchError(f"_count must be a positive integer: {value[:32]!r}")
            query.count = min(int(value), MAX_COUNT)
        elif base == "_include":
            if value not in support.includes:
                raise SearchError(
                    f"_include {value[:64]!r} is not supported"
                    f" (supported: {', '.join(support.includes) or 'none'})",
                    "not-supported",
                )
            query.include.add(value)
        elif base == "_format":
            if value not in ("json", "application/json", "application/fhir+json"):
                raise SearchError("only JSON is served (_format=json)", "not-supported")
        elif base == "_cursor":
            query.cursor = value
    query.canonical.sort()
    return query
