"""The hub software bundle: one tar archive a hub installs into a slot.

`hemhub-hub-<version>.tar` holds

    manifest.json           {"format": 1, "version", "python", "created_at", "wheels",
                             "units", "config_migrations"}
    wheels/*.whl            the hemhub wheel and its locked dependencies
    units/*                 the systemd units
    config_migrations/*.py  configuration migrations, applied in name order

The archive is reproducible: the same inputs and the same `created_at` give the same
bytes (members sorted, every mtime `created_at`, owner root, modes 0644/0755, no
compression). It is not signed itself: the TUF repository signs its length and hashes
(edge_image/repository.py), and the hub installs only what TUF verified
(gateway/update/fetch.py). `read_manifest` checks the archive against its manifest; the
manifest itself is parsed by edge_image/bundle_format.py, which the hub's slot installer
shares.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from edge_image.bundle_format import (
    CONFIG_MIGRATIONS,
    FORMAT,
    MANIFEST,
    MEMBER_RE,
    PYTHON,
    UNITS,
    WHEELS,
    BundleError,
    Manifest,
    check_version,
    parse_manifest,
)

__all__ = [
    "FORMAT",
    "PYTHON",
    "BundleError",
    "Manifest",
    "build_bundle",
    "bundle_name",
    "check_version",
    "read_manifest",
]


def bundle_name(version: str) -> str:
    """The bundle's file name, which is also its TUF target name."""
    check_version(version)
    return f"hemhub-hub-{version}.tar"


def _files(kind: str, paths: Iterable[Path], suffix: str | None) -> list[Path]:
    files = sorted(paths, key=lambda p: p.name)
    names = [p.name for p in files]
    for path in files:
        if not path.is_file():
            raise BundleError(f"{kind}: {path} is not a file")
        if not MEMBER_RE.match(path.name):
            raise BundleError(f"{kind}: {path.name!r} is not a plain file name")
        if suffix and not path.name.endswith(suffix):
            raise BundleError(f"{kind}: {path.name} does not end in {suffix}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BundleError(f"{kind}: the same name twice: {', '.join(duplicates)}")
    return files


def _member(name: str, size: int, mtime: int, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_bundle(
    version: str,
    out_dir: Path,
    *,
    wheels: Sequence[Path],
    units: Sequence[Path] = (),
    config_migrations: Sequence[Path] = (),
    created_at: datetime | None = None,
) -> Path:
    """Write `out_dir/hemhub-hub-<version>.tar` and return its path.

    `created_at` (default: now) is the manifest's time and every member's mtime: give
    the same one (SOURCE_DATE_EPOCH) to get the same bytes from the same inputs.
    """
    name = bundle_name(version)
    wheel_files = _files("wheels", wheels, ".whl")
    if not wheel_files:
        raise BundleError("wheels: a bundle needs at least the hemhub wheel")
    unit_files = _files("units", units, None)
    migration_files = _files("config_migrations", config_migrations, ".py")
    at = (created_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    manifest = Manifest(
        version=version,
        created_at=at,
        wheels=tuple(p.name for p in wheel_files),
        units=tuple(p.name for p in unit_files),
        config_migrations=tuple(p.name for p in migration_files),
    )
    mtime = int(at.timestamp())
    members: list[tuple[str, Path]] = [
        *((f"{WHEELS}/{p.name}", p) for p in wheel_files),
        *((f"{UNITS}/{p.name}", p) for p in unit_files),
        *((f"{CONFIG_MIGRATIONS}/{p.name}", p) for p in migration_files),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    partial = out_dir / f".{name}.partial"
    manifest_bytes = (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode()
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(MANIFEST, len(manifest_bytes), mtime), io.BytesIO(manifest_bytes))
        for directory in (WHEELS, UNITS, CONFIG_MIGRATIONS):
            info = _member(directory, 0, mtime, 0o755)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for arcname, path in sorted(members):
            data = path.read_bytes()
            tar.addfile(_member(arcname, len(data), mtime), io.BytesIO(data))
    partial.replace(target)
    return target


def read_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest, after checking that the archive holds what it lists.

    Refused (BundleError): not a tar, no manifest, a member outside the three folders or
    not listed, a listed file missing, links or devices.
    """
    try:
        tar = tarfile.open(bundle, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{bundle.name} is not a tar archive: {exc}") from exc
    with tar:
        files: set[str] = set()
        raw: bytes | None = None
        for info in tar.getmembers():
            path = PurePosixPath(info.name)
            if info.isdir() and info.name in (WHEELS, UNITS, CONFIG_MIGRATIONS):
                continue
            if not info.isfile():
                raise BundleError(f"{bundle.name}: {info.name} is not a regular file")
            if info.name == MANIFEST:
                extracted = tar.extractfile(info)
                raw = extracted.read() if extracted else b""
                continue
            if len(path.parts) != 2 or path.parts[0] not in (WHEELS, UNITS, CONFIG_MIGRATIONS):
                raise BundleError(f"{bundle.name}: unexpected member {info.name}")
            files.add(info.name)
    if raw is None:
        raise BundleError(f"{bundle.name}: no manifest.json")
    manifest = parse_manifest(raw)
    listed = {
        *(f"{WHEELS}/{n}" for n in manifest.wheels),
        *(f"{UNITS}/{n}" for n in manifest.units),
        *(f"{CONFIG_MIGRATIONS}/{n}" for n in manifest.config_migrations),
    }
    if missing := sorted(listed - files):
        raise BundleError(f"{bundle.name}: listed but missing: {', '.join(missing)}")
    if extra := sorted(files - listed):
        raise BundleError(f"{bundle.name}: not in the manifest: {', '.join(extra)}")
    return manifest
