"""`hemhub ota artifact ...` and `hemhub ota campaign ...`: rollouts for the HMC, through
the API (docs/firmware.md). The same machinery as `hemhub fleet`
(hemhub/fleet_cli.py): one HTTP request per command, JSON on stdout, its exit codes."""

from __future__ import annotations

import argparse

from hemhub.fleet_cli import Arg, FleetCommand, add_commands

_CAMPAIGN = ("campaign_id",)
_REASON = (Arg("reason", "why (recorded with the campaign's events and the audit)"),)

COMMANDS = [
    FleetCommand(
        "artifact",
        "register",
        "POST",
        "/api/v1/ota/artifacts",
        "register a hub bundle or a device model's firmware image of the update repository",
        body_args=(
            Arg("kind", "what it is", required=True, choices=("hub_software", "device_firmware")),
            Arg("version", "its version", required=True),
            Arg("target", "its target name in the repository", required=True),
            Arg("product_id", "the device model (product id) a firmware image is for"),
            Arg("sha256", "its SHA-256 (hex), for the record"),
            Arg("length", "its size in bytes, for the record", type=int),
            Arg("notes", "release notes"),
        ),
    ),
    FleetCommand("artifact", "list", "GET", "/api/v1/ota/artifacts", "the artifacts registered"),
    FleetCommand(
        "campaign",
        "create",
        "POST",
        "/api/v1/ota/campaigns",
        "a draft campaign: its targets chosen now and put in waves",
        body_args=(
            Arg("name", "the campaign's name", required=True),
            Arg("artifact_id", "what to roll out (artifact id)", required=True),
            Arg(
                "waves",
                "a wave's cumulative percent (repeat: 1 10 50 100)",
                type=int,
                multiple=True,
            ),
            Arg("time_zone", "the window's zone for hubs without one (default UTC)"),
            Arg("max_parallel", "at most this many updates in flight", type=int),
            Arg("confirm_timeout_s", "a target not confirmed after this long fails", type=int),
            Arg("margin_failed_sessions", "failed sessions a target may add", type=int),
            Arg("margin_error_readings", "error readings a target may add", type=int),
            Arg(
                "silence_window_s",
                "a confirmed target silent longer than this fails the gate",
                type=int,
            ),
            Arg("care_unit_id", "only hubs/devices of this care unit's residents"),
            Arg("model", "only hubs/devices of this product (id)"),
            Arg("hardware_revision", "only devices of this hardware revision"),
            Arg("current_version", "only targets running this version"),
        ),
    ),
    FleetCommand(
        "hub",
        "time-zone",
        "PUT",
        "/api/v1/hubs/{hub_id}/time-zone",
        "the time zone of a hub's home (a campaign's window is in its local time)",
        path_args=("hub_id",),
        body_args=(Arg("time_zone", "an IANA zone, e.g. Europe/Stockholm", required=True),),
    ),
    FleetCommand("campaign", "list", "GET", "/api/v1/ota/campaigns", "the campaigns, newest first"),
    FleetCommand(
        "campaign",
        "show",
        "GET",
        "/api/v1/ota/campaigns/{campaign_id}",
        "a campaign: state, wave, why it paused, its targets per state",
        path_args=_CAMPAIGN,
    ),
    FleetCommand(
        "campaign",
        "targets",
        "GET",
        "/api/v1/ota/campaigns/{campaign_id}/targets",
        "each hub's and device's state in the campaign and the progress it reports",
        path_args=_CAMPAIGN,
    ),
    FleetCommand(
        "campaign",
        "events",
        "GET",
        "/api/v1/ota/campaigns/{campaign_id}/events",
        "every step of the campaign, by whom and why",
        path_args=_CAMPAIGN,
    ),
    FleetCommand(
        "campaign",
        "start",
        "POST",
        "/api/v1/ota/campaigns/{campaign_id}/start",
        "start a draft campaign",
        path_args=_CAMPAIGN,
    ),
    FleetCommand(
        "campaign",
        "pause",
        "POST",
        "/api/v1/ota/campaigns/{campaign_id}/pause",
        "pause a running campaign",
        path_args=_CAMPAIGN,
        body_args=(Arg("reason", "why", required=True),),
    ),
    FleetCommand(
        "campaign",
        "resume",
        "POST",
        "/api/v1/ota/campaigns/{campaign_id}/resume",
        "go on past a pause (failed targets stay failed)",
        path_args=_CAMPAIGN,
    ),
    FleetCommand(
        "campaign",
        "cancel",
        "POST",
        "/api/v1/ota/campaigns/{campaign_id}/cancel",
        "ask no further target",
        path_args=_CAMPAIGN,
        body_args=_REASON,
    ),
    FleetCommand(
        "campaign",
        "rollback",
        "POST",
        "/api/v1/ota/campaigns/{campaign_id}/rollback",
        "every target asked goes back to the version it ran before",
        path_args=_CAMPAIGN,
        body_args=_REASON,
    ),
]


def register_campaigns(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `artifact`, `campaign` and `hub` groups under `hemhub ota` (hemhub/ota_cli.py)."""
    add_commands(groups, COMMANDS, prog="hemhub ota")
