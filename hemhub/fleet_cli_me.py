"""`hemhub fleet me show`: who the token is (role, principal, care units)."""

from __future__ import annotations

from hemhub.fleet_cli import FleetCommand

COMMANDS = [
    FleetCommand("me", "show", "GET", "/api/v1/me", "who the token is: role and principal"),
]
