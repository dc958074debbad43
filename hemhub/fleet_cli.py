"""`hemhub fleet ...`: the assistive-device center's command line, a client of the API.

Every command is one HTTP request to the API, so the command line and the endpoints
are one implementation with one set of roles, checks and audit rows; the command line
only turns options into a request and the answer into JSON (or CSV) on stdout. The API
is `HEMHUB_API_URL` (default http://HEMHUB_API_HOST:HEMHUB_API_PORT); the bearer token
comes from `--token-file` or `HEMHUB_API_TOKEN`.

Commands are data (`FleetCommand`), one list per part of the fleet product in the
modules of `COMMAND_MODULES`. Exit codes: 0 done, 1 API unreachable or failing,
2 usage, 3 not found, 4 conflict (an impossible transition, a duplicate), 5 refused
(no or wrong token, a role that may not), 6 invalid request (the API says why).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Modules whose `COMMANDS: list[FleetCommand]` make up `hemhub fleet`.
COMMAND_MODULES: tuple[str, ...] = (
    "hemhub.fleet_cli_me",
    "hemhub.fleet_cli_people",
    "hemhub.fleet_cli_devices",
    "hemhub.fleet_cli_health",
    "hemhub.fleet_cli_reset",
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_REFUSED, EXIT_INVALID = 3, 4, 5, 6
_EXIT_BY_STATUS = {
    400: EXIT_INVALID,
    401: EXIT_REFUSED,
    403: EXIT_REFUSED,
    404: EXIT_NOT_FOUND,
    409: EXIT_CONFLICT,
    413: EXIT_INVALID,
    422: EXIT_INVALID,
}
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Arg:
    """An option `--name` (dashes for underscores); its value goes under `name`."""

    name: str
    help: str
    required: bool = False
    type: Callable[[str], Any] = str
    #: Repeatable: the values go as a list.
    multiple: bool = False
    choices: Sequence[str] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class FleetCommand:
    """`hemhub fleet GROUP VERB [PATH_ARGS...] [--options]` = METHOD PATH."""

    group: str
    verb: str
    method: str
    #: e.g. "/api/v1/fleet/devices/{device_id}/return": each {name} is a positional.
    path: str
    help: str
    path_args: tuple[str, ...] = ()
    body_args: tuple[Arg, ...] = ()
    query_args: tuple[Arg, ...] = ()
    #: The endpoint answers text/csv when asked (`--format csv`).
    csv: bool = False
    #: Help for each positional, by name.
    path_help: dict[str, str] = field(default_factory=dict)


class FleetCliError(Exception):
    """A failure with its exit code; the message goes to stderr."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def commands() -> list[FleetCommand]:
    found: list[FleetCommand] = []
    for name in COMMAND_MODULES:
        found.extend(importlib.import_module(name).COMMANDS)
    return found


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`hemhub fleet`, with a sub-command per group and verb."""
    fleet = sub.add_parser(
        "fleet",
        help="the assistive-device center's registry, through the API (JSON out)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    fleet.add_argument("--api-url", help="the API (default: HEMHUB_API_URL)")
    fleet.add_argument("--token-file", help="a file holding the bearer token")
    fleet.set_defaults(func=lambda args: _usage(fleet))
    groups = fleet.add_subparsers(dest="fleet_group", metavar="GROUP")
    add_commands(groups, commands())


def add_commands(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
    found: Sequence[FleetCommand],
    prog: str = "hemhub fleet",
) -> dict[str, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """A sub-command per group and verb of `found` (`hemhub fleet`, `hemhub ota`,
    `hemhub audit`); the verbs' sub-parsers by group, for verbs of other kinds."""
    by_group: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for command in found:
        if command.group not in by_group:
            parser = groups.add_parser(command.group, help=f"{command.group} commands")
            parser.set_defaults(func=lambda args, p=parser: _usage(p))
            by_group[command.group] = parser.add_subparsers(metavar="VERB")
        verb = by_group[command.group].add_parser(command.verb, help=command.help)
        verb.description = f"{command.help} ({command.method} {command.path})"
        # Accepted after the verb too; a value given before it is kept unless repeated.
        verb.add_argument("--api-url", default=argparse.SUPPRESS, help="the API")
        verb.add_argument("--token-file", default=argparse.SUPPRESS, help="the token's file")
        for name in command.path_args:
            verb.add_argument(name, help=command.path_help.get(name))
        for arg in (*command.body_args, *command.query_args):
            verb.add_argument(
                arg.flag,
                dest=arg.name,
                help=arg.help,
                required=arg.required,
                type=arg.type,
                choices=arg.choices,
                action="append" if arg.multiple else "store",
            )
        if command.body_args:
            verb.add_argument("--body", help="the request body as JSON (options given win over it)")
        if command.csv:
            verb.add_argument("--format", choices=["json", "csv"], default="json")
        verb.set_defaults(func=lambda args, c=command: run(c, args, prog))
    return by_group


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _api_url(args: argparse.Namespace) -> str:
    if getattr(args, "api_url", None):
        return str(args.api_url).rstrip("/")
    if os.environ.get("HEMHUB_API_URL"):
        return os.environ["HEMHUB_API_URL"].rstrip("/")
    from hemhub.settings import Settings

    settings = Settings()
    return f"http://{settings.api_host}:{settings.api_port}"


def _token(args: argparse.Namespace) -> str:
    if getattr(args, "token_file", None):
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FleetCliError(f"cannot read the token file: {exc}", EXIT_USAGE) from exc
    token = os.environ.get("HEMHUB_API_TOKEN", "").strip()
    if not token:
        raise FleetCliError(
            "no token: give --token-file or set HEMHUB_API_TOKEN (`hemhub token --role hmc`)",
            EXIT_USAGE,
        )
    return token


def build_request(command: FleetCommand, args: argparse.Namespace) -> urllib.request.Request:
    """The HTTP request `command` makes with `args` (no I/O)."""
    path = command.path
    for name in command.path_args:
        path = path.replace("{" + name + "}", urllib.parse.quote(str(getattr(args, name)), safe=""))
    query = {
        a.name: getattr(args, a.name)
        for a in command.query_args
        if getattr(args, a.name) is not None
    }
    if query:
        path += "?" + urllib.parse.urlencode(query, doseq=True)
    data = None
    headers = {"Authorization": f"Bearer {_token(args)}", "Accept": "application/json"}
    if getattr(args, "format", "json") == "csv":
        headers["Accept"] = "text/csv"
    if command.body_args or command.method in {"POST", "PUT", "PATCH"}:
        body: dict[str, Any] = {}
        if getattr(args, "body", None):
            try:
                given = json.loads(args.body)
            except json.JSONDecodeError as exc:
                raise FleetCliError(f"--body is not JSON: {exc}", EXIT_USAGE) from exc
            if not isinstance(given, dict):
                raise FleetCliError("--body must be a JSON object", EXIT_USAGE)
            body.update(given)
        for arg in command.body_args:
            value = getattr(args, arg.name)
            if value is not None:
                body[arg.name] = value
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    return urllib.request.Request(
        _api_url(args) + path, data=data, method=command.method, headers=headers
    )


def _detail(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        detail = (
            body
            if isinstance(body, dict) and "issue" in body
            else body.get("detail", raw.decode(errors="replace"))
        )
    except (json.JSONDecodeError, AttributeError):
        return raw.decode(errors="replace").strip()
    if isinstance(detail, dict) and detail.get("resourceType") == "OperationOutcome":
        # The FHIR API's errors (/fhir/r4/...): the diagnostics of each issue.
        return "; ".join(str(i.get("diagnostics", i.get("code"))) for i in detail["issue"])
    return detail if isinstance(detail, str) else json.dumps(detail)


def run(command: FleetCommand, args: argparse.Namespace, prog: str = "hemhub fleet") -> int:
    """Send the command's request; print the answer; the exit code."""
    name = f"{prog} {command.group} {command.verb}"
    try:
        request = build_request(command, args)
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            raw = response.read()
            kind = response.headers.get_content_type()
    except FleetCliError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.code
    except urllib.error.HTTPError as exc:
        print(f"{name}: {exc.code} {exc.reason}: {_detail(exc.read())}", file=sys.stderr)
        return _EXIT_BY_STATUS.get(exc.code, EXIT_FAILED)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"{name}: the API at {_api_url(args)} cannot be reached: {reason}", file=sys.stderr)
        return EXIT_FAILED
    if kind == "application/json" or kind.endswith("+json"):  # FHIR: application/fhir+json
        print(json.dumps(json.loads(raw) if raw else None, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(raw.decode())
    return EXIT_OK
