"""Fixtures of the ingest tests: a migrated database of the test's own, a publisher."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ingest.migrations import Partitioning, migrate, partitioning_in_use
from tests.ingest.test_worker import Publisher

#: Runs a test that takes `conn` once on each partitioning of `readings`: native range
#: partitions, and a TimescaleDB hypertable (the `timescaledb_url` fixture's server).
on_both_partitionings = pytest.mark.parametrize("conn", ["native", "timescaledb"], indirect=True)


@pytest.fixture
def conn(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's database, migrated. Parametrized (see
    `on_both_partitionings`), its readings use the partitioning the parameter names;
    otherwise whichever migrate() chooses on the test server."""
    mode: Partitioning | None = getattr(request, "param", None)
    if mode == "timescaledb":
        url: str = request.getfixturevalue("timescaledb_url")
    else:
        url = request.getfixturevalue("database_url")
    report = migrate(url, partitioning=mode)
    with psycopg.connect(url, autocommit=True) as c:
        if mode is not None:
            assert report.partitioning == partitioning_in_use(c) == mode
        yield c


@pytest.fixture
def db(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The same connection, under the name the worker and fault tests use."""
    return conn


@pytest.fixture
def publisher(mqtt_url: str) -> Iterator[Publisher]:
    """A hub stand-in on the test broker (QoS 1, each publish waited for)."""
    p = Publisher(mqtt_url)
    yield p
    p.close()
