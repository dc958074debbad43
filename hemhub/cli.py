"""The `hemhub` command line: one entry point for every service and tool."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from hemhub import audit_cli, fleet_cli, ota_cli
from hemhub.logs import LOG_FORMATS, setup_logging
from hemhub.settings import Settings

EXIT_USAGE = 2


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    return settings


def _cmd_decode(args: argparse.Namespace) -> int:
    from device_drivers.codecs import DecodeError
    from device_drivers.codecs.registry import (
        decode_characteristic,
        normalize_uuid,
        supported_characteristics,
    )
    from device_drivers.measurement import ClinicalMeasurement, clinical_view

    if args.list:
        for uuid, name in supported_characteristics():
            print(f"{uuid}  {name}")
        return 0
    if not args.characteristic or args.hex is None:
        print("hemhub decode: give CHARACTERISTIC and HEX, or --list", file=sys.stderr)
        return EXIT_USAGE
    text = args.hex.replace(" ", "").replace(":", "")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        print(f"hemhub decode: {args.hex!r} is not a sequence of hex bytes", file=sys.stderr)
        return EXIT_USAGE
    try:
        decoded = decode_characteristic(normalize_uuid(args.characteristic), data)
    except DecodeError as exc:
        print(f"hemhub decode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"hemhub decode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = decoded.model_dump(mode="json")
    if isinstance(decoded, ClinicalMeasurement):
        # How the hub would send it: device error or not, and each value's LOINC and UCUM.
        out = {**out, "clinical": clinical_view(decoded)}
    print(json.dumps(out, indent=2))
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from api.auth import Role, ensure_demo_key, issue_token

    settings = _settings(args)
    ensure_demo_key(settings.demo_key_file)
    try:
        token = issue_token(
            settings,
            sub=args.sub,
            role=Role(args.role),
            tenant=args.tenant,
            ttl=timedelta(hours=args.hours),
            care_units=args.care_units,
        )
    except ValueError as exc:  # a --care-unit that is not a UUID
        print(f"hemhub token: --care-unit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(token)
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from ingest.migrations import MigrationError, migrate
    from ingest.roles import RuntimeRoles

    settings = _settings(args)
    if not settings.database_url:
        print("hemhub migrate: set HEMHUB_DATABASE_URL", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = migrate(
            settings.database_url,
            retention_years=settings.readings_retention_years,
            partitioning=settings.readings_partitioning,
            roles=RuntimeRoles(api=settings.db_api_role, ingest=settings.db_ingest_role),
        )
    except MigrationError as exc:
        print(f"hemhub migrate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"applied": report.applied, "partitioning": report.partitioning}))
    return 0


def _cmd_alerts(args: argparse.Namespace) -> int:
    if args.action == "rules":
        from ingest.rules_listing import render

        print(render(args.format))
        return 0
    import psycopg

    from ingest.schedule import run_scheduled_evaluation

    settings = _settings(args)
    if not settings.database_url:
        print("hemhub alerts: set HEMHUB_DATABASE_URL", file=sys.stderr)
        return EXIT_USAGE
    try:
        with psycopg.connect(settings.database_url) as conn:
            counts = run_scheduled_evaluation(conn, datetime.now(UTC))
    except psycopg.errors.UndefinedTable:
        print("hemhub alerts: the database is not migrated; run `hemhub migrate`", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(counts, default=str))
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.supervisor import run_ingest

    settings = _settings(args)
    if not settings.database_url or not settings.mqtt_url:
        print("hemhub ingest: set HEMHUB_DATABASE_URL and HEMHUB_MQTT_URL", file=sys.stderr)
        return EXIT_USAGE
    if args.metrics_port is not None:
        settings = settings.model_copy(update={"ingest_metrics_port": args.metrics_port})
    run_ingest(settings, workers=args.workers)
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    from api.app import SelfMadeKeyRefused, Server, create_app

    settings = _settings(args)
    if not settings.database_url:
        print("hemhub api: set HEMHUB_DATABASE_URL", file=sys.stderr)
        return EXIT_USAGE
    try:
        app = create_app(settings)
    except SelfMadeKeyRefused as exc:
        print(f"hemhub api: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Stopping ends the live streams at once (browsers reconnect to the next server);
    # whatever else is still open gets a second, then is cut.
    server = Server(
        app, host=settings.api_host, port=settings.api_port, timeout_graceful_shutdown=1
    )
    server.run()
    return 0


def _cmd_hub_link(args: argparse.Namespace) -> int:
    from ingest.hub_link import HubLink

    settings = _settings(args)
    if not settings.database_url or not settings.hub_link_mqtt_url:
        print(
            "hemhub hub-link: set HEMHUB_DATABASE_URL and HEMHUB_BACKEND_MQTT_URL"
            " (or HEMHUB_MQTT_URL)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    link = HubLink(settings.database_url, settings.hub_link_mqtt_url, ca_file=settings.mqtt_ca_file)
    signal.signal(signal.SIGTERM, lambda *_: link.stop(timeout=0))
    try:
        link.run()
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    # Until the service installs its own handlers (after the imports below), SIGTERM
    # means a clean exit: nothing has been opened that would need flushing.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from gateway.service import run_gateway

    return run_gateway(Path(args.config), Path(args.simulate) if args.simulate else None)


def _cmd_broker_passwd(args: argparse.Namespace) -> int:
    import os
    import tempfile

    import psycopg

    from ingest.hub_credentials import password_file
    from ingest.hub_fleet import LIVE_PASSWORDS_SQL

    settings = _settings(args)
    if not settings.database_url:
        print("hemhub broker-passwd: set HEMHUB_DATABASE_URL", file=sys.stderr)
        return EXIT_USAGE
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(LIVE_PASSWORDS_SQL).fetchall()
    text = password_file((r[0], r[1]) for r in rows)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    # Written beside the target and renamed over it: the broker never reads half a file.
    target = Path(args.output)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o640)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(json.dumps({"output": str(target), "hubs": len(rows)}))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from hemhub.contract import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hemhub.demo import run_demo

    return run_demo(_settings(args), homes=args.homes)


# -- logging ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Accepted before the command and after it: `hemhub gateway --log-format json ...`.
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help="plain lines or one JSON object a line (default: $HEMHUB_LOG_FORMAT, else plain)",
    )
    parser = argparse.ArgumentParser(prog="hemhub", description=__doc__, parents=[logs])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole stack with simulated homes", parents=[logs])
    p.add_argument("--homes", type=int, default=5, help="simulated homes (default 5)")
    p.add_argument("--data-dir", help="where the demo keeps its data (default ./.hemhub)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("token", help="print a bearer token signed with the demo key")
    p.add_argument(
        "--role", default="nurse", choices=["nurse", "hmc", "admin", "integration", "auditor"]
    )
    p.add_argument("--tenant", default="demo")
    p.add_argument("--sub", default="nurse@demo")
    p.add_argument("--hours", type=float, default=12.0, help="validity (default 12 h)")
    p.add_argument(
        "--care-unit",
        action="append",
        dest="care_units",
        metavar="ID",
        help="limit the token to the residents of this care unit (repeatable; `care_units` claim)",
    )
    p.add_argument("--data-dir", help="data directory holding the demo key (default ./.hemhub)")
    p.set_defaults(func=_cmd_token)

    p = sub.add_parser("decode", help="decode a GATT characteristic value (hex) to JSON")
    p.add_argument("characteristic", nargs="?", help="16-bit or full UUID, e.g. 2A35")
    p.add_argument("hex", nargs="?", help="the value as hex bytes")
    p.add_argument("--list", action="store_true", help="list the supported characteristics")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("migrate", help="apply database migrations (HEMHUB_DATABASE_URL)")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("ingest", help="run the ingest worker(s)", parents=[logs])
    p.add_argument("--workers", type=int, default=1, help="processes on a shared subscription")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (HEMHUB_INGEST_METRICS_PORT)",
    )
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("alerts", help="alert engine tools")
    p.add_argument(
        "action",
        choices=["evaluate", "rules"],
        help="evaluate: run the time-driven rules now (missing data, trends, technical);"
        " rules: the default rules with their sources",
    )
    p.add_argument("--format", choices=["json", "table"], default="table", help="for rules")
    p.set_defaults(func=_cmd_alerts)

    p = sub.add_parser("api", help="run the HTTP API", parents=[logs])
    p.set_defaults(func=_cmd_api)

    p = sub.add_parser(
        "hub-link",
        help="publish hubs' configuration and commands queued in the database",
        parents=[logs],
    )
    p.set_defaults(func=_cmd_hub_link)

    fleet_cli.add_parser(sub)
    ota_cli.add_parser(sub)
    audit_cli.add_parser(sub)

    p = sub.add_parser("gateway", help="run the hub gateway", parents=[logs])
    p.add_argument("--config", required=True, help="hub configuration file (.toml or .json)")
    p.add_argument(
        "--simulate",
        metavar="SCENARIO",
        help="run against a simulated home described by SCENARIO (.toml or .json)",
    )
    p.set_defaults(func=_cmd_gateway)

    p = sub.add_parser(
        "broker-passwd",
        help="write the hubs' Mosquitto password file from the live hub credentials",
    )
    p.add_argument(
        "--output",
        required=True,
        help="the password file (e.g. /etc/mosquitto/hemhub-hubs.passwd), or - for stdout;"
        " then reload the broker",
    )
    p.set_defaults(func=_cmd_broker_passwd)

    p = sub.add_parser("schema", help="print the wire contract's JSON Schema")
    p.set_defaults(func=_cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, log_format=getattr(args, "log_format", None))
    try:
        result: int = args.func(args)
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        # A HEMHUB_* variable with a value it cannot take: say which, without a traceback.
        for err in exc.errors(include_url=False):
            name = "HEMHUB_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"hemhub: {name}={err.get('input')!r}: {err['msg']}", file=sys.stderr)
        return EXIT_USAGE
    return result


if __name__ == "__main__":
    sys.exit(main())
