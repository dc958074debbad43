"""The principal's product catalogue (HMC): what kinds of device and hub it lends out."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api import schemas_fleet as s
from api.access import fleet_actor, fleet_change
from api.auth import Fleet
from api.db import DbConn
from ingest import inventory

router = APIRouter(tags=["fleet: products"])


@router.get("/api/v1/products", response_model=list[s.Product])
async def list_products(principal: Fleet, conn: DbConn) -> list[s.Product]:
    """The principal's products, by manufacturer and model."""
    rows = await inventory.list_products(conn, principal.tenant)
    return [s.Product.model_validate(r) for r in rows]


@router.post("/api/v1/products", response_model=s.Product, status_code=201, responses={409: {}})
async def create_product(principal: Fleet, conn: DbConn, body: s.ProductCreate) -> s.Product:
    """A product of the catalogue; `409` when the catalogue has that manufacturer and model."""
    async with fleet_change(conn, principal, "product.create", "products") as change:
        row = await inventory.create_product(
            conn,
            fleet_actor(principal),
            kind=body.kind,
            manufacturer=body.manufacturer,
            model=body.model,
            profiles=list(body.profiles) if body.profiles is not None else None,
            quirks=body.quirks,
            firmware_line=body.firmware_line,
        )
        await change.record(None, {"product_id": str(row["id"]), **body.model_dump(mode="json")})
    return s.Product.model_validate(row)


@router.get("/api/v1/products/{product_id}", response_model=s.Product)
async def get_product(product_id: uuid.UUID, principal: Fleet, conn: DbConn) -> s.Product:
    async with fleet_change(conn, principal, "product.read", f"products/{product_id}") as change:
        row = await inventory.get_product(conn, principal.tenant, product_id)
        change.shows_nothing()
    return s.Product.model_validate(row)
