"""TimescaleDB for the storage tests where the PostgreSQL server lacks the extension.

Neither Debian's packages nor PyPI carry TimescaleDB, so on such a machine the tests run
the hypertable path against PGlite (PostgreSQL 17 compiled to WebAssembly) built with
TimescaleDB 2.23, served over the PostgreSQL wire protocol on a Unix socket by
`tests/timescaledb/serve.mjs` under Node.js. It is the extension's own code: hypertables,
chunks, compression, policies and `run_job` behave as on a server; what it lacks is the
background scheduler (policies run only when a test calls `run_job`) and concurrency (one
connection at a time: a second one waits until the first closes).

`npm ci --prefix tests/timescaledb` installs it (`.ci/run` does where npm exists).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HARNESS = Path(__file__).resolve().parent / "timescaledb"


def harness_installed() -> bool:
    """Whether Node.js and the harness's npm packages are on this machine."""
    return shutil.which("node") is not None and (HARNESS / "node_modules").is_dir()


class PGliteTimescale:
    """One PGlite TimescaleDB server of its own, in a child process, empty at start."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="hemhub-pglite-")
        folder = Path(self._dir.name)
        # libpq finds a server's Unix socket as <host folder>/.s.PGSQL.<port>.
        socket_path = folder / ".s.PGSQL.5432"
        with (folder / "serve.log").open("wb") as log:
            self._proc = subprocess.Popen(
                ["node", str(HARNESS / "serve.mjs"), str(socket_path)],
                cwd=HARNESS,
                stdin=subprocess.PIPE,  # closed when this process ends: the server then stops
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not socket_path.exists():
            if self._proc.poll() is not None:
                output = (folder / "serve.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"PGlite TimescaleDB server exited:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("PGlite TimescaleDB server did not start in time")
            time.sleep(0.05)
        # PGlite asks for a password and accepts any.
        return f"postgresql://postgres:pglite@/postgres?host={folder}&port=5432"

    def stop(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
