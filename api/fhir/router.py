"""`/fhir/r4/`: read and search of Patient, Observation, Device, DeviceUseStatement and
Flag, and the CapabilityStatement (docs/fhir.md).

Roles integration, nurse and admin (`Reader`); every answer confined by
`queries.visible` and audited through `patient_data`: a search leaves one audit row per
resident it showed (one without a resident when it showed none), a read one row.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from api import queries
from api.access import Access, not_found, patient_data
from api.auth import Principal, Reader
from api.db import Conn, DbConn
from api.fhir import bundle, capabilities, cursor, feed, fhir_queries, map_device, map_flag
from api.fhir.map_observation import PARTS_BY_CODE, observations, parse_observation_id
from api.fhir.map_patient import patient as patient_resource
from api.fhir.outcome import FhirResponse
from api.fhir.paging import observation_page
from api.fhir.params import Bound, SearchError, SearchQuery, parse_search

router = APIRouter(prefix="/fhir/r4", tags=["fhir"])

#: A position's reading key in a token: a key, or empty (before every key).
_READING_KEY = re.compile(r"^[0-9a-f]{0,64}$")


class FhirError(HTTPException):
    """An HTTP error with the OperationOutcome issue code to answer it with."""

    def __init__(self, status: int, detail: str, code: str) -> None:
        super().__init__(status, detail=detail)
        self.fhir_code = code


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir/r4"


def _software_version() -> str:
    try:
        return version("hemhub")
    except PackageNotFoundError:
        return "unknown"


def scope(principal: Principal, *, at: str | None, tenant: str, patient: str) -> str:
    return queries.visible(
        at=at,
        care_units=principal.care_units is not None,
        data_tenant=tenant,
        data_patient=patient,
    )


def scope_params(principal: Principal) -> dict[str, Any]:
    return queries.scope_params(principal.tenant, principal.care_unit_list)


def parse(resource: str, request: Request, principal: Principal) -> tuple[SearchQuery, Any]:
    """The search and its paging cursor (None on a first page); 400 when invalid."""
    try:
        query = parse_search(resource, request.query_params.multi_items())
        found = None
        if query.cursor is not None:
            found = cursor.decode(
                query.cursor,
                tenant=principal.tenant,
                search=cursor.search_hash(resource, query.canonical),
            )
    except SearchError as exc:
        raise FhirError(400, str(exc), exc.code) from exc
    return query, found


def _time_filters(column: str, bounds: list[Bound], name: str, params: dict[str, Any]) -> list[str]:
    out = []
    for i, bound in enumerate(bounds):
        params[f"{name}{i}"] = bound.at
        out.append(f"AND {column} {bound.op} %({name}{i})s")
    return out


def _audit_detail(resource: str, query: SearchQuery, count: int) -> dict[str, Any]:
    return {"fhir": resource, "count": count, "query": query.canonical[:20]}


@router.get("/metadata", response_class=FhirResponse)
async def metadata(request: Request) -> FhirResponse:
    """The CapabilityStatement: what this server supports (no token needed)."""
    return FhirResponse(capabilities.capability_statement(base_url(request), _software_version()))


# --- Observation ---------------------------------------------------------------------------


def _after(found: cursor.Cursor | None) -> list[Any]:
    if found is None:
        return ["0", "", -1]
    after = found.after
    if (
        len(after) != 3
        or not cursor.is_xid(after[0])
        or not isinstance(after[1], str)
        or not _READING_KEY.match(after[1])
        or type(after[2]) is not int
    ):
        raise FhirError(400, "_cursor is not a paging token of this server", "invalid")
    return after


async def _patients_by_id(
    conn: Conn, principal: Principal, ids: list[uuid.UUID]
) -> list[dict[str, Any]]:
    if not ids:
        return []
    cur = await conn.execute(
        fhir_queries.PATIENTS_SQL.format(
            scope=scope(principal, at=None, tenant="p.tenant_id", patient="p.id"),
            filters="AND p.id = ANY(%(ids)s::uuid[])",
        ),
        {
            **scope_params(principal),
            "after": fhir_queries.FIRST_UUID,
            "ids": ids,
            "limit": len(ids),
        },
    )
    return [patient_resource(r) for r in await cur.fetchall()]


async def _devices_by_id(conn: Conn, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    if not ids:
        return []
    cur = await conn.execute(fhir_queries.DEVICES_BY_ID_SQL, {"ids": ids})
    return [map_device.device(r) for r in await cur.fetchall()]


def _reading_scope(principal: Principal) -> str:
    return scope(principal, at="r.measured_at", tenant="r.tenant_id", patient="r.patient_id")


@router.get("/Observation", response_class=FhirResponse)
async def search_observations(request: Request, principal: Reader, conn: DbConn) -> FhirResponse:
    """Readings as Observations, in commit order; `next` pages, and on the last page a
    `next-pull` link that continues after everything returned (docs/fhir.md)."""
    query, found = parse("Observation", request, principal)
    after = _after(found)
    horizon = found.horizon if found is not None and found.horizon is not None else None
    if horizon is None:
        # A first page or a next pull: a fresh horizon, never behind where it starts.
        horizon = max(await feed.horizon(conn), int(after[0]))
    params: dict[str, Any] = {
        **scope_params(principal),
        "horizon": str(horizon),
        "after_xid": after[0],
        "after_key": after[1],
        "limit": query.count + 1,
    }
    filters: list[str] = []
    sql = fhir_queries.OBSERVATIONS_SQL
    if query.patient is not None:
        sql = fhir_queries.OBSERVATIONS_OF_PATIENT_SQL
        params["patient"] = query.patient
    if query.codes is not None:
        filters.append("AND r.measurement_type = ANY(%(types)s)")
        params["types"] = sorted({t for c in query.codes for t, _ in PARTS_BY_CODE[c]})
    filters += _time_filters("r.measured_at", query.date, "date", params)
    filters += _time_filters("k.stored_at", query.last_updated, "updated", params)
    base = base_url(request)
    async with patient_data(conn, principal, "fhir.search", "fhir/Observation") as access:
        cur = await conn.execute(
            sql.format(scope=_reading_scope(principal), filters=" ".join(filters)),
            params,
        )
        page = observation_page(
            await cur.fetchall(), count=query.count, after=after, only_codes=query.codes
        )
        patient_ids = list(dict.fromkeys(row["patient_id"] for row, _ in page.entries))
        included: list[dict[str, Any]] = []
        if "Observation:patient" in query.include:
            included += await _patients_by_id(conn, principal, patient_ids)
        if "Observation:device" in query.include:
            device_ids = list(dict.fromkeys(row["device_id"] for row, _ in page.entries))
            included += await _devices_by_id(conn, device_ids)
        await access.record_many(
            patient_ids, _audit_detail("Observation", query, len(page.entries))
        )
    search = cursor.search_hash("Observation", query.canonical)
    links = {"self": bundle.search_url(base, "Observation", query.canonical, query.cursor)}
    if page.more and page.last is not None:
        token = cursor.Cursor(principal.tenant, search, horizon, page.last)
        links["next"] = bundle.search_url(
            base, "Observation", query.canonical, cursor.encode(token)
        )
    else:
        # Everything below the horizon was returned: the next pull starts there.
        token = cursor.Cursor(principal.tenant, search, None, [str(horizon), "", -1])
        links["next-pull"] = bundle.search_url(
            base, "Observation", query.canonical, cursor.encode(token)
        )
    return FhirResponse(bundle.searchset(base, (obs for _, obs in page.entries), included, links))


@router.get("/Observation/{resource_id}", response_class=FhirResponse)
async def read_observation(resource_id: str, principal: Reader, conn: DbConn) -> FhirResponse:
    parsed = parse_observation_id(resource_id)
    async with patient_data(
        conn, principal, "fhir.read", f"fhir/Observation/{resource_id[:80]}"
    ) as access:
        found = None
        if parsed is not None:
            key, suffix = parsed
            cur = await conn.execute(
                fhir_queries.OBSERVATION_SQL.format(scope=_reading_scope(principal)),
                {**scope_params(principal), "key": key},
            )
            row = await cur.fetchone()
            if row is not None:
                found = next((m for m in observations(row) if m.suffix == suffix), None)
                if found is not None:
                    await access.record(row["patient_id"], {"fhir": "Observation"})
        if found is None:
            raise access.refuse(not_found("Observation"), None, {"outcome": "not_found"})
    return FhirResponse(found.resource)


# --- Patient, Device, DeviceUseStatement, Flag -------------------------------------------------


@dataclass(frozen=True)
class ByIdType:
    """A resource type paged by id: its SQL, scope, filters and mapper."""

    sql: str
    at: str | None
    tenant: str
    patient: str
    #: The filter of `patient=` and of a read by id.
    patient_filter: str
    id_filter: str
    to_resource: Callable[[Mapping[str, Any]], dict[str, Any]]
    #: The residents a row shows (for the audit rows).
    patients_of: Callable[[Mapping[str, Any]], list[uuid.UUID]]
    #: Whether `{filters}` of the SQL goes into the device subquery (Device) or not.
    device_sql: bool = False


BY_ID: dict[str, ByIdType] = {
    "Patient": ByIdType(
        fhir_queries.PATIENTS_SQL,
        None,
        "p.tenant_id",
        "p.id",
        "AND p.id = %(patient)s",
        "AND p.id = %(id)s",
        patient_resource,
        lambda r: [r["id"]],
    ),
    "Device": ByIdType(
        fhir_queries.DEVICES_SQL,
        None,
        "p.tenant_id",
        "p.id",
        "AND da.patient_id = %(patient)s",
        "AND d.id = %(id)s",
        map_device.device,
        lambda r: list(r["patients"]),
        device_sql=True,
    ),
    "DeviceUseStatement": ByIdType(
        fhir_queries.ASSIGNMENTS_SQL,
        None,
        "p.tenant_id",
        "p.id",
        "AND da.patient_id = %(patient)s",
        "AND da.id = %(id)s",
        map_device.device_use_statement,
        lambda r: [r["patient_id"]],
    ),
    "Flag": ByIdType(
        fhir_queries.FLAGS_SQL,
        "a.measured_at",
        "a.tenant_id",
        "a.patient_id",
        "AND a.patient_id = %(patient)s",
        "AND a.id = %(id)s",
        map_flag.flag,
        lambda r: [r["patient_id"]],
    ),
}


async def _select_by_id(
    conn: Conn,
    principal: Principal,
    kind: ByIdType,
    *,
    filters: list[str],
    params: dict[str, Any],
    after: str,
    limit: int,
) -> list[dict[str, Any]]:
    where = scope(principal, at=kind.at, tenant=kind.tenant, patient=kind.patient)
    patient_filters = [f for f in filters if f != kind.id_filter]
    if kind.device_sql:
        sql = kind.sql.format(
            scope=where,
            filters=" ".join(patient_filters),
            device=kind.id_filter if kind.id_filter in filters else "",
        )
    else:
        sql = kind.sql.format(scope=where, filters=" ".join(filters))
    cur = await conn.execute(
        sql, {**scope_params(principal), **params, "after": after, "limit": limit}
    )
    return list(await cur.fetchall())


async def _search(
    resource: str, request: Request, principal: Principal, conn: Conn
) -> FhirResponse:
    kind = BY_ID[resource]
    query, found = parse(resource, request, principal)
    after = fhir_queries.FIRST_UUID
    if found is not None:
        if len(found.after) != 1 or not isinstance(found.after[0], str):
            raise FhirError(400, "_cursor is not a paging token of this server", "invalid")
        try:
            after = str(uuid.UUID(found.after[0]))
        except ValueError as exc:
            raise FhirError(400, "_cursor is not a paging token of this server", "invalid") from exc
    filters: list[str] = []
    params: dict[str, Any] = {}
    if query.patient is not None:
        filters.append(kind.patient_filter)
        params["patient"] = query.patient
    if query.ids is not None:
        filters.append("AND p.id = ANY(%(ids)s::uuid[])")
        params["ids"] = query.ids
    base = base_url(request)
    async with patient_data(conn, principal, "fhir.search", f"fhir/{resource}") as access:
        rows = await _select_by_id(
            conn,
            principal,
            kind,
            filters=filters,
            params=params,
            after=after,
            limit=query.count + 1,
        )
        shown = rows[: query.count]
        await access.record_many(
            (p for r in shown for p in kind.patients_of(r)),
            _audit_detail(resource, query, len(shown)),
        )
    links = {"self": bundle.search_url(base, resource, query.canonical, query.cursor)}
    if len(rows) > query.count:
        token = cursor.Cursor(
            principal.tenant,
            cursor.search_hash(resource, query.canonical),
            None,
            [str(shown[-1]["id"])],
        )
        links["next"] = bundle.search_url(base, resource, query.canonical, cursor.encode(token))
    return FhirResponse(bundle.searchset(base, (kind.to_resource(r) for r in shown), [], links))


async def _read(resource: str, resource_id: str, principal: Principal, conn: Conn) -> FhirResponse:
    kind = BY_ID[resource]
    async with patient_data(
        conn, principal, "fhir.read", f"fhir/{resource}/{resource_id[:80]}"
    ) as access:
        rows: list[dict[str, Any]] = []
        try:
            wanted = uuid.UUID(resource_id)
        except ValueError:
            wanted = None
        if wanted is not None:
            rows = await _select_by_id(
                conn,
                principal,
                kind,
                filters=[kind.id_filter],
                params={"id": wanted},
                after=fhir_queries.FIRST_UUID,
                limit=1,
            )
        if not rows:
            raise access.refuse(not_found(resource), None, {"outcome": "not_found"})
        await _record_read(access, kind.patients_of(rows[0]), resource)
    return FhirResponse(kind.to_resource(rows[0]))


async def _record_read(access: Access, patients: list[uuid.UUID], resource: str) -> None:
    await access.record_many(patients, {"fhir": resource})


def _add_routes(resource: str) -> None:
    async def search(request: Request, principal: Reader, conn: DbConn) -> FhirResponse:
        return await _search(resource, request, principal, conn)

    async def read(resource_id: str, principal: Reader, conn: DbConn) -> FhirResponse:
        return await _read(resource, resource_id, principal, conn)

    search.__doc__ = f"Search {resource} (parameters: GET /fhir/r4/metadata)."
    read.__doc__ = f"Read one {resource}."
    router.add_api_route(
        f"/{resource}",
        search,
        methods=["GET"],
        response_class=FhirResponse,
        name=f"fhir_search_{resource}",
    )
    router.add_api_route(
        f"/{resource}/{{resource_id}}",
        read,
        methods=["GET"],
        response_class=FhirResponse,
        name=f"fhir_read_{resource}",
    )


for _resource in BY_ID:
    _add_routes(_resource)
