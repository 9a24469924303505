"""The one settings object, read from the environment with the prefix ALERT_CLASSIFIER_
(e.g. ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS).

Nothing else reads the environment, and nothing reads it at import time: call `Settings()`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streaming.decode import SchemaVersion


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALERT_CLASSIFIER_", env_file=".env", extra="ignore")

    # Kafka: empty bootstrap servers means "start the project's own local broker".
    kafka_bootstrap_servers: str | None = Field(
        None, description="Existing Kafka cluster (host:port,...). Unset: start a local broker.")
    kafka_cache_dir: Path = Field(Path.home() / ".cache" / "alert-classifier" / "kafka",
                                  description="Where the broker jars and local broker data live.")
    kafka_partitions: int = Field(4, ge=1, description="Partitions of topics the local broker creates.")
    alert_topic: str = "rubin-alerts"
    output_topic: str = "alert-classifications"
    dead_letter_topic: str = "rubin-alerts-dlq"
    consumer_group: str = "alert-classifier"

    # Decoding
    default_schema_version: str | None = Field(
        None, description="Schema of unframed Avro packets, e.g. '7.0'. Unset: unframed is an error.")
    schema_registry_url: str | None = Field(
        None, description="Optional Confluent schema registry for ids lsst-alert-packet does not ship.")

    # Worker
    batch_size: int = Field(500, ge=1, le=10000, description="Messages per consumed batch.")
    output_format: str = Field("avro", pattern="^(avro|json)$",
                               description="Output topic encoding: brokerClassification Avro or JSON.")

    stall_after_s: float = Field(60.0, gt=0, description="A batch retried (store, broker or schema "
                                 "registry unreachable) for longer than this marks the worker stalled: "
                                 "/readyz answers 503 and alert_classifier_worker_stalled_seconds rises.")
    max_concurrent_classify: int = Field(2, ge=1, description="Classify requests worked on at once, off "
                                         "the event loop; more get 503 with Retry-After.")

    keep_history: bool = Field(True, description="Keep every detection per object and classify alerts on "
                                                 "their whole history, not only the 12 months an alert "
                                                 "carries (RR Lyrae need years).")

    # Store: empty means SQLite in data_dir; postgresql://... for PostgreSQL.
    store_dsn: str | None = Field(None, description="PostgreSQL DSN, or a SQLite file path. "
                                                    "Unset: <data_dir>/classifications.sqlite3.")

    # HTTP API
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, description="If set, writes (classify?store=true) need X-API-Key.")
    max_body_bytes: int = Field(32_000_000, ge=1024,
                                description="Largest accepted request body (100 JSON alerts with 30-point "
                                            "histories are ~8 MB).")
    metrics_port: int | None = Field(None, ge=1, le=65535,
                                     description="`worker` only: serve Prometheus /metrics on this port.")
    max_batch_alerts: int = Field(1000, ge=1, description="Most alerts in one JSON classify request.")

    data_dir: Path = Field(Path("var"), description="Local data directory (SQLite store, state).")
    training_data_dir: Path = Field(Path("../shared/data"),
                                    description="Labelled datasets for `alert-classifier train`.")

    @field_validator("default_schema_version")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        if value is not None:
            SchemaVersion.parse(value)
        return value

    @property
    def store_location(self) -> str:
        return self.store_dsn or str(self.data_dir / "classifications.sqlite3")

    @property
    def default_version(self) -> SchemaVersion | None:
        return SchemaVersion.parse(self.default_schema_version) if self.default_schema_version else None
