"""Shared fixtures: one real Kafka broker per test session, the project's own script starts it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from streaming.decode import Decoder
from streaming.kafka import broker

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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

