"""Shared fixtures: one real Kafka broker per test session, the project's own script starts it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from service.store import Store
from streaming.decode import Decoder
from streaming.kafka import broker

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POSTGRES_DSN = os.environ.get("ALERT_CLASSIFIER_TEST_POSTGRES_DSN")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Iterator[Store]:
    """The real store on SQLite and, where CI gives a DSN, on PostgreSQL (a fresh schema per test)."""
    if request.param == "sqlite":
        s = Store(tmp_path / "store.sqlite3")
    else:
        if not POSTGRES_DSN:
            pytest.skip("no PostgreSQL: set ALERT_CLASSIFIER_TEST_POSTGRES_DSN (.ci/run starts one)")
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in POSTGRES_DSN else "?"
        s = Store(f"{POSTGRES_DSN}{sep}options=-csearch_path%3D{schema}")
    yield s
    s.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings) -> Iterator[str]:
    """A real broker: ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS if set, else a local one we start."""
    with broker(settings.kafka_bootstrap_servers, settings.kafka_cache_dir) as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def decoder() -> Decoder:
    return Decoder()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (only in the project's CI and dev machines)")
    return SHARED_DATA

