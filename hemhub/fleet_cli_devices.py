"""`hemhub fleet products|devices|hubs ...`: the catalogue, the inventory, each device's
and hub's life, hub credentials and configuration (docs/fleet.md)."""

from __future__ import annotations

import json
from typing import Any

from hemhub.fleet_cli import Arg, FleetCommand

STATES = ("in_stock", "assigned", "returned", "quarantine", "repair", "retired")
KINDS = ("blood_pressure", "weight_scale", "pulse_oximeter", "glucose", "dispenser", "hub")


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _yes(text: str) -> bool:
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise ValueError("yes or no")


REASON = Arg("reason", "why (recorded with the change)")
UNTIL = Arg("until", "the end of the period, ISO 8601 with an offset (default: now)")
STATE_ARGS = (
    Arg("to", "the new state", required=True, choices=STATES),
    REASON,
    Arg("retired_as", "why retired", choices=("lost", "broken", "scrapped")),
    Arg("override", "quarantine -> in_stock without a confirmed wipe (needs --reason)", type=_yes),
)
DEVICE = {"device_id": "the device's id"}
HUB = {"hub_id": "the hub's id (its broker user name)"}

COMMANDS = [
    # products
    FleetCommand("products", "list", "GET", "/api/v1/products", "the product catalogue"),
    FleetCommand(
        "products",
        "show",
        "GET",
        "/api/v1/products/{product_id}",
        "one product",
        path_args=("product_id",),
    ),
    FleetCommand(
        "products",
        "add",
        "POST",
        "/api/v1/products",
        "add a product to the catalogue",
        body_args=(
            Arg("kind", "the device profile, or hub", required=True, choices=KINDS),
            Arg("manufacturer", "as on the box", required=True),
            Arg("model", "as on the box", required=True),
            Arg("profiles", "a profile it speaks (repeatable; default its kind)", multiple=True),
            Arg("quirks", "JSON object, e.g. '{\"bond\": true}'", type=_json_object),
            Arg("firmware_line", "the firmware line it runs"),
        ),
    ),
    # devices
    FleetCommand(
        "devices",
        "list",
        "GET",
        "/api/v1/devices",
        "the inventory",
        query_args=(
            Arg("state", "only devices in this state", choices=STATES),
            Arg("product_id", "only this product"),
            Arg("limit", "at most this many", type=int),
            Arg("offset", "skip this many", type=int),
        ),
    ),
    FleetCommand(
        "devices",
        "register",
        "POST",
        "/api/v1/devices",
        "take a device into the inventory (in stock)",
        body_args=(
            Arg("product_id", "its product", required=True),
            Arg("serial", "the serial number (Device Information)", required=True),
            Arg("address", "the radio address AA:BB:CC:DD:EE:FF", required=True),
            Arg("manufacturer", "as the device reports it, when not the product's"),
            Arg("model", "as the device reports it, when not the product's"),
            Arg("hardware_revision", "Device Information's hardware revision"),
            Arg("firmware", "Device Information's firmware revision"),
        ),
    ),
    FleetCommand(
        "devices",
        "show",
        "GET",
        "/api/v1/devices/{device_id}",
        "one device",
        path_args=("device_id",),
        path_help=DEVICE,
    ),
    FleetCommand(
        "devices",
        "history",
        "GET",
        "/api/v1/devices/{device_id}/history",
        "every transition of a device: who, when, why",
        path_args=("device_id",),
        path_help=DEVICE,
    ),
    FleetCommand(
        "devices",
        "assign",
        "POST",
        "/api/v1/devices/{device_id}/assign",
        "in_stock -> assigned: to a resident, through a hub",
        path_args=("device_id",),
        path_help=DEVICE,
        body_args=(
            Arg("patient_id", "the resident", required=True),
            Arg("hub_id", "the hub at the resident's home", required=True),
            Arg("from", "from when, ISO 8601 with an offset (default: now)"),
            REASON,
        ),
    ),
    FleetCommand(
        "devices",
        "return",
        "POST",
        "/api/v1/devices/{device_id}/return",
        "assigned -> returned: the period ends; the hub is asked to wipe the device",
        path_args=("device_id",),
        path_help=DEVICE,
        body_args=(UNTIL, REASON),
    ),
    FleetCommand(
        "devices",
        "state",
        "POST",
        "/api/v1/devices/{device_id}/state",
        "to quarantine, in_stock, repair or retired",
        path_args=("device_id",),
        path_help=DEVICE,
        body_args=STATE_ARGS,
    ),
    # hubs
    FleetCommand(
        "hubs",
        "list",
        "GET",
        "/api/v1/hubs",
        "the principal's hubs (config version wanted / confirmed)",
        query_args=(
            Arg("state", "only hubs in this state", choices=STATES),
            Arg("limit", "at most this many", type=int),
            Arg("offset", "skip this many", type=int),
        ),
    ),
    FleetCommand(
        "hubs",
        "register",
        "POST",
        "/api/v1/hubs",
        "register a hub (in stock)",
        body_args=(
            Arg("id", "the hub id = its broker user name", required=True),
            Arg("product_id", "its product (kind hub)"),
            Arg("serial", "its serial number"),
        ),
    ),
    FleetCommand(
        "hubs",
        "show",
        "GET",
        "/api/v1/hubs/{hub_id}",
        "one hub",
        path_args=("hub_id",),
        path_help=HUB,
    ),
    FleetCommand(
        "hubs",
        "history",
        "GET",
        "/api/v1/hubs/{hub_id}/history",
        "every transition of a hub",
        path_args=("hub_id",),
        path_help=HUB,
    ),
    FleetCommand(
        "hubs",
        "configs",
        "GET",
        "/api/v1/hubs/{hub_id}/configs",
        "the configurations issued to a hub, newest first",
        path_args=("hub_id",),
        path_help=HUB,
        query_args=(Arg("limit", "at most this many", type=int),),
    ),
    FleetCommand(
        "hubs",
        "credentials",
        "POST",
        "/api/v1/hubs/{hub_id}/credentials",
        "issue the hub's broker password (shown once)",
        path_args=("hub_id",),
        path_help=HUB,
    ),
    FleetCommand(
        "hubs",
        "revoke",
        "DELETE",
        "/api/v1/hubs/{hub_id}/credentials",
        "revoke the hub's broker credentials",
        path_args=("hub_id",),
        path_help=HUB,
        query_args=(REASON,),
    ),
    FleetCommand(
        "hubs",
        "place",
        "POST",
        "/api/v1/hubs/{hub_id}/place",
        "in_stock -> assigned: the hub stands at a resident's home",
        path_args=("hub_id",),
        path_help=HUB,
        body_args=(
            Arg("patient_id", "the resident", required=True),
            Arg("from", "from when, ISO 8601 with an offset (default: now)"),
            REASON,
        ),
    ),
    FleetCommand(
        "hubs",
        "return",
        "POST",
        "/api/v1/hubs/{hub_id}/return",
        "assigned -> returned: credentials revoked, the hub asked to wipe itself",
        path_args=("hub_id",),
        path_help=HUB,
        body_args=(UNTIL, REASON),
    ),
    FleetCommand(
        "hubs",
        "state",
        "POST",
        "/api/v1/hubs/{hub_id}/state",
        "to quarantine, in_stock, repair or retired",
        path_args=("hub_id",),
        path_help=HUB,
        body_args=STATE_ARGS,
    ),
]
