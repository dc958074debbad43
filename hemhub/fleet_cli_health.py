"""`hemhub fleet health ...` and `hemhub fleet figures ...`: fleet health (hubs, their
devices, history) and the follow-up figures, through the API (docs/fleet.md)."""

from __future__ import annotations

from hemhub.fleet_cli import Arg, FleetCommand

_HISTORY_ARGS = (
    Arg("since", "from this instant (ISO 8601; default: 30 days ago)"),
    Arg("limit", "at most this many entries, newest first", type=int),
)
_PERIOD_ARGS = (
    Arg("from", "the period's start (ISO 8601; default: 12 weeks before --to)"),
    Arg("to", "the period's end, excluded (ISO 8601; default: now)"),
)

COMMANDS = [
    FleetCommand(
        "health",
        "hubs",
        "GET",
        "/api/v1/fleet/hubs",
        "the principal's hubs with their health, filtered",
        query_args=(
            Arg("state", "online, offline or unknown", choices=("online", "offline", "unknown")),
            Arg("offline_for_hours", "offline for more than this many hours", type=float),
            Arg(
                "battery_low",
                "only hubs with a device at or below --battery-at-most",
                choices=("true", "false"),
            ),
            Arg("battery_at_most", "the battery level (percent) of --battery-low", type=int),
            Arg("care_unit", "hubs serving residents of this care unit (id)"),
            Arg("after", "the page after this hub id"),
            Arg("limit", "hubs per page (default 100)", type=int),
        ),
    ),
    FleetCommand(
        "health",
        "hub",
        "GET",
        "/api/v1/fleet/hubs/{hub_id}",
        "one hub's health and its devices' (battery, RSSI, firmware, failures, errors)",
        path_args=("hub_id",),
    ),
    FleetCommand(
        "health",
        "hub-history",
        "GET",
        "/api/v1/fleet/hubs/{hub_id}/history",
        "a hub's transitions and samples, newest first",
        path_args=("hub_id",),
        query_args=_HISTORY_ARGS,
    ),
    FleetCommand(
        "health",
        "device-history",
        "GET",
        "/api/v1/fleet/devices/{device_id}/health-history",
        "what the principal's hubs reported of a device, newest first",
        path_args=("device_id",),
        query_args=_HISTORY_ARGS,
    ),
    *(
        FleetCommand(
            "figures",
            name,
            "GET",
            f"/api/v1/fleet/figures/{name}",
            help,
            query_args=_PERIOD_ARGS,
            csv=True,
        )
        for name, help in (
            (
                "devices",
                "devices per product and state: in use, in stock, quarantine, repair, lost",
            ),
            ("days-in-state", "device-days in each state per product, and mean stays"),
            ("faults", "faults and error readings per model"),
            ("readings-per-week", "readings per resident per week"),
        )
    ),
]
