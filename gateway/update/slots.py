"""The hub's A/B slots on disk: install a bundle into the spare slot's virtual
environment, switch the `current` link atomically, confirm, revert, roll back.

Layout under the slots root (/opt/hemhub on the image):

    state.json         the SlotState (gateway/update/slot_state.py), replaced atomically
    a/ b/              one slot each: bundle/ (the unpacked bundle), venv/, version
    current -> a       the slot the service runs (ExecStart=.../current/venv/bin/hemhub)
    boot/              a standard-library-only copy of this module, the boot check

state.json is the truth and `current` follows it: every step writes the state first and
then the link, and the boot check (`ExecStartPre`) points the link at the state's active
slot again, so a hub killed between the two ends on the state's slot.

Standard library only (plus gateway.failpoints and edge_image.bundle_format, also
standard library only): the boot
check runs with the system's python3 from `boot/`, not from a slot that may be broken.
Run as `python3 -m gateway.update.slots COMMAND --root ROOT`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from edge_image.bundle_format import MANIFEST, Manifest, parse_manifest
from edge_image.bundle_format import BundleError as ManifestError
from gateway.failpoints import failpoint
from gateway.update import slot_state
from gateway.update.slot_state import (
    DEFAULT_CONFIRM_TIMEOUT_S,
    DEFAULT_MAX_BOOTS,
    BootDecision,
    Revert,
    SlotError,
    SlotState,
)

STATE_FILE = "state.json"
CURRENT = "current"
BOOT_DIR = "boot"


class BundleError(SlotError):
    """A bundle this installer cannot use (reason: bad_bundle or install_failed)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_state(root: Path) -> SlotState:
    path = root / STATE_FILE
    if not path.exists():
        return SlotState()
    return SlotState.from_json(json.loads(path.read_text()))


def _save_state(root: Path, state: SlotState) -> None:
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".state-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(state.to_json(), f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / STATE_FILE)
    _fsync_dir(root)


def _point_current(root: Path, slot: str | None) -> None:
    """Make `current` name `slot` with one rename (never a moment without the link)."""
    link = root / CURRENT
    if slot is None or (link.is_symlink() and os.readlink(link) == slot):
        return
    tmp = root / f".{CURRENT}.new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(slot)
    os.replace(tmp, link)
    _fsync_dir(root)


def _commit(root: Path, state: SlotState) -> SlotState:
    _save_state(root, state)
    _point_current(root, state.active)
    return state


def slot_python(root: Path, slot: str) -> Path:
    return root / slot / "venv" / "bin" / "python"


def read_manifest(bundle_dir: Path) -> Manifest:
    """The unpacked bundle's manifest (edge_image/bundle_format.py, the one parser of
    it), and the wheels it lists present."""
    try:
        manifest = parse_manifest((bundle_dir / MANIFEST).read_bytes())
    except OSError as exc:
        raise BundleError("bad_bundle", f"no readable {MANIFEST}: {exc}") from exc
    except ManifestError as exc:
        raise BundleError("bad_bundle", str(exc)) from exc
    if not manifest.wheels:
        raise BundleError("bad_bundle", "manifest lists no wheels")
    for name in manifest.wheels:
        if not (bundle_dir / "wheels" / name).is_file():
            raise BundleError("bad_bundle", f"wheel {name!r} is not in the bundle")
    return manifest


def _run(step: str, command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BundleError("install_failed", f"{step} failed: {' / '.join(tail)}")


def base_python() -> str:
    """The interpreter under the running one (a slot's virtual environment runs on the
    system's python3): it makes the slots' environments and its pip installs them."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(Path(sys.base_prefix) / "bin" / version)


def install_bundle(bundle: Path, slots_root: Path, *, python: str | None = None) -> SlotState:
    """Unpack a (verified) bundle into the spare slot and install its wheels into that
    slot's new virtual environment, offline (`pip --no-index --find-links`). The active
    slot is untouched; `switch` makes the new one active.

    The environment gets no pip of its own (`venv --without-pip`): `python`'s pip (by
    default the system's, python3-pip on the image) installs into it with `--python`.
    A slot then holds the bundle's wheels and nothing else, and an install skips
    ensurepip, which writes and byte-compiles pip and setuptools into every slot (most
    of an install's time)."""
    root = slots_root
    installer = python or base_python()
    state = load_state(root)
    state = slot_state.begin_install(state)
    slot = state.installing
    assert slot is not None
    _commit(root, state)
    failpoint("slots.install.begun")
    slot_dir = root / slot
    try:
        shutil.rmtree(slot_dir, ignore_errors=True)
        (slot_dir / "bundle").mkdir(parents=True)
        try:
            with tarfile.open(bundle) as tar:
                tar.extractall(slot_dir / "bundle", filter="data")
        except (OSError, tarfile.TarError) as exc:
            raise BundleError("bad_bundle", f"cannot unpack {bundle.name}: {exc}") from exc
        manifest = read_manifest(slot_dir / "bundle")
        wheels = slot_dir / "bundle" / "wheels"
        _run("venv", [installer, "-m", "venv", "--without-pip", str(slot_dir / "venv")])
        failpoint("slots.install.venv")
        _run(
            "pip install",
            [
                installer,
                "-m",
                "pip",
                "--python",
                str(slot_python(root, slot)),
                "install",
                "--quiet",
                "--no-index",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--find-links",
                str(wheels),
                *(str(wheels / name) for name in manifest.wheels),
            ],
        )
        failpoint("slots.install.pip")
    except SlotError as exc:
        _commit(root, slot_state.install_failed(load_state(root), exc.reason))
        raise
    version = manifest.version
    (slot_dir / "version").write_text(version + "\n")
    return _commit(root, slot_state.installed(load_state(root), version))


def switch(
    slots_root: Path,
    *,
    now: float | None = None,
    confirm_timeout_s: float = DEFAULT_CONFIRM_TIMEOUT_S,
    max_boots: int = DEFAULT_MAX_BOOTS,
) -> SlotState:
    """Make the installed slot active, on trial; the caller restarts the service."""
    state = slot_state.switch(
        load_state(slots_root),
        time.time() if now is None else now,
        confirm_timeout_s,
        max_boots,
    )
    _save_state(slots_root, state)
    failpoint("slots.switch.saved")
    _point_current(slots_root, state.active)
    return state


def confirm(slots_root: Path) -> SlotState:
    """The running slot confirms itself (the gateway, once it is healthy)."""
    state = load_state(slots_root)
    failpoint("slots.confirm.before")
    return _commit(slots_root, slot_state.confirm(state))


def check_boot(slots_root: Path, *, now: float | None = None) -> tuple[SlotState, BootDecision]:
    """`ExecStartPre`: count this start, revert a slot on trial that failed, and point
    `current` at the slot to run."""
    state, decision = slot_state.boot(load_state(slots_root), time.time() if now is None else now)
    return _commit(slots_root, state), decision


def check_deadline(slots_root: Path, *, now: float | None = None) -> SlotState | None:
    """The running gateway's check: revert when the slot on trial ran out of time
    (returns the reverted state; the caller then stops so the service restarts)."""
    state = load_state(slots_root)
    if not slot_state.deadline_passed(state, time.time() if now is None else now):
        return None
    return _commit(slots_root, slot_state.revert(state, "not_confirmed"))


def rollback(slots_root: Path) -> SlotState:
    """HMC's manual rollback to the kept previous slot; the caller restarts the service."""
    return _commit(slots_root, slot_state.rollback(load_state(slots_root)))


BOOT_SCRIPT = """#!/usr/bin/python3 -I
# The slots' boot check (ExecStartPre), run by the system's python3: written by
# gateway/update/slots.py install_boot_helper; a copy, not run from any slot.
import os, runpy, sys
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
runpy.run_module("gateway.update.slots", run_name="__main__", alter_sys=True)
"""


def install_boot_helper(slots_root: Path) -> Path:
    """Copy this module (and the standard-library modules it imports) to `boot/`, with
    the script `boot/hemhub-slots` the unit's ExecStartPre runs (same arguments as
    `hemhub slots`). Returns the script."""
    source = Path(__file__).resolve().parent.parent  # the gateway package
    target = slots_root / BOOT_DIR
    tmp = slots_root / f".{BOOT_DIR}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "gateway" / "update").mkdir(parents=True)
    for name in ("__init__.py", "failpoints.py"):
        shutil.copy2(source / name, tmp / "gateway" / name)
    (tmp / "edge_image").mkdir()
    for name in ("__init__.py", "bundle_format.py"):  # the manifest parser slots imports
        shutil.copy2(source.parent / "edge_image" / name, tmp / "edge_image" / name)
    for name in ("__init__.py", "slot_state.py", "slots.py"):
        shutil.copy2(source / "update" / name, tmp / "gateway" / "update" / name)
    script = tmp / "hemhub-slots"
    script.write_text(BOOT_SCRIPT)
    script.chmod(0o755)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target / script.name


def describe(state: SlotState) -> dict[str, object]:
    """What `status` prints: the slot state plus its progress for the hub status."""
    progress, reason = state.outcome
    return {
        **state.to_json(),
        "version": state.versions.get(state.active) if state.active else None,
        "progress": progress,
        "reason": reason,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The slot commands (also `hemhub ota slots ...`)."""
    parser.add_argument("--root", type=Path, default=Path("/opt/hemhub"), help="slots root")
    sub = parser.add_subparsers(dest="slots_command", required=True)
    sub.add_parser("status", help="print the slot state as JSON")
    p = sub.add_parser("install", help="install a bundle into the spare slot")
    p.add_argument("bundle", type=Path)
    p.add_argument("--switch", action="store_true", help="and switch to it")
    p = sub.add_parser("switch", help="make the installed spare slot active, on trial")
    p.add_argument("--confirm-timeout", type=float, default=DEFAULT_CONFIRM_TIMEOUT_S)
    p.add_argument("--max-boots", type=int, default=DEFAULT_MAX_BOOTS)
    sub.add_parser("confirm", help="confirm the slot on trial")
    sub.add_parser("check-boot", help="ExecStartPre: count a boot, revert a failed slot")
    sub.add_parser("rollback", help="go back to the previous slot (then restart the service)")
    sub.add_parser("install-boot-helper", help="copy the boot check to ROOT/boot")


def run(args: argparse.Namespace) -> int:
    root: Path = args.root
    command: str = args.slots_command
    try:
        if command == "install":
            state = install_bundle(args.bundle, root)
            if args.switch:
                state = switch(root)
        elif command == "switch":
            state = switch(root, confirm_timeout_s=args.confirm_timeout, max_boots=args.max_boots)
        elif command == "confirm":
            state = confirm(root)
        elif command == "check-boot":
            state, decision = check_boot(root)
            if isinstance(decision, Revert):
                print(
                    f"slot on trial failed ({decision.reason}): back to slot {state.active}",
                    file=sys.stderr,
                )
        elif command == "rollback":
            state = rollback(root)
        elif command == "install-boot-helper":
            print(install_boot_helper(root))
            return 0
        else:
            state = load_state(root)
    except SlotError as exc:
        print(f"hemhub ota slots {command}: {exc} ({exc.reason})", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"hemhub ota slots {command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(describe(state), sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemhub ota slots", description="The hub's A/B slots.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
