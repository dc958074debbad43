"""`hemhub audit list|export|verify`: the access log, for auditors and operators.

`list` and `export` are clients of the API (the fleet command-line framework,
hemhub.fleet_cli: `HEMHUB_API_URL`, the token from `--token-file` or `HEMHUB_API_TOKEN`,
a token of role auditor or admin); they see the caller's principal's rows only and are
themselves audited. `verify` runs directly against the database (`HEMHUB_DATABASE_URL`
or `--database-url`, as the owner or any role that may read audit_log: the chain spans
every principal, so it is the operator's check, not a principal's) and recomputes the
hash chain. Exit codes of `verify`: 0 intact, 1 the database cannot be read, 2 usage, 10 broken
(the first broken link on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys

import psycopg

from hemhub.fleet_cli import Arg, FleetCommand, add_commands

EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 10

_FILTERS = (
    Arg("patient", "the resident's id"),
    Arg("subject", "the user (the token's subject)"),
    Arg("action", "an action, e.g. readings.list (repeatable)", multiple=True),
    Arg("from", "at or after this instant (ISO 8601 with an offset)"),
    Arg("to", "before this instant"),
)

COMMANDS: list[FleetCommand] = [
    FleetCommand(
        "audit",
        "list",
        "GET",
        "/api/v1/audit",
        "who read or changed which resident's data: one page, oldest first (JSON)",
        query_args=(
            *_FILTERS,
            Arg("limit", "entries a page (1-1000, default 100)", type=int),
            Arg("after", "the next_after of the page before", type=int),
        ),
    ),
    FleetCommand(
        "audit",
        "export",
        "GET",
        "/api/v1/audit/export",
        "every entry the filters select, as CSV",
        query_args=_FILTERS,
    ),
]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    by_group = add_commands(sub, COMMANDS, prog="hemhub")
    verify = by_group["audit"].add_parser(
        "verify", help="recompute the access log's hash chain (on the database)"
    )
    verify.description = (
        "Recompute the hash chain of audit_log and report the first broken link."
        " Exit 0 intact, 1 unreadable, 10 broken."
    )
    verify.add_argument("--database-url", help="default: HEMHUB_DATABASE_URL")
    verify.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from hemhub.settings import Settings
    from ingest.audit_chain import verify_database

    url = args.database_url or Settings().database_url
    if not url:
        print("hemhub audit verify: set HEMHUB_DATABASE_URL or --database-url", file=sys.stderr)
        return EXIT_USAGE
    try:
        verdict = verify_database(url)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"hemhub audit verify: cannot read the access log: {reason}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(json.dumps(verdict.as_dict(), indent=2))
    if not verdict.ok:
        link = verdict.as_dict()["first_broken_link"]
        print(
            f"hemhub audit verify: broken at id {link['id']} (chain_seq {link['chain_seq']}):"
            f" {link['problem']}",
            file=sys.stderr,
        )
        return EXIT_BROKEN
    return EXIT_OK
