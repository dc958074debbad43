"""The hub's verified fetch against a real HTTP server: one good fetch, and each attack
TUF's client must refuse, with the reason the hub puts in its status."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from edge_image.bundle import read_manifest
from edge_image.repository import Expiries, Repository, generate_key
from gateway.update.fetch import UpdateRefused, fetch_verified
from tests.ota_helpers import SignedRepo, http_server, signed_repo


@pytest.fixture
def signed(tmp_path: Path) -> SignedRepo:
    return signed_repo(tmp_path)


def _refused(url: str, hub: Path, target: str, dest: Path) -> UpdateRefused:
    with pytest.raises(UpdateRefused) as caught:
        fetch_verified(url, hub, target, dest)
    return caught.value


def test_good_fetch_verifies_downloads_and_reports_progress(
    signed: SignedRepo, tmp_path: Path
) -> None:
    target = signed.add_bundle("0.2.0")
    hub = signed.trusted_metadata(tmp_path / "hub" / "metadata")
    seen: list[tuple[int, int]] = []
    with http_server(signed.repo.path) as url:
        path = fetch_verified(
            url, hub, target, tmp_path / "hub" / "downloads", progress=lambda *p: seen.append(p)
        )
    assert path == tmp_path / "hub" / "downloads" / "hemhub-hub-0.2.0.tar"
    assert read_manifest(path).version == "0.2.0"
    assert seen[0] == (0, path.stat().st_size) and seen[-1] == (path.stat().st_size,) * 2
    # The hub now trusts the repository's timestamp, snapshot and targets as well.
    assert {p.name for p in hub.iterdir()} >= {"root.json", "timestamp.json", "targets.json"}


def test_verified_file_already_there_is_not_downloaded_again(
    signed: SignedRepo, tmp_path: Path
) -> None:
    target = signed.add_bundle("0.2.0")
    hub = signed.trusted_metadata(tmp_path / "hub")
    dest = tmp_path / "downloads"
    with http_server(signed.repo.path) as url:
        first = fetch_verified(url, hub, target, dest)
        for stored in (signed.repo.targets_dir).iterdir():
            stored.unlink()  # the server no longer has it: only the verified copy can do
        assert fetch_verified(url, hub, target, dest) == first


def test_unsigned_metadata_is_refused(signed: SignedRepo, tmp_path: Path) -> None:
    target = signed.add_bundle("0.2.0")
    # An attacker with the server but not the targets key signs targets with a key of its own.
    md = signed.repo.targets()
    path = signed.repo.metadata_dir / f"{md.signed.version}.targets.json"
    attacker = tmp_path / "attacker"
    key = generate_key(attacker)
    private = load_pem_private_key((attacker / f"{key.keyid}.pem").read_bytes(), None)
    md.sign(CryptoSigner(private, key))
    path.write_bytes(md.to_bytes())
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        refused = _refused(url, hub, target, tmp_path / "downloads")
    assert refused.reason == "unsigned", refused


def test_metadata_stripped_of_its_signatures_is_refused(signed: SignedRepo, tmp_path: Path) -> None:
    target = signed.add_bundle("0.2.0")
    md = signed.repo.targets()
    md.signatures.clear()
    (signed.repo.metadata_dir / f"{md.signed.version}.targets.json").write_bytes(md.to_bytes())
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        refused = _refused(url, hub, target, tmp_path / "downloads")
    assert refused.reason == "unsigned", refused


@pytest.mark.parametrize("how", ["same length", "longer"])
def test_altered_target_is_refused_and_not_kept(
    signed: SignedRepo, tmp_path: Path, how: str
) -> None:
    target = signed.add_bundle("0.2.0")
    (stored,) = signed.repo.targets_dir.iterdir()
    data = bytearray(stored.read_bytes())
    if how == "same length":
        data[600] ^= 0xFF
    else:
        data += b"#!/bin/sh\nrm -rf /\n"
    stored.write_bytes(bytes(data))
    hub = signed.trusted_metadata(tmp_path / "hub")
    dest = tmp_path / "downloads"
    with http_server(signed.repo.path) as url:
        refused = _refused(url, hub, target, dest)
    assert refused.reason == "altered", refused
    assert not list(dest.iterdir())


def test_expired_metadata_is_refused(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path)
    # The targets metadata was signed to be valid until a minute ago.
    late = Repository(signed.repo.path, Expiries(targets=-timedelta(minutes=1)))
    target = late.add_target(_file(tmp_path, "hemhub-hub-0.2.0.tar"), [signed.online_keys]).path
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        refused = _refused(url, hub, target, tmp_path / "downloads")
    assert refused.reason == "expired", refused
    assert "targets" in refused.message


def test_frozen_repository_stale_timestamp_is_refused(signed: SignedRepo, tmp_path: Path) -> None:
    target = signed.add_bundle("0.2.0")
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        fetch_verified(url, hub, target, tmp_path / "downloads")
        # Release 0.3.0 is published, but a frozen mirror goes on serving the metadata of
        # before it, whose timestamp is no longer fresh (signed to expire a minute ago).
        frozen = tmp_path / "frozen"
        shutil.copytree(signed.repo.path, frozen)
        Repository(frozen).refresh_timestamp(
            [signed.online_keys], expires=datetime.now(UTC) - timedelta(minutes=1)
        )
        signed.add_bundle("0.3.0")
    with http_server(frozen) as url:
        refused = _refused(url, hub, target, tmp_path / "downloads-2")
    assert refused.reason == "freeze", refused


def test_rolled_back_metadata_is_refused(signed: SignedRepo, tmp_path: Path) -> None:
    old_target = signed.add_bundle("0.2.0")
    old_timestamp = (signed.repo.metadata_dir / "timestamp.json").read_bytes()
    new_target = signed.add_bundle("0.3.0")
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        fetch_verified(url, hub, new_target, tmp_path / "downloads")
        # The server is made to offer the release before: valid, signed, but older.
        (signed.repo.metadata_dir / "timestamp.json").write_bytes(old_timestamp)
        refused = _refused(url, hub, old_target, tmp_path / "downloads")
    assert refused.reason == "rollback", refused


def test_rolled_back_metadata_is_refused_after_the_hub_restarts(
    signed: SignedRepo, tmp_path: Path
) -> None:
    """The trusted versions live in the hub's metadata directory, not in memory."""
    signed.add_bundle("0.2.0")
    old = {p.name: p.read_bytes() for p in signed.repo.metadata_dir.iterdir()}
    new_target = signed.add_bundle("0.3.0")
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        fetch_verified(url, hub, new_target, tmp_path / "downloads")
    mirror = tmp_path / "old-mirror"
    (mirror / "metadata").mkdir(parents=True)
    shutil.copytree(signed.repo.targets_dir, mirror / "targets")
    for name, data in old.items():
        (mirror / "metadata" / name).write_bytes(data)
    with http_server(mirror) as url:
        refused = _refused(url, hub, "hemhub-hub-0.2.0.tar", tmp_path / "downloads")
    assert refused.reason == "rollback", refused


def test_signed_but_older_release_is_refused_unless_going_back_was_asked(
    signed: SignedRepo, tmp_path: Path
) -> None:
    old = signed.add_bundle("0.2.0")
    new = signed.add_bundle("0.10.0")
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        with pytest.raises(UpdateRefused) as caught:
            fetch_verified(url, hub, old, tmp_path / "d", installed_version="0.10.0")
        assert caught.value.reason == "rollback"
        assert "older than the installed 0.10.0" in caught.value.message
        # PEP 440 order, not string order; the same version is no downgrade.
        assert fetch_verified(url, hub, new, tmp_path / "d", installed_version="0.9.1")
        assert fetch_verified(url, hub, new, tmp_path / "d", installed_version="0.10.0")
        # A rollback campaign passes no installed version: going back is what it asks.
        assert fetch_verified(url, hub, old, tmp_path / "d").is_file()


def test_mix_and_match_metadata_is_refused(signed: SignedRepo, tmp_path: Path) -> None:
    signed.add_bundle("0.2.0")
    target = signed.add_bundle("0.3.0")
    # Serve the targets of the release before under the name the snapshot points at.
    snapshot = signed.repo.snapshot().signed
    current = snapshot.meta["targets.json"].version
    metadata = signed.repo.metadata_dir
    (metadata / f"{current}.targets.json").write_bytes(
        (metadata / f"{current - 1}.targets.json").read_bytes()
    )
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        refused = _refused(url, hub, "hemhub-hub-0.2.0.tar", tmp_path / "downloads")
        assert refused.reason == "mix_and_match", refused
        refused = _refused(url, hub, target, tmp_path / "downloads")
        assert refused.reason == "mix_and_match", refused


def test_snapshot_of_another_release_is_refused(signed: SignedRepo, tmp_path: Path) -> None:
    signed.add_bundle("0.2.0")
    signed.add_bundle("0.3.0")
    metadata = signed.repo.metadata_dir
    version = Metadata.from_file(str(metadata / "timestamp.json")).signed.snapshot_meta.version
    (metadata / f"{version}.snapshot.json").write_bytes(
        (metadata / f"{version - 1}.snapshot.json").read_bytes()
    )
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        refused = _refused(url, hub, "hemhub-hub-0.3.0.tar", tmp_path / "downloads")
    # The timestamp signs the snapshot's hash too: the other snapshot fails that check
    # before its version is read, so the hub says altered.
    assert refused.reason == "altered", refused


def test_unknown_target_untrusted_hub_and_unreachable_repository(
    signed: SignedRepo, tmp_path: Path
) -> None:
    signed.add_bundle("0.2.0")
    hub = signed.trusted_metadata(tmp_path / "hub")
    with http_server(signed.repo.path) as url:
        assert _refused(url, hub, "hemhub-hub-9.9.9.tar", tmp_path / "d").reason == "not_found"
        assert _refused(url, tmp_path / "empty", "x.tar", tmp_path / "d").reason == "untrusted"
    assert _refused(url, hub, "hemhub-hub-0.2.0.tar", tmp_path / "d").reason == "unreachable"


def test_hub_follows_key_rotations(tmp_path: Path) -> None:
    signed = signed_repo(tmp_path, root_custodians=3, root_threshold=2)
    hub = signed.trusted_metadata(tmp_path / "hub")
    signed.add_bundle("0.2.0")
    with http_server(signed.repo.path) as url:
        fetch_verified(url, hub, "hemhub-hub-0.2.0.tar", tmp_path / "d")
        new_online = tmp_path / "keys" / "online-2"
        signed.repo.rotate_key(
            "targets",
            root_key_dirs=signed.root_keys[:2],
            new_key_dir=new_online,
            online_key_dir=signed.online_keys,
        )
        old_root = json.loads((signed.repo.metadata_dir / "2.root.json").read_bytes())
        keyid = old_root["signed"]["roles"]["root"]["keyids"][0]
        holder = next(d for d in signed.root_keys if (d / f"{keyid}.pem").exists())
        signed.repo.rotate_key(
            "root",
            root_key_dirs=signed.root_keys,
            new_key_dir=tmp_path / "keys" / "root-4",
            online_key_dir=signed.online_keys,
            replace_keyid=keyid,
        )
        shutil.rmtree(holder)  # the replaced key is destroyed
        signed.repo.add_target(
            _file(tmp_path, "hemhub-hub-0.3.0.tar"), [new_online, signed.online_keys]
        )
        assert fetch_verified(url, hub, "hemhub-hub-0.3.0.tar", tmp_path / "d").is_file()
    trusted = json.loads((hub / "root.json").read_bytes())["signed"]
    assert trusted["version"] == 3 and keyid not in trusted["roles"]["root"]["keyids"]


def _file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "files" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(name.encode() * 100)
    return path
