"""Fixtures of the API tests: a migrated database, the app with its lifespan, seeded tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hemhub.settings import Settings
from ingest.migrations import MigrationReport, migrate
from tests.api.helpers import Seed, api_client, make_settings, seed_database


@pytest.fixture
def migration(database_url: str) -> MigrationReport:
    return migrate(database_url)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, migration: MigrationReport) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as c:
        yield c


@pytest.fixture
def seed(database_url: str, migration: MigrationReport) -> Seed:
    return seed_database(database_url)
