"""The hub's verified fetch: nothing reaches the installer unless TUF verified it.

`fetch_verified` runs python-tuf's client (`tuf.ngclient.Updater`) against the update
repository (edge_image/repository.py): it walks the root chain from the root the hub
trusts (`metadata_dir/root.json`, put there by the image), then timestamp, snapshot and
targets, each checked for signatures and thresholds, versions and expiry, and only then
downloads the target and checks its length and hash. Whatever fails becomes
`UpdateRefused` with a short reason for the hub's status:

    unsigned       metadata without the threshold of valid signatures of its role
    altered        a file whose length or hash differs from what the metadata signed
    expired        root, snapshot or targets metadata past its expiry
    freeze         the timestamp is past its expiry: a mirror or attacker keeps serving
                   an old one, hiding newer releases
    rollback       metadata older than what the hub already trusts; or a target whose
                   signed version is older than `installed_version` (a downgrade that
                   the caller did not allow)
    mix_and_match  metadata of another release than the one the timestamp/snapshot names
    not_found      no such target in the signed targets
    untrusted      the hub has no trusted root.json
    unreachable    the repository could not be read (network, HTTP error)
    invalid        any other metadata the client rejects

The trusted metadata in `metadata_dir` moves forward only after verification, so a
restarted hub keeps its rollback protection; a file already verified in `dest_dir` is
not downloaded again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from packaging.version import InvalidVersion, Version
from tuf.api import exceptions
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

#: Called with (bytes received, bytes expected) while the target downloads.
Progress = Callable[[int, int], None]

_MIX_AND_MATCH = (
    re.compile(r"^Expected snapshot version"),  # timestamp names another snapshot
    re.compile(r"^Expected [\w.-]+ v\d+, got v\d+"),  # snapshot names another targets
    re.compile(r"^Expected root version"),  # N.root.json holding another version
)


class UpdateRefused(Exception):
    """An update the hub will not install; `reason` is the short code for the status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def refusal(exc: BaseException) -> UpdateRefused:
    """The reason code of a python-tuf client error (see the module's docstring)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, exceptions.UnsignedMetadataError):
        return UpdateRefused("unsigned", message)
    if isinstance(
        exc, exceptions.LengthOrHashMismatchError | exceptions.DownloadLengthMismatchError
    ):
        return UpdateRefused("altered", message)
    if isinstance(exc, exceptions.ExpiredMetadataError):
        if message.startswith("timestamp.json"):
            return UpdateRefused("freeze", message)
        return UpdateRefused("expired", message)
    if isinstance(exc, exceptions.BadVersionNumberError):
        if any(p.match(message) for p in _MIX_AND_MATCH):
            return UpdateRefused("mix_and_match", message)
        return UpdateRefused("rollback", message)
    if isinstance(exc, exceptions.DownloadError):
        return UpdateRefused("unreachable", message)
    return UpdateRefused("invalid", message)


class _WatchedFetcher(Urllib3Fetcher):
    """The default fetcher, telling `progress` how far the download of one URL is."""

    def __init__(self) -> None:
        super().__init__(app_user_agent="hemhub-hub")
        self.watch: tuple[str, int, Progress] | None = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = super()._fetch(url)
        if self.watch is None or self.watch[0] != url:
            return chunks
        _, total, progress = self.watch
        return self._counted(chunks, total, progress)

    @staticmethod
    def _counted(chunks: Iterator[bytes], total: int, progress: Progress) -> Iterator[bytes]:
        received = 0
        progress(0, total)
        for chunk in chunks:
            received += len(chunk)
            progress(min(received, total), total)
            yield chunk


def _check_downgrade(info: TargetFile, installed: str) -> None:
    """Refuse a target whose signed `custom.version` is older than `installed`."""
    custom = info.unrecognized_fields.get("custom")
    signed = custom.get("version") if isinstance(custom, dict) else None
    if not isinstance(signed, str):
        raise UpdateRefused("invalid", f"{info.path} carries no signed version")
    try:
        older = Version(signed) < Version(installed)
    except InvalidVersion as exc:
        raise UpdateRefused("invalid", f"{info.path}: {exc}") from exc
    if older:
        raise UpdateRefused(
            "rollback", f"{info.path} is version {signed}, older than the installed {installed}"
        )


def fetch_verified(
    repo_url: str,
    metadata_dir: Path,
    target_name: str,
    dest_dir: Path,
    *,
    progress: Progress | None = None,
    installed_version: str | None = None,
    targets_url: str | None = None,
) -> Path:
    """Verify the repository's metadata, then download `target_name` to `dest_dir`.

    `repo_url` is the repository's base (its `metadata/` and `targets/` below it);
    `targets_url`, when given, is where the target files are instead (a CDN).
    `progress(received, total)` follows the download. With `installed_version`, a target
    whose signed version (custom `version`) is older is refused as `rollback`: pass it
    unless going back is what was asked for (a rollback campaign).
    Returns the verified file's path; raises UpdateRefused with the reason.
    """
    if not (metadata_dir / "root.json").is_file():
        raise UpdateRefused("untrusted", f"no trusted root.json in {metadata_dir}")
    if "/" in target_name or target_name.startswith("."):
        raise UpdateRefused("not_found", f"target {target_name!r}: not a plain file name")
    base = repo_url.rstrip("/")
    targets_base = (targets_url or f"{base}/targets").rstrip("/")
    fetcher = _WatchedFetcher()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / target_name
    try:
        updater = Updater(
            metadata_dir=str(metadata_dir),
            metadata_base_url=f"{base}/metadata/",
            target_base_url=f"{targets_base}/",
            target_dir=str(dest_dir),
            fetcher=fetcher,
            bootstrap=None,
        )
        updater.refresh()
        info = updater.get_targetinfo(target_name)
        if info is None:
            raise UpdateRefused("not_found", f"{target_name} is not a signed target")
        if installed_version is not None:
            _check_downgrade(info, installed_version)
        if updater.find_cached_target(info, str(dest)) is not None:
            if progress is not None:
                progress(info.length, info.length)
            return dest
        sha256 = info.hashes.get("sha256")
        if progress is not None and sha256:
            fetcher.watch = (f"{targets_base}/{sha256}.{target_name}", info.length, progress)
        partial = dest_dir / f".{target_name}.partial"
        updater.download_target(info, str(partial))
        partial.replace(dest)
        return dest
    except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
        raise refusal(exc) from exc
