"""The TUF repository tooling: roles, thresholds, expiries, releases, key rotation."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root

from edge_image.repository import Expiries, Repository, RepositoryToolError
from tests.ota_helpers import signed_repo


def _root(repo: Repository, version: int) -> Root:
    md = Metadata[Root].from_file(str(repo.metadata_dir / f"{version}.root.json"))
    assert isinstance(md.signed, Root)
    return md.signed


def test_init_lays_out_roles_keys_and_expiries(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path, root_custodians=3, root_threshold=2)
    info = signed.repo.info()
    now = datetime.now(UTC)
    assert info["roles"]["root"]["threshold"] == 2
    assert len(info["roles"]["root"]["keyids"]) == 3
    for role, days in (("root", 365), ("targets", 90), ("snapshot", 90), ("timestamp", 1)):
        expires = datetime.fromisoformat(info["roles"][role]["expires"])
        assert abs(expires - now - timedelta(days=days)) < timedelta(minutes=1), role
    # Each custodian holds one root key; no key lies in the repository.
    for directory in signed.root_keys:
        assert len(list(directory.glob("*.pem"))) == 1
        assert (directory / next(directory.iterdir()).name).stat().st_mode & 0o077 == 0
    assert len(list(signed.online_keys.glob("*.pem"))) == 3
    assert not list(signed.repo.path.rglob("*.pem"))
    root = _root(signed.repo, 1)
    assert root.consistent_snapshot
    # The root is signed by every custodian at the ceremony.
    md = Metadata.from_file(str(signed.repo.metadata_dir / "root.json"))
    assert set(md.signatures) == set(root.roles["root"].keyids)


@pytest.mark.parametrize(
    ("dirs", "threshold", "reason"),
    [([], 1, "at least one"), (["r1"], 2, "between 1 and 1"), (["r1", "r1"], 1, "one directory")],
)
def test_init_refuses_bad_ceremonies(
    tmp_path: Path, dirs: list[str], threshold: int, reason: str
) -> None:
    with pytest.raises(RepositoryToolError, match=reason):
        Repository.init(
            tmp_path / "repo",
            root_key_dirs=[tmp_path / d for d in dirs],
            online_key_dir=tmp_path / "online",
            root_threshold=threshold,
        )


def test_init_refuses_an_existing_repository_and_shared_key_dirs(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path)
    with pytest.raises(RepositoryToolError, match="already holds metadata"):
        Repository.init(signed.repo.path, root_key_dirs=[tmp_path / "x"], online_key_dir=tmp_path)
    with pytest.raises(RepositoryToolError, match="must not share"):
        Repository.init(
            tmp_path / "other", root_key_dirs=[tmp_path / "k"], online_key_dir=tmp_path / "k"
        )


def test_a_release_moves_targets_snapshot_and_timestamp(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path)
    target = signed.add_bundle("0.2.0")
    info = signed.repo.info()
    assert {r: info["roles"][r]["version"] for r in info["roles"]} == {
        "root": 1,
        "targets": 2,
        "snapshot": 2,
        "timestamp": 2,
    }
    assert info["targets"][target]["custom"] == {"kind": "hub-software", "version": "0.2.0"}
    sha = info["targets"][target]["sha256"]
    assert (signed.repo.targets_dir / f"{sha}.{target}").is_file()
    # The same file again changes nothing in the target; other contents are refused.
    signed.repo.add_target(
        signed.repo.targets_dir / f"{sha}.{target}", [signed.online_keys], name=target
    )
    other = tmp_path / target
    other.write_bytes(b"other contents")
    with pytest.raises(RepositoryToolError, match="never replaced"):
        signed.repo.add_target(other, [signed.online_keys])


def test_timestamp_refresh_signs_only_a_new_timestamp(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path, expiries=Expiries(timestamp=timedelta(hours=6)))
    before = signed.repo.info()["roles"]
    md = signed.repo.refresh_timestamp([signed.online_keys])
    after = signed.repo.info()["roles"]
    assert md.signed.version == before["timestamp"]["version"] + 1
    assert md.signed.expires - datetime.now(UTC) > timedelta(hours=5, minutes=59)
    assert {r: after[r]["version"] for r in ("root", "targets", "snapshot")} == {
        r: before[r]["version"] for r in ("root", "targets", "snapshot")
    }


def test_signing_without_the_key_is_refused(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path)
    with pytest.raises(RepositoryToolError, match=r"timestamp: 0 of its keys found .* 1 needed"):
        signed.repo.refresh_timestamp([tmp_path / "nowhere"])


def test_root_change_needs_the_threshold_of_custodians(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path, root_custodians=3, root_threshold=2)
    kwargs = {"new_key_dir": tmp_path / "new", "online_key_dir": signed.online_keys}
    with pytest.raises(RepositoryToolError, match="threshold of 2 is not met"):
        signed.repo.rotate_key("timestamp", root_key_dirs=signed.root_keys[:1], **kwargs)
    assert not (signed.repo.metadata_dir / "2.root.json").exists()
    key = signed.repo.rotate_key("timestamp", root_key_dirs=signed.root_keys[1:], **kwargs)
    root = _root(signed.repo, 2)
    assert root.roles["timestamp"].keyids == [key.keyid]
    assert signed.repo.timestamp().signatures.keys() == {key.keyid}
    # The old root (version 1) and the new one both accept the new root's signatures.
    md = Metadata.from_file(str(signed.repo.metadata_dir / "2.root.json"))
    for delegator in (_root(signed.repo, 1), root):
        delegator.verify_delegate("root", md.signed_bytes, md.signatures)


def test_renewing_the_root_needs_the_threshold_and_extends_its_expiry(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path, root_custodians=2, root_threshold=2)
    with pytest.raises(RepositoryToolError, match="threshold of 2 is not met"):
        signed.repo.renew_root(signed.root_keys[:1])
    longer = Repository(signed.repo.path, Expiries(root=timedelta(days=730)))
    md = longer.renew_root(signed.root_keys)
    assert md.signed.version == 2
    assert md.signed.expires - datetime.now(UTC) > timedelta(days=729)
    assert md.signed.keys == _root(signed.repo, 1).keys


def test_rotating_a_root_key_keeps_the_others(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path, root_custodians=2, root_threshold=1)
    old = _root(signed.repo, 1).roles["root"].keyids
    with pytest.raises(RepositoryToolError, match="say which key to replace"):
        signed.repo.rotate_key(
            "root",
            root_key_dirs=signed.root_keys,
            new_key_dir=tmp_path / "new-root",
            online_key_dir=signed.online_keys,
        )
    new = signed.repo.rotate_key(
        "root",
        root_key_dirs=signed.root_keys,
        new_key_dir=tmp_path / "new-root-2",
        online_key_dir=signed.online_keys,
        replace_keyid=old[0],
    )
    assert _root(signed.repo, 2).roles["root"].keyids == [old[1], new.keyid]
    root_json = json.loads((signed.repo.metadata_dir / "root.json").read_bytes())
    assert root_json["signed"]["version"] == 2


def test_encrypted_keys_need_the_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEMHUB_OTA_KEY_PASSPHRASE", "correct horse")
    signed = signed_repo(tmp_path)
    pem = next(signed.online_keys.iterdir()).read_text()
    assert "ENCRYPTED PRIVATE KEY" in pem
    signed.repo.refresh_timestamp([signed.online_keys])
    monkeypatch.setenv("HEMHUB_OTA_KEY_PASSPHRASE", "wrong")
    with pytest.raises(RepositoryToolError, match="cannot load the key"):
        signed.repo.refresh_timestamp([signed.online_keys])


def test_a_release_adds_versions_and_rewrites_only_the_timestamp(tmp_path: Path) -> None:
    """Consistent snapshots: a reader of the release before still finds all it names."""
    signed = signed_repo(tmp_path)
    copy = tmp_path / "before"
    shutil.copytree(signed.repo.metadata_dir, copy)
    signed.add_bundle("0.2.0")
    now = {p.name: p.read_bytes() for p in signed.repo.metadata_dir.iterdir()}
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    assert set(now) - set(before) == {"2.targets.json", "2.snapshot.json"}
    assert {name for name in before if before[name] != now[name]} == {"timestamp.json"}
    assert not list(signed.repo.path.rglob(".*.partial"))
