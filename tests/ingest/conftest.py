"""Fixtures of the ingest tests: a migrated database of the test's own, a publisher."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ingest.migrations import migrate
from tests.ingest.test_worker import Publisher


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's database, migrated."""
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as c:
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
