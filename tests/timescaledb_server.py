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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from hemhub.embedded import ServerProcess

HARNESS = Path(__file__).resolve().parent / "timescaledb"


def harness_installed() -> bool:
    """Whether Node.js and the harness's npm packages are on this machine."""
    return shutil.which("node") is not None and (HARNESS / "node_modules").is_dir()


class PGliteTimescale(ServerProcess):
    """One PGlite TimescaleDB server of its own, in a child process, empty at start."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout: float = 60.0) -> str:
        # A short folder of its own: a Unix socket's path has room for about 100 bytes.
        self._dir = tempfile.TemporaryDirectory(prefix="hemhub-pglite-")
        folder = Path(self._dir.name)
        # libpq finds a server's Unix socket as <host folder>/.s.PGSQL.<port>.
        socket_path = folder / ".s.PGSQL.5432"
        logpath = folder / "serve.log"
        with logpath.open("wb") as log:
            self._proc = subprocess.Popen(
                ["node", str(HARNESS / "serve.mjs"), str(socket_path)],
                cwd=HARNESS,
                stdin=subprocess.PIPE,  # closed when this process ends: the server then stops
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Ready once it says so (after listen() and a first query): the socket's file
        # appears at bind(), a moment before connections are accepted.
        self._wait_until(
            lambda: b"ready on " in logpath.read_bytes(),
            "PGlite TimescaleDB server",
            logpath,
            timeout,
        )
        # PGlite asks for a password and accepts any.
        return f"postgresql://postgres:pglite@/postgres?host={folder}&port=5432"

    def stop(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
        super().stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class PGliteSupply:
    """Fresh PGlite TimescaleDB servers, the next one started ahead in the background.

    Starting one (Node.js, PGlite's WebAssembly, the extension) takes seconds of mostly one
    core; the tests that use them mostly wait on I/O. `take()` hands out the server started
    ahead (waiting for it if need be) and starts the next while the taker's test runs. Each
    server is still a test's own, empty until that test connects.
    """

    #: A start ahead shares the cores with the test running meanwhile: it gets longer
    #: than PGliteTimescale's own 60 s before it counts as failed.
    START_TIMEOUT_S = 180.0

    def __init__(self) -> None:
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="pglite-start")
        self._next: Future[tuple[PGliteTimescale, str]] | None = None

    @classmethod
    def _start(cls) -> tuple[PGliteTimescale, str]:
        server = PGliteTimescale()
        return server, server.start(timeout=cls.START_TIMEOUT_S)

    def take(self) -> tuple[PGliteTimescale, str]:
        """A started server and its URL; the caller stops it."""
        ready = self._next if self._next is not None else self._starter.submit(self._start)
        self._next = self._starter.submit(self._start)
        return ready.result()

    def close(self) -> None:
        """Stop the server started ahead (unused)."""
        if self._next is not None and not self._next.cancel():
            try:
                server, _ = self._next.result()
            except (RuntimeError, OSError):
                pass  # it did not start: nothing to stop
            else:
                server.stop()
        self._starter.shutdown(wait=True)
