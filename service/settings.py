"""The one settings object, read from the environment with the prefix ALERT_CLASSIFIER_
(e.g. ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS).

Nothing else reads the environment, and nothing reads it at import time: call `Settings()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streaming.decode import SchemaVersion
from streaming.kafka import KafkaSecurity

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALERT_CLASSIFIER_", env_file=".env", extra="ignore")

    # Kafka: empty bootstrap servers means "start the project's own local broker".
    kafka_bootstrap_servers: str | None = Field(
        None, description="Existing Kafka cluster (host:port,...). Unset: start a local broker.")
    kafka_cache_dir: Path = Field(Path.home() / ".cache" / "alert-classifier" / "kafka",
                                  description="Where the broker jars and local broker data live.")
    kafka_partitions: int = Field(4, ge=1, description="Partitions of topics the local broker creates.")
    # Security of the alert cluster (Rubin's stream: SASL_SSL with SCRAM-SHA-512 credentials).
    kafka_security_protocol: Protocol = "PLAINTEXT"
    kafka_sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = Field(None, description="CA certificate(s) (PEM) to trust; "
                                               "unset: the system's.")
    kafka_ssl_certificate_location: Path | None = Field(None, description="Client certificate (PEM), if "
                                                        "the cluster asks for one.")
    kafka_ssl_key_location: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts: the oldest alert kept, or new ones only.")
    # Results and dead letters may go to another cluster (a broker's own): each unset value is the
    # alert cluster's.
    output_kafka_bootstrap_servers: str | None = None
    output_kafka_security_protocol: Protocol | None = None
    output_kafka_sasl_mechanism: Mechanism | None = None
    output_kafka_sasl_username: str | None = None
    output_kafka_sasl_password: SecretStr | None = None
    output_kafka_ssl_ca_location: Path | None = None
    output_kafka_ssl_certificate_location: Path | None = None
    output_kafka_ssl_key_location: Path | None = None
    output_kafka_ssl_key_password: SecretStr | None = None
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
    feature_threads: int = Field(2, ge=1, le=64, description="Threads of each worker's light-curve "
                                 "feature extractors (they fill a core the worker's other stages leave "
                                 "idle; the rest of a worker is one thread). 1 when every core is busy.")
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
    def retrained_models_dir(self) -> Path:
        """Where `alert-classifier anomaly retrain` writes new model versions; the registry loads
        them beside the shipped ones (the newest version of each model wins)."""
        return self.data_dir / "models"

    @property
    def store_location(self) -> str:
        return self.store_dsn or str(self.data_dir / "classifications.sqlite3")

    def input_security(self) -> KafkaSecurity:
        return self._security("kafka_")

    def output_security(self) -> KafkaSecurity:
        return self._security("output_kafka_", fallback=self.input_security())

    def output_bootstrap(self, input_bootstrap: str) -> str:
        return self.output_kafka_bootstrap_servers or input_bootstrap

    def _security(self, prefix: str, fallback: KafkaSecurity | None = None) -> KafkaSecurity:
        def value(name: str):
            v = getattr(self, prefix + name)
            if v is None:
                return getattr(fallback, name.removeprefix("security_")) if fallback else None
            return v.get_secret_value() if isinstance(v, SecretStr) else str(v) if isinstance(v, Path) else v

        names = ("sasl_username", "sasl_password", "ssl_ca_location", "ssl_certificate_location",
                 "ssl_key_location", "ssl_key_password")
        return KafkaSecurity(protocol=value("security_protocol") or "PLAINTEXT",
                             sasl_mechanism=value("sasl_mechanism") or "SCRAM-SHA-512",
                             **{n: value(n) for n in names})

    @property
    def default_version(self) -> SchemaVersion | None:
        return SchemaVersion.parse(self.default_schema_version) if self.default_schema_version else None
