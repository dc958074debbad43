"""`hemhub fleet wipe ...`: data resets through the hubs (api/routers/hub_commands.py)."""

from __future__ import annotations

from hemhub.contract import DeviceProfile
from hemhub.fleet_cli import Arg, FleetCommand

COMMANDS = [
    FleetCommand(
        "wipe",
        "device",
        "POST",
        "/api/v1/devices/{device_id}/wipe",
        "ask a hub to erase what the device stores and remove its bond (again)",
        path_args=("device_id",),
        body_args=(
            Arg("hub_id", "the hub to do it (default: the one that last had the device)"),
            Arg(
                "profile",
                "how to wipe it (default: the device's own profile)",
                choices=[p.value for p in DeviceProfile],
            ),
        ),
    ),
    FleetCommand(
        "wipe",
        "status",
        "GET",
        "/api/v1/devices/{device_id}/wipe",
        "the device's latest wipe: pending, wiped, unsupported or failed, and why",
        path_args=("device_id",),
    ),
    FleetCommand(
        "wipe",
        "hub",
        "POST",
        "/api/v1/hubs/{hub_id}/wipe",
        "ask a hub to erase its outbox, bonds, configuration and credentials, and stop",
        path_args=("hub_id",),
    ),
    FleetCommand(
        "wipe",
        "commands",
        "GET",
        "/api/v1/hubs/{hub_id}/commands",
        "a hub's commands, newest first, with what it reported",
        path_args=("hub_id",),
        query_args=(Arg("limit", "at most this many (default 100)", type=int),),
    ),
]
