"""Test helpers for over-the-air updates: a tiny wheel, a signed repository, a real
HTTP server in front of it (the hubs' side reads it like any web server)."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edge_image.bundle import build_bundle
from edge_image.repository import Expiries, Repository

CREATED_AT = datetime(2026, 12, 1, tzinfo=UTC)


def make_wheel(directory: Path, name: str = "hemhub_standin", version: str = "1.0") -> Path:
    """A small installable wheel: one module `name` with `VERSION = version`."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: hemhub-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, (2026, 12, 1, 0, 0, 0)), data)
    return wheel


def make_bundle(directory: Path, version: str, *, padding: int = 0) -> Path:
    """A bundle of `version` holding a stand-in wheel of the same version; `padding`
    bytes of comments in a configuration migration make it larger (a slow download)."""
    wheel = make_wheel(directory / f"wheels-{version}", version=version)
    unit = directory / f"units-{version}" / "hemhub-gateway.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    migrations = []
    if padding:
        migration = directory / f"migrations-{version}" / "0001_padding.py"
        migration.parent.mkdir(parents=True, exist_ok=True)
        migration.write_text("# padding\n" * (padding // 10 + 1))
        migrations.append(migration)
    return build_bundle(
        version,
        directory / "out",
        wheels=[wheel],
        units=[unit],
        config_migrations=migrations,
        created_at=CREATED_AT,
    )


@dataclass
class SignedRepo:
    """A repository with its keys: `root_keys` offline, `online_keys` for the rest."""

    repo: Repository
    root_keys: list[Path]
    online_keys: Path
    work: Path

    def add_bundle(self, version: str, *, padding: int = 0) -> str:
        bundle = make_bundle(self.work, version, padding=padding)
        info = self.repo.add_target(
            bundle, [self.online_keys], custom={"kind": "hub-software", "version": version}
        )
        return info.path

    def trusted_metadata(self, hub_dir: Path) -> Path:
        """A hub's metadata directory holding the repository's current root.json."""
        hub_dir.mkdir(parents=True, exist_ok=True)
        (hub_dir / "root.json").write_bytes((self.repo.metadata_dir / "root.json").read_bytes())
        return hub_dir


def signed_repo(
    tmp: Path,
    *,
    root_custodians: int = 1,
    root_threshold: int = 1,
    expiries: Expiries | None = None,
) -> SignedRepo:
    keys = tmp / "keys"
    root_keys = [keys / f"root-{i + 1}" for i in range(root_custodians)]
    repo = Repository.init(
        tmp / "repo",
        root_key_dirs=root_keys,
        online_key_dir=keys / "online",
        root_threshold=root_threshold,
        expiries=expiries,
    )
    return SignedRepo(repo, root_keys, keys / "online", tmp / "work")


class _QuietHandler(SimpleHTTPRequestHandler):
    #: While set, files under targets/ go out slowly (4 KiB every 50 ms: 80 KiB/s).
    slow: threading.Event | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if self.slow is None or not self.path.startswith("/targets/"):
            super().copyfile(source, outputfile)
            return
        while chunk := source.read(4096):
            outputfile.write(chunk)
            outputfile.flush()
            if self.slow.is_set():
                time.sleep(0.05)


@contextmanager
def http_server(directory: Path, *, slow: threading.Event | None = None) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving `directory`; yields its base URL. While
    `slow` is set, target files are served at 80 KiB/s."""
    handler = type("Handler", (_QuietHandler,), {"slow": slow})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
