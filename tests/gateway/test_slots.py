"""The hub's A/B slots in temporary directories: install, switch, confirm, revert on no
confirmation and after a crash loop, manual rollback, and a hub killed (SIGKILL) at each
step ending on a working slot that reports its version."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gateway.update import slots
from gateway.update.slot_state import Revert, SlotError, Stay

REPO = Path(__file__).resolve().parents[2]


def _wheel(out: Path, version: str) -> Path:
    """A minimal stand-in distribution: one module that knows its version."""
    name = f"hemhub_standin-{version}-py3-none-any.whl"
    info = f"hemhub_standin-{version}.dist-info"
    files = {
        "hemhub_standin/__init__.py": f'VERSION = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: hemhub-standin\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(out / name, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{info}/RECORD", record)
    return out / name


def _bundle(tmp: Path, version: str, *, broken: bool = False, corrupt: bool = False) -> Path:
    """`broken`: the manifest lists a wheel the bundle lacks; `corrupt`: the wheel is
    there but is no zip (pip refuses it)."""
    src = tmp / f"src-{version}"
    (src / "wheels").mkdir(parents=True)
    wheel = _wheel(src / "wheels", version)
    if corrupt:
        wheel.write_bytes(b"not a zip archive")
    manifest = {
        "format": 1,
        "version": version,
        "python": "3.11",
        "created_at": "2026-12-06T00:00:00Z",
        "wheels": ["missing.whl" if broken else wheel.name],
        "units": [],
        "config_migrations": [],
    }
    (src / "manifest.json").write_text(json.dumps(manifest))
    out = tmp / f"hemhub-hub-{version}.tar"
    with tarfile.open(out, "w") as tar:
        for path in ("manifest.json", "wheels"):
            tar.add(src / path, arcname=path)
    return out


def _reports(root: Path) -> str:
    """The version the active slot's environment runs (it must import)."""
    state = slots.load_state(root)
    assert state.active is not None and os.readlink(root / "current") == state.active
    done = subprocess.run(
        [
            str(root / "current" / "venv" / "bin" / "python"),
            "-c",
            "import hemhub_standin; print(hemhub_standin.VERSION)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Slot a runs 1.0 (confirmed), slot b holds 2.0 installed, not switched; and a 3.0
    bundle. Installed once (virtual environments take seconds), copied per test."""
    tmp = tmp_path_factory.mktemp("slots")
    root = tmp / "root"
    slots.install_bundle(_bundle(tmp, "1.0"), root)
    first = slots.switch(root)
    assert first.active == "a" and first.confirmed and not first.trying
    slots.install_bundle(_bundle(tmp, "2.0"), root)
    slots.install_boot_helper(root)
    return root, _bundle(tmp, "3.0")


@pytest.fixture
def root(prepared: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "opt-hemhub"
    shutil.copytree(prepared[0], copy, symlinks=True)
    return copy


def test_install_keeps_the_active_slot_and_switch_puts_the_new_one_on_trial(root: Path) -> None:
    state = slots.load_state(root)
    assert state.active == "a" and state.versions == {"a": "1.0", "b": "2.0"}
    assert _reports(root) == "1.0"
    state = slots.switch(root, now=1000.0, confirm_timeout_s=60)
    assert (state.active, state.previous, state.trying) == ("b", "a", True)
    assert state.outcome == ("confirming", None)
    assert _reports(root) == "2.0"


def test_confirm_keeps_the_new_slot_and_the_previous_for_rollback(root: Path) -> None:
    slots.switch(root, now=1000.0, confirm_timeout_s=60)
    assert slots.check_boot(root, now=1001.0)[1] == Stay()
    state = slots.confirm(root)
    assert state.confirmed and not state.trying and state.outcome == ("confirmed", None)
    for boot in range(10):  # a confirmed slot is never reverted
        assert slots.check_boot(root, now=5000.0 + boot)[1] == Stay()
    assert _reports(root) == "2.0" and slots.load_state(root).previous == "a"


def test_no_confirmation_in_time_reverts(root: Path) -> None:
    slots.switch(root, now=1000.0, confirm_timeout_s=60)
    assert slots.check_boot(root, now=1001.0)[1] == Stay()
    assert slots.check_deadline(root, now=1030.0) is None
    reverted = slots.check_deadline(root, now=1061.0)  # the running gateway's check
    assert reverted is not None and reverted.outcome == ("reverted", "not_confirmed")
    assert _reports(root) == "1.0"
    slots.switch(root, now=2000.0, confirm_timeout_s=60)  # or the next start finds it
    state, decision = slots.check_boot(root, now=2061.0)
    assert decision == Revert("not_confirmed") and state.active == "a" and state.previous is None
    assert _reports(root) == "1.0"


def test_a_crash_loop_reverts_after_max_boots(root: Path) -> None:
    slots.switch(root, now=1000.0, confirm_timeout_s=600, max_boots=3)
    for n in range(3):
        assert slots.check_boot(root, now=1001.0 + n)[1] == Stay()
        assert _reports(root) == "2.0"
    state, decision = slots.check_boot(root, now=1010.0)
    assert decision == Revert("crash_loop") and state.outcome == ("reverted", "crash_loop")
    assert _reports(root) == "1.0"


def test_manual_rollback_and_back(root: Path) -> None:
    with pytest.raises(SlotError):  # nothing confirmed before slot a
        slots.rollback(root)
    slots.switch(root, now=1000.0)
    slots.confirm(root)
    state = slots.rollback(root)
    assert (state.active, state.previous) == ("a", "b")
    assert state.outcome == ("reverted", "rolled_back") and _reports(root) == "1.0"
    assert slots.rollback(root).active == "b" and _reports(root) == "2.0"


def test_a_new_install_while_on_trial_is_refused_and_a_bad_bundle_fails(
    root: Path, tmp_path: Path
) -> None:
    slots.switch(root, now=1000.0)
    with pytest.raises(SlotError) as busy:
        slots.install_bundle(_bundle(tmp_path, "9.0"), root)
    assert busy.value.reason == "busy"
    slots.confirm(root)
    with pytest.raises(SlotError) as bad:
        slots.install_bundle(_bundle(tmp_path, "9.1", broken=True), root)
    assert bad.value.reason == "bad_bundle"
    state = slots.load_state(root)
    assert state.outcome == ("failed", "bad_bundle") and state.active == "b"
    assert _reports(root) == "2.0"


def test_a_wheel_pip_cannot_install_fails_the_install_and_keeps_the_active_slot(
    root: Path, tmp_path: Path
) -> None:
    with pytest.raises(SlotError) as failed:
        slots.install_bundle(_bundle(tmp_path, "9.2", corrupt=True), root)
    assert failed.value.reason == "install_failed"
    assert str(failed.value).startswith("pip install failed: ")
    state = slots.load_state(root)
    assert state.outcome == ("failed", "install_failed") and state.installing is None
    assert state.active == "a" and _reports(root) == "1.0"


def _cli(root: Path, *args: str, failpoint: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEMHUB_FAILPOINTS": failpoint}
    return subprocess.run(
        [sys.executable, "-m", "gateway.update.slots", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )


def _boot(root: Path) -> dict[str, object]:
    """The unit's ExecStartPre: the boot helper copy, run by the system's python3 alone."""
    done = subprocess.run(
        [str(root / "boot" / "hemhub-slots"), "--root", str(root), "check-boot"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    ("step", "args", "point", "expect"),
    [
        ("install", ["install", "{bundle}"], "slots.install.begun", "2.0"),
        ("install", ["install", "{bundle}"], "slots.install.venv", "2.0"),
        ("install", ["install", "{bundle}"], "slots.install.pip", "2.0"),
        ("switch", ["switch"], "slots.switch.saved", "2.0"),
        ("confirm", ["confirm"], "slots.confirm.before", "2.0"),
    ],
)
def test_killed_at_each_step_ends_on_a_working_slot(
    root: Path, prepared: tuple[Path, Path], step: str, args: list[str], point: str, expect: str
) -> None:
    if step == "install":  # slot b (2.0) confirmed first, so the install writes slot a
        slots.switch(root)
        slots.confirm(root)
    elif step == "confirm":
        slots.switch(root)
    done = _cli(root, *(a.format(bundle=prepared[1]) for a in args), failpoint=point)
    assert done.returncode == -signal.SIGKILL, done.stderr
    status = _boot(root)
    assert status["active"] == "b" and status["version"] == expect
    assert _reports(root) == expect
    if step == "install":
        assert status["progress"] == "failed" and status["reason"] == "interrupted"
        assert status["installing"] is None and status["previous"] is None
        again = _cli(root, "install", str(prepared[1]), "--switch")  # a retry completes
        assert again.returncode == 0, again.stderr
        assert _reports(root) == "3.0"
