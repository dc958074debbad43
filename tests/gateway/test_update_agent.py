"""The hub's real update agent (gateway/update/agent.py) in a real `hemhub gateway`
process: a TUF repository made with edge_image/repository.py behind a real HTTP server,
real bundles, real A/B slots in a temporary directory, the real broker. The test plays
systemd: it runs the boot check (the unit's ExecStartPre, the boot helper copy) before
each start and starts the gateway again after it exits.

- killed (SIGKILL) mid-download, the hub is untouched; started again it downloads,
  installs into slot b, switches and exits 75; restarted into b it confirms and reports
  2.0 confirmed;
- killed (a failpoint's SIGKILL) while installing, switching or confirming: the boot
  check leaves a working slot, and started again the hub completes the update;
- a metadata signature not the repository's, and a signed but older release: refused
  with the reason in the status, the slots untouched;
- a new slot that crash-loops, or that never confirms (it cannot reach the broker):
  the boot check, or the gateway at the slot's deadline, goes back to 1.0 and the hub
  reports the update reverted with the reason;
- the update settings' refusals, and a repository not answering yet (the download waits
  and is tried again).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import ValidationError
from securesystemslib.signer import CryptoSigner

from edge_image.repository import generate_key
from gateway.config import GatewayConfig, UpdateSettings
from gateway.update import slots
from gateway.update.agent import EXIT_RESTART, SlotUpdateAgent
from gateway.update.reconcile import Reconciler
from hemhub.contract import DesiredSoftware, HubConfig, UpdateProgress, topic_config, topic_status
from tests.factories import unique_hub_id
from tests.gateway.test_hub_update import StatusWatcher
from tests.gateway.test_provisioning import publish_retained
from tests.ota_helpers import SignedRepo, http_server, make_bundle, signed_repo

CAMPAIGN = "6c2d3e4f-5061-4b72-8c83-9d8e7f6a5b41"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Slots with 1.0 in slot a, confirmed, and the boot helper: made once (a virtual
    environment takes seconds), copied per test."""
    tmp = tmp_path_factory.mktemp("agent-slots")
    root = tmp / "opt-hemhub"
    slots.install_bundle(make_bundle(tmp, "1.0"), root)
    slots.switch(root)
    slots.install_boot_helper(root)
    return root


@dataclass
class Hub:
    hub_id: str
    config: Path
    scenario: Path
    data_dir: Path
    slots_root: Path
    log: Path

    def boot_check(self) -> dict[str, object]:
        """systemd's ExecStartPre: the boot helper, run by the system's python3 alone."""
        done = subprocess.run(
            [
                str(self.slots_root / "boot" / "hemhub-slots"),
                "--root",
                str(self.slots_root),
                "check-boot",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )
        status: dict[str, object] = json.loads(done.stdout)
        return status

    def start(self, failpoints: str = "") -> subprocess.Popen[bytes]:
        self.boot_check()
        env = {k: v for k, v in os.environ.items() if k != "HEMHUB_FAILPOINTS"}
        if failpoints:
            env["HEMHUB_FAILPOINTS"] = failpoints
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hemhub.cli",
                    "gateway",
                    "--config",
                    str(self.config),
                    "--simulate",
                    str(self.scenario),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def progress(self) -> UpdateProgress | None:
        try:
            return UpdateProgress.model_validate_json(
                (self.data_dir / "update-state.json").read_bytes()
            )
        except (FileNotFoundError, ValueError):
            return None

    def runs(self) -> str:
        """The version the `current` slot's environment imports."""
        done = subprocess.run(
            [
                str(self.slots_root / "current" / "venv" / "bin" / "python"),
                "-c",
                "import hemhub_standin; print(hemhub_standin.VERSION)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def hub(prepared: Path, tmp_path: Path, mqtt_url: str) -> Iterator[Hub]:
    hub_id = unique_hub_id("agent")
    slots_root = tmp_path / "opt-hemhub"
    shutil.copytree(prepared, slots_root, symlinks=True)
    scenario = tmp_path / "home.json"
    scenario.write_text(json.dumps({"devices": []}))
    yield Hub(
        hub_id,
        tmp_path / "hub.json",
        scenario,
        tmp_path / "data",
        slots_root,
        tmp_path / "gateway.log",
    )
    publish_retained(mqtt_url, topic_config(hub_id), b"")
    publish_retained(mqtt_url, topic_status(hub_id), b"")


def configure(hub: Hub, mqtt_url: str, repo_url: str, signed: SignedRepo, **update: object) -> None:
    """hub.toml's equivalent, with the update settings (the image's trust anchor)."""
    root = hub.config.parent / "update-root.json"
    root.write_bytes((signed.repo.metadata_dir / "root.json").read_bytes())
    hub.config.write_text(
        json.dumps(
            {
                "hub_id": hub.hub_id,
                "mqtt_url": mqtt_url,
                "data_dir": str(hub.data_dir),
                "status_interval_s": 0.5,
                "reconnect_max_s": 1,
                "min_disk_free_bytes": 0,
                "min_disk_free_percent": 0.0,
                "slots_root": str(hub.slots_root),
                "update": {"repository_url": repo_url, "trusted_root": str(root), **update},
            }
        )
    )


def desire(hub: Hub, mqtt_url: str, version: str, target: str) -> None:
    config = HubConfig(
        hub_id=hub.hub_id,
        version=1,
        issued_at=datetime.now(UTC),
        devices=[],
        software=DesiredSoftware(version=version, target=target, campaign_id=CAMPAIGN),
    )
    publish_retained(mqtt_url, topic_config(hub.hub_id), config.model_dump_json().encode())


def wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], hub: Hub) -> None:
    deadline = time.monotonic() + 90
    while not check():
        assert proc.poll() is None or check(), f"gateway exited {proc.returncode}: {hub.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {hub.tail()}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


@pytest.mark.timeout(240)
def test_killed_mid_download_then_updated_restarted_and_confirmed(
    hub: Hub, tmp_path: Path, mqtt_url: str
) -> None:
    signed = signed_repo(tmp_path / "release")
    target = signed.add_bundle("2.0", padding=600_000)  # 7 s at the slow server's pace
    slow = threading.Event()
    slow.set()
    watcher = StatusWatcher(mqtt_url, hub.hub_id)
    try:
        with http_server(signed.repo.path, slow=slow) as url:
            configure(hub, mqtt_url, url, signed)
            desire(hub, mqtt_url, "2.0", target)
            # 1. Killed while the bundle downloads.
            proc = hub.start()

            def downloading() -> bool:
                p = hub.progress()
                return p is not None and p.state == "downloading" and (p.percent or 0) >= 10

            wait_for(downloading, "the download under way", proc, hub)
            proc.kill()
            proc.wait(10)
            state = slots.load_state(hub.slots_root)
            assert (state.active, state.installing, state.versions) == ("a", None, {"a": "1.0"})
            assert not (hub.data_dir / "update" / "downloads" / target).exists()
            assert hub.boot_check()["version"] == "1.0" and hub.runs() == "1.0"
            # 2. Started again: the download starts again, installs, switches, exits 75.
            slow.clear()
            proc = hub.start()
            assert proc.wait(150) == EXIT_RESTART, hub.tail()
            state = slots.load_state(hub.slots_root)
            assert (state.active, state.previous, state.trying) == ("b", "a", True)
            progress = hub.progress()
            assert progress is not None and progress.state == "confirming"
            assert not (hub.data_dir / "update" / "downloads" / target).exists()
            # 3. Restarted into slot b: it confirms itself and reports 2.0.
            proc = hub.start()
            assert hub.runs() == "2.0"

            def confirmed() -> bool:
                p = hub.progress()
                return p is not None and p.state == "confirmed"

            wait_for(confirmed, "the confirmation", proc, hub)
            wait_for(lambda: not slots.load_state(hub.slots_root).trying, "slot", proc, hub)

            def reported() -> bool:
                seen = [s for s in watcher.seen if s.online and s.software_update]
                return (
                    bool(seen)
                    and seen[-1].software_version == "2.0"
                    and (
                        seen[-1].software_update is not None
                        and seen[-1].software_update.state == "confirmed"
                    )
                )

            wait_for(reported, "the status of 2.0 confirmed", proc, hub)
            assert stop(proc) == 0
        state = slots.load_state(hub.slots_root)
        assert state.confirmed and (state.active, state.previous) == ("b", "a")
        assert "downloading" in watcher.states()
        assert next(s.software_version for s in watcher.seen if s.online) == "1.0"
    finally:
        watcher.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("point", "left_on"),
    [
        ("slots.install.venv", "1.0"),
        ("slots.switch.saved", "2.0"),
        ("slots.confirm.before", "2.0"),
    ],
)
def test_killed_at_each_step_of_the_update_ends_on_a_working_slot_and_completes(
    hub: Hub, tmp_path: Path, mqtt_url: str, point: str, left_on: str
) -> None:
    signed = signed_repo(tmp_path / "release")
    target = signed.add_bundle("2.0")
    watcher = StatusWatcher(mqtt_url, hub.hub_id)
    try:
        with http_server(signed.repo.path) as url:
            configure(hub, mqtt_url, url, signed)
            desire(hub, mqtt_url, "2.0", target)
            if point == "slots.confirm.before":  # killed in the new slot, confirming
                assert hub.start().wait(150) == EXIT_RESTART, hub.tail()
            proc = hub.start(failpoints=f"{point}=1")
            assert proc.wait(150) == -signal.SIGKILL, hub.tail()
            # What systemd starts next: the boot check leaves a slot that works.
            status = hub.boot_check()
            assert status["version"] == left_on and hub.runs() == left_on
            assert status["installing"] is None
            # Started again (as often as it asks), the update completes.
            for _ in range(2):
                proc = hub.start()

                def settled(proc: subprocess.Popen[bytes] = proc) -> bool:
                    p = hub.progress()
                    return proc.poll() is not None or (p is not None and p.state == "confirmed")

                wait_for(settled, "the update to settle", proc, hub)
                if proc.poll() is None:
                    break
                assert proc.returncode == EXIT_RESTART, hub.tail()

            def reported() -> bool:
                seen = [s for s in watcher.seen if s.online and s.software_update]
                return (
                    bool(seen)
                    and seen[-1].software_version == "2.0"
                    and (
                        seen[-1].software_update is not None
                        and seen[-1].software_update.state == "confirmed"
                    )
                )

            wait_for(reported, "the status of 2.0 confirmed", proc, hub)
            assert stop(proc) == 0
    finally:
        watcher.close()
    state = slots.load_state(hub.slots_root)
    assert state.confirmed and not state.trying and hub.runs() == "2.0"
    assert (state.active, state.previous) == ("b", "a")


def _resign_targets_with_a_foreign_key(signed: SignedRepo, tmp_path: Path) -> None:
    """An attacker with the server but not the targets key signs targets itself."""
    md = signed.repo.targets()
    attacker = tmp_path / "attacker"
    key = generate_key(attacker)
    private = load_pem_private_key((attacker / f"{key.keyid}.pem").read_bytes(), None)
    md.sign(CryptoSigner(private, key))
    (signed.repo.metadata_dir / f"{md.signed.version}.targets.json").write_bytes(md.to_bytes())


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("attack", "version", "reason"),
    [
        ("foreign signature", "2.0", "refused: unsigned: "),
        ("downgrade", "0.9", "refused: rollback: "),
    ],
)
def test_a_refused_update_is_reported_with_its_reason_and_changes_nothing(
    hub: Hub, tmp_path: Path, mqtt_url: str, attack: str, version: str, reason: str
) -> None:
    signed = signed_repo(tmp_path / "release")
    target = signed.add_bundle(version)
    if attack == "foreign signature":
        _resign_targets_with_a_foreign_key(signed, tmp_path)
    watcher = StatusWatcher(mqtt_url, hub.hub_id)
    try:
        with http_server(signed.repo.path) as url:
            configure(hub, mqtt_url, url, signed)
            desire(hub, mqtt_url, version, target)
            proc = hub.start()

            def reported() -> bool:
                return "failed" in watcher.states()

            wait_for(reported, "the refusal in the status", proc, hub)
            assert stop(proc) == 0
        failed = next(
            s for s in watcher.seen if s.software_update and s.software_update.state == "failed"
        )
        assert failed.software_update is not None and failed.software_update.reason
        assert failed.software_update.reason.startswith(reason), failed.software_update.reason
        assert failed.software_version == "1.0" and failed.software_update.version == version
    finally:
        watcher.close()
    state = slots.load_state(hub.slots_root)
    assert (state.active, state.trying, state.versions) == ("a", False, {"a": "1.0"})
    assert not list((hub.data_dir / "update" / "downloads").glob("*.tar"))


def reported_revert(watcher: StatusWatcher, proc: subprocess.Popen[bytes], hub: Hub) -> str:
    """Back in 1.0: waits for the revert in the hub's status, stops the hub, and returns
    the reason the last status with an update gave."""
    wait_for(lambda: "reverted" in watcher.states(), "the revert in the status", proc, hub)
    assert stop(proc) == 0
    last = [s for s in watcher.seen if s.software_update][-1]
    assert last.software_version == "1.0" and last.software_update is not None
    return last.software_update.reason or ""


@pytest.mark.timeout(240)
def test_a_new_slot_that_crash_loops_is_reverted_and_reported(
    hub: Hub, tmp_path: Path, mqtt_url: str
) -> None:
    signed = signed_repo(tmp_path / "release")
    target = signed.add_bundle("2.0")
    watcher = StatusWatcher(mqtt_url, hub.hub_id)
    try:
        with http_server(signed.repo.path) as url:
            configure(hub, mqtt_url, url, signed)
            desire(hub, mqtt_url, "2.0", target)
            proc = hub.start()
            assert proc.wait(150) == EXIT_RESTART, hub.tail()
            # Slot b dies at each start before it can confirm (max_boots: 3): systemd runs
            # the boot check before every start, and the fourth goes back to slot a.
            for _ in range(3):
                assert hub.boot_check()["version"] == "2.0"
            status = hub.boot_check()
            assert (status["version"], status["progress"], status["reason"]) == (
                "1.0",
                "reverted",
                "crash_loop",
            )
            proc = hub.start()  # runs slot a again (its boot check: nothing to do)
            assert hub.runs() == "1.0"
            assert reported_revert(watcher, proc, hub) == (
                "crash_loop: 2.0 was started 3 times without confirming (a crash loop); back to 1.0"
            )
    finally:
        watcher.close()
    state = slots.load_state(hub.slots_root)
    assert (state.active, state.previous, state.trying) == ("a", None, False)


@pytest.mark.timeout(240)
def test_a_new_slot_that_never_confirms_is_reverted_at_its_deadline_and_reported(
    hub: Hub, tmp_path: Path, mqtt_url: str
) -> None:
    signed = signed_repo(tmp_path / "release")
    target = signed.add_bundle("2.0")
    watcher = StatusWatcher(mqtt_url, hub.hub_id)
    try:
        with http_server(signed.repo.path) as url:
            configure(hub, mqtt_url, url, signed, confirm_timeout_s=10)
            desire(hub, mqtt_url, "2.0", target)
            assert hub.start().wait(150) == EXIT_RESTART, hub.tail()
            # 2.0 cannot reach the broker (here: nothing listens where it looks), so it
            # never confirms: at its deadline the gateway goes back to 1.0 and stops.
            config = json.loads(hub.config.read_text())
            hub.config.write_text(json.dumps({**config, "mqtt_url": "mqtt://127.0.0.1:9"}))
            proc = hub.start()
            assert hub.runs() == "2.0"
            assert proc.wait(60) == 0, hub.tail()
            state = slots.load_state(hub.slots_root)
            assert state.active == "a" and state.outcome == ("reverted", "not_confirmed")
            hub.config.write_text(json.dumps(config))
            proc = hub.start()  # systemd's restart: 1.0 again
            assert hub.runs() == "1.0"
            assert reported_revert(watcher, proc, hub) == (
                "not_confirmed: 2.0 did not confirm itself in time; back to 1.0"
            )
    finally:
        watcher.close()


def test_update_settings_are_checked_with_clear_errors(tmp_path: Path) -> None:
    base = {"hub_id": "hub-7", "mqtt_url": "mqtt://127.0.0.1", "data_dir": str(tmp_path)}
    update = {"repository_url": "https://updates.example.org/hemhub", "trusted_root": "/r.json"}
    config = GatewayConfig.model_validate_json(
        json.dumps({**base, "slots_root": "/opt/hemhub", "update": update})
    )
    assert config.update is not None
    assert config.update.repository_url == "https://updates.example.org/hemhub/"
    assert (config.update.confirm_timeout_s, config.update.max_boots) == (300.0, 3)
    refusals = [
        ({"update": update}, "update needs slots_root"),
        ({"update": {**update, "repository_url": "ftp://x/"}}, "not an http:// or https://"),
        ({"update": {**update, "targets_url": "https://cdn/?a=1"}}, "no query or fragment"),
        ({"update": {"repository_url": "https://u/"}}, "trusted_root"),
        ({"update": {**update, "max_boots": 0}}, "max_boots"),
        ({"update": {**update, "confirm_timeout_s": 1}}, "confirm_timeout_s"),
        ({"update": {**update, "key": "x"}}, "key"),
    ]
    for extra, why in refusals:
        data = {**base, "slots_root": "/opt/hemhub", **extra}
        if why == "update needs slots_root":
            data.pop("slots_root")
        with pytest.raises(ValidationError, match=why):
            GatewayConfig.model_validate_json(json.dumps(data))


def test_a_hub_without_its_trusted_root_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        'hub_id = "hub-7"\nmqtt_url = "mqtt://127.0.0.1:9"\n'
        f'data_dir = "{tmp_path / "data"}"\nslots_root = "{tmp_path / "slots"}"\n'
        "[update]\n"
        'repository_url = "https://updates.example.org/hemhub/"\n'
        f'trusted_root = "{tmp_path / "missing-root.json"}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "hemhub.cli", "gateway", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78, done.stderr  # EX_CONFIG
    assert "refusing configuration" in done.stderr and "update.trusted_root" in done.stderr
    assert "holds no trusted root.json" in done.stderr


async def test_an_unreachable_repository_defers_the_download_until_it_answers(
    prepared: Path, tmp_path: Path
) -> None:
    signed = signed_repo(tmp_path / "release")
    target = signed.add_bundle("2.0")
    served = tmp_path / "served"
    served.mkdir()
    root = tmp_path / "opt-hemhub"
    shutil.copytree(prepared, root, symlinks=True)
    trusted = tmp_path / "update-root.json"
    trusted.write_bytes((signed.repo.metadata_dir / "root.json").read_bytes())
    seen: list[UpdateProgress] = []
    with http_server(served) as url:  # the mirror is up but holds nothing yet
        settings = UpdateSettings(repository_url=url, trusted_root=trusted)
        agent = SlotUpdateAgent(settings, root, tmp_path / "data")
        reconciler = Reconciler(
            agent, tmp_path / "data" / "update-state.json", on_progress=seen.append
        )
        want = DesiredSoftware(version="2.0", target=target, campaign_id=CAMPAIGN)
        await reconciler.reconcile(want, ready=True)
        assert reconciler.progress is not None
        assert reconciler.progress.state == "downloading"
        assert (reconciler.progress.reason or "").startswith("unreachable: ")
        assert not agent.restart_requested.is_set()
        shutil.copytree(signed.repo.path, served, dirs_exist_ok=True)  # the mirror syncs
        await reconciler.reconcile(want, ready=True)
    assert reconciler.progress.state == "confirming" and agent.restart_requested.is_set()
    assert [p.state for p in seen][-2:] == ["installing", "confirming"]
    state = slots.load_state(root)
    assert (state.active, state.trying, state.versions["b"]) == ("b", True, "2.0")


async def test_a_bundle_whose_version_is_not_its_names_is_not_installed(
    prepared: Path, tmp_path: Path
) -> None:
    signed = signed_repo(tmp_path / "release")
    built = make_bundle(tmp_path / "build", "3.0")
    renamed = built.with_name("hemhub-hub-2.0.tar")  # signed, but not what its name says
    built.rename(renamed)
    signed.repo.add_target(
        renamed, [signed.online_keys], custom={"kind": "hub-software", "version": "2.0"}
    )
    root = tmp_path / "opt-hemhub"
    shutil.copytree(prepared, root, symlinks=True)
    trusted = tmp_path / "update-root.json"
    trusted.write_bytes((signed.repo.metadata_dir / "root.json").read_bytes())
    with http_server(signed.repo.path) as url:
        settings = UpdateSettings(repository_url=url, trusted_root=trusted)
        agent = SlotUpdateAgent(settings, root, tmp_path / "data")
        reconciler = Reconciler(agent, tmp_path / "data" / "update-state.json")
        want = DesiredSoftware(version="2.0", target=renamed.name, campaign_id=CAMPAIGN)
        await reconciler.reconcile(want, ready=True)
    assert reconciler.progress is not None and reconciler.progress.state == "failed"
    assert reconciler.progress.reason == (
        "bad_bundle: hemhub-hub-2.0.tar holds version 3.0, not its name's"
    )
    state = slots.load_state(root)
    assert (state.active, state.versions, state.installing) == ("a", {"a": "1.0"}, None)
    assert not agent.restart_requested.is_set()
