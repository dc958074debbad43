"""Dropping the tests' databases off the tests' path.

DROP DATABASE makes the server run a checkpoint and waits for it: a fraction of a second
on a quiet server, many seconds on one that other test runs keep busy. No test waits for
its database to go: the drops run in threads of their own while the next tests run, a
bounded number queued at a time, and the session fails at its end if one did not succeed.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg


class DatabaseDropper:
    """Drops databases of `server_url` in the background; `close()` waits for them all."""

    #: Drops under way at once: concurrent drops share the server's checkpoints.
    THREADS = 4
    #: Databases queued for dropping at most; a test's teardown waits beyond that.
    MAX_PENDING = 32

    def __init__(self, server_url: str) -> None:
        self._server_url = server_url
        self._pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="drop-database")
        self._pending = threading.BoundedSemaphore(self.MAX_PENDING)
        self._futures: list[Future[None]] = []

    def _drop(self, name: str) -> None:
        try:
            with psycopg.connect(self._server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            raise RuntimeError(f"{name}: {exc}") from exc
        finally:
            self._pending.release()

    def drop(self, name: str) -> None:
        self._pending.acquire()
        self._futures.append(self._pool.submit(self._drop, name))

    def close(self) -> None:
        """Wait for every drop; raise if any failed (naming the databases left behind)."""
        self._pool.shutdown(wait=True)
        failed = [f.exception() for f in self._futures if f.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} test database(s) not dropped: {failed}")
