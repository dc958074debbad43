"""`hemhub ota ...`: over-the-air updates for the assistive-device center.

Each group is one `register_*` function in `GROUPS`: `artifact`, `campaign` and `hub`
(rollouts through the API, hemhub/ota_cli_campaigns.py). The bundle and repository
tools add their groups here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from hemhub.ota_cli_campaigns import register_campaigns

_Sub = argparse._SubParsersAction

#: `hemhub ota` groups: each adds its parser and verbs.
GROUPS: tuple[Callable[[_Sub], None], ...] = (register_campaigns,)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def add_parser(sub: _Sub) -> None:
    """`hemhub ota`, with the groups of `GROUPS`."""
    ota = sub.add_parser("ota", help="over-the-air updates: artifacts and rollout campaigns")
    ota.set_defaults(func=lambda args: _usage(ota))
    groups = ota.add_subparsers(dest="ota_group", metavar="GROUP")
    for register in GROUPS:
        register(groups)
