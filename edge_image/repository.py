"""The TUF repository of hub software bundles (and other update targets).

A repository is a directory of static files that any web server can serve:

    REPO/metadata/N.root.json      every root version (the hubs walk the chain)
    REPO/metadata/root.json        the newest root: the trust anchor put on new hubs
    REPO/metadata/N.targets.json   consistent snapshots: a version is never rewritten
    REPO/metadata/N.snapshot.json
    REPO/metadata/timestamp.json   written last, so a reader sees a whole release
    REPO/targets/<sha256>.<name>   the files, named by their hash

Roles and keys (python-tuf's Metadata API, ed25519 keys, PKCS#8 PEM files named
`<keyid>.pem`): `root` with its keys in one directory per custodian (offline media,
`threshold` of them must sign), `targets`, `snapshot` and `timestamp` with one key each
in the online key directory. Keys never live under REPO. A key file may be encrypted
with a passphrase (HEMHUB_OTA_KEY_PASSPHRASE).

The key ceremony, the expiries and the rotation procedure are told in docs/firmware.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, Key, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROLES = ("root", *ONLINE_ROLES)
PASSPHRASE_ENV = "HEMHUB_OTA_KEY_PASSPHRASE"
_T = TypeVar("_T", Root, Targets, Snapshot, Timestamp)


class RepositoryToolError(ValueError):
    """A repository operation that cannot be done, with the reason."""


@dataclass(frozen=True)
class Expiries:
    """How long each role's metadata stays valid after it is signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=90)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: str) -> timedelta:
        value: timedelta = getattr(self, role)
        return value


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def generate_key(key_dir: Path) -> SSlibKey:
    """A new ed25519 key: the private half to `key_dir/<keyid>.pem` (mode 0600)."""
    private_key = Ed25519PrivateKey.generate()
    key = SSlibKey.from_crypto(private_key.public_key())
    passphrase = _passphrase()
    encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
    private = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_dir / f"{key.keyid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    return key


def _signer(key: Key, key_dirs: Sequence[Path]) -> CryptoSigner | None:
    if not isinstance(key, SSlibKey):
        return None
    for directory in key_dirs:
        path = directory / f"{key.keyid}.pem"
        if path.is_file():
            try:
                private = load_pem_private_key(path.read_bytes(), _passphrase())
            except (TypeError, ValueError) as exc:
                raise RepositoryToolError(
                    f"{path}: cannot load the key ({exc}); is {PASSPHRASE_ENV} right?"
                ) from exc
            return CryptoSigner(private, key)
    return None


def _sign(md: Metadata[Any], role: str, root: Root, key_dirs: Sequence[Path]) -> None:
    """Sign `md` with every key of `role` (as `root` delegates it) found in `key_dirs`."""
    delegation = root.roles[role]
    md.signatures.clear()
    for keyid in delegation.keyids:
        signer = _signer(root.get_key(keyid), key_dirs)
        if signer is not None:
            md.sign(signer, append=True)
    if len(md.signatures) < delegation.threshold:
        where = ", ".join(str(d) for d in key_dirs) or "no key directory"
        raise RepositoryToolError(
            f"{role}: {len(md.signatures)} of its keys found in {where},"
            f" {delegation.threshold} needed"
        )


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)


class Repository:
    """One repository directory; each method signs and writes one consistent release."""

    def __init__(self, path: Path, expiries: Expiries | None = None) -> None:
        self.path = path
        self.metadata_dir = path / "metadata"
        self.targets_dir = path / "targets"
        self.expiries = expiries or Expiries()
        self._serializer = JSONSerializer(compact=False)

    # -- reading -------------------------------------------------------------------

    def _load(self, name: str, kind: type[_T]) -> Metadata[_T]:
        path = self.metadata_dir / name
        if not path.is_file():
            raise RepositoryToolError(f"{path}: missing; is {self.path} a repository (init)?")
        md = Metadata[kind].from_file(str(path))  # type: ignore[valid-type]
        if not isinstance(md.signed, kind):
            raise RepositoryToolError(f"{path}: not {kind.type} metadata")
        return md

    def root(self) -> Metadata[Root]:
        versions = [
            int(p.name.split(".", 1)[0])
            for p in self.metadata_dir.glob("*.root.json")
            if p.name.split(".", 1)[0].isdigit()
        ]
        if not versions:
            raise RepositoryToolError(f"{self.path}: no root metadata; run init first")
        return self._load(f"{max(versions)}.root.json", Root)

    def timestamp(self) -> Metadata[Timestamp]:
        return self._load("timestamp.json", Timestamp)

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return self._load(f"{version}.snapshot.json", Snapshot)

    def targets(self) -> Metadata[Targets]:
        version = self.snapshot().signed.meta["targets.json"].version
        return self._load(f"{version}.targets.json", Targets)

    # -- writing -------------------------------------------------------------------

    def _expiry(self, role: str, now: datetime | None) -> datetime:
        return ((now or datetime.now(UTC)) + self.expiries.of(role)).replace(microsecond=0)

    def _publish_root(self, md: Metadata[Root]) -> None:
        data = md.to_bytes(self._serializer)
        _write(self.metadata_dir / f"{md.signed.version}.root.json", data)
        _write(self.metadata_dir / "root.json", data)

    def _publish(
        self,
        key_dirs: Sequence[Path],
        *,
        targets: Metadata[Targets] | None,
        snapshot: bool,
        now: datetime | None = None,
        expires: Mapping[str, datetime] | None = None,
    ) -> None:
        """Sign and write new targets (if given), snapshot (if asked) and timestamp."""
        root = self.root().signed
        expires = dict(expires or {})
        if targets is not None:
            targets.signed.expires = expires.get("targets") or self._expiry("targets", now)
            _sign(targets, "targets", root, key_dirs)
            name = f"{targets.signed.version}.targets.json"
            _write(self.metadata_dir / name, targets.to_bytes(self._serializer))
        if snapshot or targets is not None:
            try:
                snap = self.snapshot()
                snap.signed.version += 1
            except RepositoryToolError:
                snap = Metadata(Snapshot())
            if targets is not None:
                snap.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
            snap.signed.expires = expires.get("snapshot") or self._expiry("snapshot", now)
            _sign(snap, "snapshot", root, key_dirs)
            _write(
                self.metadata_dir / f"{snap.signed.version}.snapshot.json",
                snap.to_bytes(self._serializer),
            )
        else:
            snap = self.snapshot()
        snap_bytes = (self.metadata_dir / f"{snap.signed.version}.snapshot.json").read_bytes()
        try:
            ts = self.timestamp()
            ts.signed.version += 1
        except RepositoryToolError:
            ts = Metadata(Timestamp())
        ts.signed.snapshot_meta = MetaFile(
            version=snap.signed.version,
            length=len(snap_bytes),
            hashes={"sha256": hashlib.sha256(snap_bytes).hexdigest()},
        )
        ts.signed.expires = expires.get("timestamp") or self._expiry("timestamp", now)
        _sign(ts, "timestamp", root, key_dirs)
        _write(self.metadata_dir / "timestamp.json", ts.to_bytes(self._serializer))

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        root_key_dirs: Sequence[Path],
        online_key_dir: Path,
        root_threshold: int = 1,
        expiries: Expiries | None = None,
    ) -> Repository:
        """A new repository: one new root key in each of `root_key_dirs` (one a custodian),
        `root_threshold` of them needed to sign a root; one online key per other role."""
        repo = cls(path, expiries)
        if (repo.metadata_dir).exists() and any(repo.metadata_dir.iterdir()):
            raise RepositoryToolError(f"{repo.metadata_dir} already holds metadata")
        if not root_key_dirs:
            raise RepositoryToolError("give at least one directory for a root key")
        if len(set(root_key_dirs)) != len(root_key_dirs):
            raise RepositoryToolError("one directory per root key (one per custodian)")
        if not 1 <= root_threshold <= len(root_key_dirs):
            raise RepositoryToolError(
                f"root threshold {root_threshold}: between 1 and {len(root_key_dirs)}"
            )
        if online_key_dir.resolve() in {d.resolve() for d in root_key_dirs}:
            raise RepositoryToolError("the root keys must not share the online key directory")
        root = Root(expires=repo._expiry("root", None), consistent_snapshot=True)
        for directory in root_key_dirs:
            root.add_key(generate_key(directory), "root")
        root.roles["root"].threshold = root_threshold
        for role in ONLINE_ROLES:
            root.add_key(generate_key(online_key_dir), role)
        repo.metadata_dir.mkdir(parents=True, exist_ok=True)
        repo.targets_dir.mkdir(parents=True, exist_ok=True)
        md = Metadata(root)
        _sign(md, "root", root, root_key_dirs)
        repo._publish_root(md)
        repo._publish([online_key_dir], targets=Metadata(Targets()), snapshot=True)
        return repo

    def add_target(
        self,
        file: Path,
        key_dirs: Sequence[Path],
        *,
        name: str | None = None,
        custom: Mapping[str, Any] | None = None,
    ) -> TargetFile:
        """Publish `file` as target `name` (default: its file name), with `custom` info."""
        name = name or file.name
        if "/" in name or name.startswith(".") or not name:
            raise RepositoryToolError(f"target name {name!r}: a plain file name")
        if not file.is_file():
            raise RepositoryToolError(f"{file}: not a file")
        targets = self.targets()
        info = TargetFile.from_file(name, str(file), ["sha256"])
        if custom:
            info.unrecognized_fields["custom"] = dict(custom)
        old = targets.signed.targets.get(name)
        if old is not None and old.hashes != info.hashes:
            raise RepositoryToolError(
                f"target {name} is already published with other contents; a release is"
                " never replaced: give it a new version"
            )
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        stored = self.targets_dir / f"{info.hashes['sha256']}.{name}"
        if not stored.exists():
            partial = stored.with_name(f".{stored.name}.partial")
            shutil.copyfile(file, partial)
            partial.replace(stored)
        targets.signed.targets[name] = info
        targets.signed.version += 1
        self._publish(key_dirs, targets=targets, snapshot=True)
        return info

    def refresh_timestamp(
        self, key_dirs: Sequence[Path], *, expires: datetime | None = None
    ) -> Metadata[Timestamp]:
        """A new timestamp over the same snapshot, valid for another period."""
        self._publish(
            key_dirs,
            targets=None,
            snapshot=False,
            expires={"timestamp": expires} if expires else None,
        )
        return self.timestamp()

    def resign(self, key_dirs: Sequence[Path]) -> None:
        """New versions of targets, snapshot and timestamp with fresh expiries."""
        targets = self.targets()
        targets.signed.version += 1
        self._publish(key_dirs, targets=targets, snapshot=True)

    def sign_root(
        self, root: Root, key_dirs: Sequence[Path], *, previous: Root | None = None
    ) -> Metadata[Root]:
        """Sign and publish a new root version: the previous root's threshold and its
        own must both be met (what a hub checks before it trusts the new root)."""
        previous = previous or self.root().signed
        md = Metadata(root)
        md.signatures.clear()
        keyids = list(dict.fromkeys([*previous.roles["root"].keyids, *root.roles["root"].keyids]))
        for keyid in keyids:
            key = root.keys.get(keyid) or previous.keys.get(keyid)
            signer = _signer(key, key_dirs) if key is not None else None
            if signer is not None:
                md.sign(signer, append=True)
        for name, delegator in (("previous", previous), ("new", root)):
            try:
                delegator.verify_delegate("root", md.signed_bytes, md.signatures)
            except UnsignedMetadataError as exc:
                raise RepositoryToolError(
                    f"root v{root.version}: the {name} root's threshold of"
                    f" {delegator.roles['root'].threshold} is not met with the keys found"
                    f" in {', '.join(str(d) for d in key_dirs)} ({exc})"
                ) from exc
        self._publish_root(md)
        return md

    def renew_root(self, root_key_dirs: Sequence[Path]) -> Metadata[Root]:
        """The same root, one version up, valid for another period (before it expires)."""
        previous = self.root().signed
        root = Root.from_dict(previous.to_dict())
        root.version += 1
        root.expires = self._expiry("root", None)
        return self.sign_root(root, root_key_dirs, previous=previous)

    def rotate_key(
        self,
        role: str,
        *,
        root_key_dirs: Sequence[Path],
        new_key_dir: Path,
        online_key_dir: Path,
        replace_keyid: str | None = None,
    ) -> SSlibKey:
        """Replace a key of `role` by a new one written to `new_key_dir`.

        For an online role every key of the role is replaced. For `root`, the key
        `replace_keyid` is replaced (the others stay); the new root is signed by the
        old and the new keys found. Then root's version goes up by one, and the roles
        that the change invalidates are signed again with their (new) keys.
        """
        if role not in ROLES:
            raise RepositoryToolError(f"role {role!r}: one of {', '.join(ROLES)}")
        previous = self.root().signed
        root = Root.from_dict(previous.to_dict())
        delegation = root.roles[role]
        if role == "root":
            if replace_keyid is None and len(delegation.keyids) == 1:
                replace_keyid = delegation.keyids[0]
            if replace_keyid not in delegation.keyids:
                raise RepositoryToolError(
                    f"root: say which key to replace (--replace), one of"
                    f" {', '.join(delegation.keyids)}"
                )
            old = [replace_keyid]
        else:
            old = list(delegation.keyids)
        new_key = generate_key(new_key_dir)
        threshold = delegation.threshold
        for keyid in old:
            root.revoke_key(keyid, role)
        root.add_key(new_key, role)
        root.roles[role] = Role(root.roles[role].keyids, threshold)
        root.version += 1
        root.expires = self._expiry("root", None)
        self.sign_root(root, [*root_key_dirs, new_key_dir], previous=previous)
        dirs = [new_key_dir, online_key_dir]
        if role == "targets":
            self.resign(dirs)
        elif role == "snapshot":
            self._publish(dirs, targets=None, snapshot=True)
        elif role == "timestamp":
            self.refresh_timestamp(dirs)
        return new_key

    def info(self) -> dict[str, Any]:
        """The roles' versions, expiries and keys, and the targets: for `repo show`."""
        root, targets = self.root(), self.targets()
        snap, ts = self.snapshot(), self.timestamp()
        return {
            "path": str(self.path),
            "roles": {
                md.signed.type: {
                    "version": md.signed.version,
                    "expires": md.signed.expires.isoformat(),
                    "keyids": root.signed.roles[md.signed.type].keyids,
                    "threshold": root.signed.roles[md.signed.type].threshold,
                }
                for md in (root, targets, snap, ts)
            },
            "targets": {
                name: {
                    "length": t.length,
                    "sha256": t.hashes["sha256"],
                    "custom": t.unrecognized_fields.get("custom"),
                }
                for name, t in sorted(targets.signed.targets.items())
            },
        }
