"""`hemhub ota ...`: over-the-air updates for the assistive-device center.

Groups: `bundle` builds the hub software bundle, `repo` keeps the TUF repository of
releases (both local tools: they read and write files, never the API). Each group is
one `register_*` function in `GROUPS`; more groups (campaigns through the API) add
theirs there. Exit codes: 0 done, 2 usage or a refused operation (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_image.bundle import PYTHON
from gateway.update import slots
from hemhub.ota_cli_campaigns import register_campaigns

EXIT_OK, EXIT_USAGE = 0, 2
_Sub = argparse._SubParsersAction


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _fail(message: str) -> int:
    print(f"hemhub ota: {message}", file=sys.stderr)
    return EXIT_USAGE


def _print(doc: Any) -> None:
    print(json.dumps(doc, indent=2, default=str))


# -- bundle ---------------------------------------------------------------------------


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _created_at(value: str | None) -> datetime:
    """--created-at, else SOURCE_DATE_EPOCH (reproducible builds), else now."""
    if value:
        at = datetime.fromisoformat(value)
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), UTC)
    return datetime.now(UTC)


def _build_wheels(
    source: Path, constraints: Path | None, platforms: list[str] | None, out: Path
) -> list[Path]:
    """The source tree's wheel and its dependencies' wheels (pinned by `constraints`).

    Without `platforms`: `pip wheel` for this machine. With them (the hub's, e.g.
    manylinux_2_36_aarch64): the hemhub wheel, then `pip download` of binary wheels of
    its dependencies for those platforms and the bundle's Python.
    """
    pip = [sys.executable, "-m", "pip"]
    pins = ["--constraint", str(constraints)] if constraints is not None else []
    if not platforms:
        subprocess.run([*pip, "wheel", "--quiet", "--wheel-dir", str(out), *pins, str(source)],
                       check=True)  # fmt: skip
        return sorted(out.glob("*.whl"))
    subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)], check=True
    )
    (own,) = out.glob("*.whl")
    targets = [arg for platform in platforms for arg in ("--platform", platform)]
    subprocess.run(
        [*pip, "download", "--quiet", "--only-binary=:all:", "--implementation", "cp",
         "--python-version", PYTHON, *targets, *pins, "--dest", str(out), str(own)],
        check=True,
    )  # fmt: skip
    return sorted(out.glob("*.whl"))


def _files_in(directory: Path | None, default: Path | None, pattern: str) -> list[Path]:
    chosen = directory or default
    if chosen is None or not chosen.is_dir():
        if directory is not None:
            raise ValueError(f"{directory}: not a directory")
        return []
    return sorted(p for p in chosen.glob(pattern) if p.is_file())


def _cmd_bundle_build(args: argparse.Namespace) -> int:
    from edge_image.bundle import BundleError, build_bundle

    root = _project_root()
    try:
        created_at = _created_at(args.created_at)
        units = _files_in(args.units_dir, root / "edge_image" / "systemd", "*")
        if not units:
            raise ValueError(
                "no systemd units: run from the source tree (edge_image/systemd) or give"
                " --units-dir"
            )
        migrations = _files_in(
            args.config_migrations_dir, root / "edge_image" / "config_migrations", "*.py"
        )
        with tempfile.TemporaryDirectory(prefix="hemhub-wheels-") as tmp:
            if args.wheel_dir is not None:
                wheels = _files_in(args.wheel_dir, None, "*.whl")
            else:
                source = args.source or root
                wheels = _build_wheels(source, args.constraints, args.platform, Path(tmp))
            path = build_bundle(
                args.version,
                args.out,
                wheels=wheels,
                units=units,
                config_migrations=migrations,
                created_at=created_at,
            )
    except (BundleError, ValueError) as exc:
        return _fail(str(exc))
    except subprocess.CalledProcessError as exc:
        return _fail(f"building the wheels failed (exit {exc.returncode})")
    print(path)
    return EXIT_OK


def _cmd_bundle_show(args: argparse.Namespace) -> int:
    from edge_image.bundle import BundleError, read_manifest

    try:
        manifest = read_manifest(args.bundle)
    except BundleError as exc:
        return _fail(str(exc))
    _print(manifest.to_json())
    return EXIT_OK


def register_bundle(groups: _Sub) -> None:
    bundle = groups.add_parser("bundle", help="build and read hub software bundles")
    bundle.set_defaults(func=lambda args: _usage(bundle))
    verbs = bundle.add_subparsers(metavar="VERB")

    p = verbs.add_parser(
        "build",
        help="build hemhub-hub-VERSION.tar (wheels, systemd units, configuration migrations)",
    )
    p.add_argument("--version", required=True, help="the release's version, e.g. 0.2.0")
    p.add_argument("--out", required=True, type=Path, help="the directory to write it to")
    p.add_argument(
        "--wheel-dir",
        type=Path,
        help="take every .whl of this directory (default: `pip wheel` the source tree)",
    )
    p.add_argument("--source", type=Path, help="the source tree to build (default: this one)")
    p.add_argument("--constraints", type=Path, help="pip constraints file pinning the dependencies")
    p.add_argument(
        "--platform",
        action="append",
        help="the hub's wheel platform, e.g. manylinux_2_36_aarch64 (repeatable; default:"
        " this machine's)",
    )
    p.add_argument("--units-dir", type=Path, help="systemd units (default edge_image/systemd)")
    p.add_argument(
        "--config-migrations-dir",
        type=Path,
        help="configuration migrations *.py (default edge_image/config_migrations)",
    )
    p.add_argument(
        "--created-at",
        help="ISO time of the build (default: SOURCE_DATE_EPOCH, else now); the same"
        " inputs and time give the same bytes",
    )
    p.set_defaults(func=_cmd_bundle_build)

    p = verbs.add_parser("show", help="check a bundle and print its manifest")
    p.add_argument("bundle", type=Path)
    p.set_defaults(func=_cmd_bundle_show)


# -- repo -----------------------------------------------------------------------------


def _expiries(values: list[str] | None) -> Any:
    from edge_image.repository import ROLES, Expiries

    days: dict[str, timedelta] = {}
    for value in values or []:
        role, _, number = value.partition("=")
        if role not in ROLES or not number:
            raise ValueError(f"--expires {value!r}: ROLE=DAYS with ROLE one of {ROLES}")
        days[role] = timedelta(days=float(number))
    return Expiries(**days)


def _repo_command(
    action: Callable[[argparse.Namespace, Any], Any],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from edge_image.bundle import BundleError
        from edge_image.repository import Repository, RepositoryToolError

        try:
            repo = Repository(args.repo, _expiries(getattr(args, "expires", None)))
            result = action(args, repo)
        except (RepositoryToolError, BundleError, ValueError, OSError) as exc:
            return _fail(str(exc))
        _print(result)
        return EXIT_OK

    return run


def _repo_init(args: argparse.Namespace, repo: Any) -> Any:
    from edge_image.repository import Repository

    created = Repository.init(
        args.repo,
        root_key_dirs=args.root_key_dir,
        online_key_dir=args.online_key_dir,
        root_threshold=args.root_threshold,
        expiries=repo.expiries,
    )
    return created.info()


def _repo_add(args: argparse.Namespace, repo: Any) -> Any:
    from edge_image.bundle import read_manifest

    custom: dict[str, Any] = json.loads(args.custom) if args.custom else {}
    if not isinstance(custom, dict):
        raise ValueError("--custom: a JSON object")
    if args.file.name.startswith("hemhub-hub-") and args.file.suffix == ".tar":
        manifest = read_manifest(args.file)  # refuse a broken bundle before signing it
        custom = {"kind": "hub-software", "version": manifest.version, **custom}
    if args.kind:
        custom["kind"] = args.kind
    if args.target_version:
        custom["version"] = args.target_version
    info = repo.add_target(args.file, [args.online_key_dir], name=args.name, custom=custom)
    return {"target": info.path, "length": info.length, "hashes": info.hashes, "custom": custom}


def _repo_timestamp(args: argparse.Namespace, repo: Any) -> Any:
    md = repo.refresh_timestamp([args.online_key_dir])
    return {"timestamp": md.signed.version, "expires": md.signed.expires.isoformat()}


def _repo_resign(args: argparse.Namespace, repo: Any) -> Any:
    repo.resign([args.online_key_dir])
    return repo.info()["roles"]


def _repo_rotate(args: argparse.Namespace, repo: Any) -> Any:
    key = repo.rotate_key(
        args.role,
        root_key_dirs=args.root_key_dir,
        new_key_dir=args.new_key_dir,
        online_key_dir=args.online_key_dir,
        replace_keyid=args.replace,
    )
    return {"role": args.role, "new_keyid": key.keyid, "roles": repo.info()["roles"]}


def _repo_renew_root(args: argparse.Namespace, repo: Any) -> Any:
    md = repo.renew_root(args.root_key_dir)
    return {"root": md.signed.version, "expires": md.signed.expires.isoformat()}


def _repo_show(args: argparse.Namespace, repo: Any) -> Any:
    return repo.info()


def register_repo(groups: _Sub) -> None:
    repo = groups.add_parser("repo", help="the TUF repository of releases (local files)")
    repo.set_defaults(func=lambda args: _usage(repo))
    verbs = repo.add_subparsers(metavar="VERB")

    def verb(name: str, help: str, action: Callable[[argparse.Namespace, Any], Any]) -> Any:
        p = verbs.add_parser(name, help=help)
        p.add_argument("--repo", required=True, type=Path, help="the repository directory")
        p.set_defaults(func=_repo_command(action))
        return p

    def online(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--online-key-dir",
            required=True,
            type=Path,
            help="the targets/snapshot/timestamp keys",
        )

    def root_keys(p: argparse.ArgumentParser, help: str) -> None:
        p.add_argument("--root-key-dir", action="append", required=True, type=Path, help=help)

    p = verb("init", "create the repository and its keys (the key ceremony)", _repo_init)
    root_keys(p, "a custodian's (offline) directory for one root key; repeat for more")
    online(p)
    p.add_argument("--root-threshold", type=int, default=1, help="root keys needed (default 1)")
    p.add_argument(
        "--expires",
        action="append",
        metavar="ROLE=DAYS",
        help="validity (default root=365 targets=90 snapshot=90 timestamp=1)",
    )

    p = verb("add", "publish a file (a bundle, a device image) as a signed target", _repo_add)
    p.add_argument("file", type=Path)
    online(p)
    p.add_argument("--name", help="the target's name (default: the file's name)")
    p.add_argument("--kind", help="custom kind (hub-software for bundles, device-firmware)")
    p.add_argument("--target-version", help="custom version (bundles: from the manifest)")
    p.add_argument("--custom", help="more custom fields as a JSON object")
    p.add_argument("--expires", action="append", metavar="ROLE=DAYS", help="validity")

    p = verb("timestamp", "sign a new timestamp (run at least daily)", _repo_timestamp)
    online(p)
    p.add_argument("--expires", action="append", metavar="ROLE=DAYS", help="validity")

    p = verb("resign", "new targets, snapshot and timestamp with fresh expiries", _repo_resign)
    online(p)
    p.add_argument("--expires", action="append", metavar="ROLE=DAYS", help="validity")

    p = verb("rotate", "replace a role's key; root signs the change", _repo_rotate)
    p.add_argument("--role", required=True, choices=["root", "targets", "snapshot", "timestamp"])
    root_keys(p, "a directory holding root keys (repeat until the threshold is met)")
    p.add_argument("--new-key-dir", required=True, type=Path, help="where the new key goes")
    online(p)
    p.add_argument("--replace", metavar="KEYID", help="root: the root key to replace")

    p = verb("renew-root", "a new root version with a fresh expiry (yearly)", _repo_renew_root)
    root_keys(p, "a directory holding root keys (repeat until the threshold is met)")
    p.add_argument("--expires", action="append", metavar="ROLE=DAYS", help="validity")

    verb("show", "versions, expiries, keys and targets", _repo_show)


def register_slots(groups: _Sub) -> None:
    """`hemhub ota slots ...` on the hub: its A/B software slots (gateway/update/slots.py)."""
    p = groups.add_parser("slots", help="the hub's A/B software slots: status, rollback, ...")
    slots.add_arguments(p)
    p.set_defaults(func=slots.run)


#: `hemhub ota` groups: each adds its parser and verbs.
GROUPS: tuple[Callable[[_Sub], None], ...] = (
    register_bundle,
    register_repo,
    register_campaigns,
    register_slots,
)


def add_parser(sub: _Sub) -> None:
    """`hemhub ota`, with the groups of `GROUPS`."""
    ota = sub.add_parser("ota", help="over-the-air updates: bundles, the TUF repository")
    ota.set_defaults(func=lambda args: _usage(ota))
    groups = ota.add_subparsers(dest="ota_group", metavar="GROUP")
    for register in GROUPS:
        register(groups)
