"""Output and dead-letter topics: brokerClassification records (Avro or JSON) and raw bad packets."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cavro
import fastavro
import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from models.errors import BrokerError, OutputRejected
from streaming.kafka import PLAINTEXT, KafkaSecurity, produce, producer_config
from streaming.records import ClassificationRecord, DeadLetter

SCHEMA_PATH = Path(__file__).with_name("schemas") / "brokerClassification.avsc"
BROKER_NAME = "alert-classifier"
# Delivery errors that retrying the same record cannot cure: the record is dead-lettered instead.
PERMANENT_ERRORS = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE,
                    KafkaError.INVALID_RECORD, KafkaError._INVALID_ARG}


@cache
def classification_schema() -> dict:
    return fastavro.parse_schema(json.loads(SCHEMA_PATH.read_text()))


def broker_classification(record: ClassificationRecord, broker_version: str) -> dict:
    return {"alertId": record.alert_id, "diaSourceId": record.dia_source_id,
            "elasticcPublishTimestamp": record.alert_timestamp_ms,
            "brokerIngestTimestamp": record.ingest_timestamp_ms,
            "brokerName": BROKER_NAME, "brokerVersion": broker_version,
            "classifierName": record.classifier,
            "classifierParams": _params(record),
            "classifications": record.classifications}


def _params(record: ClassificationRecord) -> str:
    """ELAsTiCC's schema has no class for an anomaly score: its record carries no classifications
    and the score here, `version=1.0.0; score=0.997`."""
    params = f"version={record.version}"
    if record.is_anomaly and record.score is not None:
        params += f"; score={record.score:.6f}"
    return params + (f"; declined: {record.reason}" if record.reason else "")


@cache
def _classification_writer() -> cavro.Schema:
    # cavro writes the bytes fastavro writes, ~2x faster: it runs for every result on the hot path
    return cavro.Schema(json.loads(SCHEMA_PATH.read_text()), parse_json=False)


def encode_classification(record: ClassificationRecord, broker_version: str, fmt: str = "avro") -> bytes:
    body = broker_classification(record, broker_version)
    if fmt == "json":
        return orjson.dumps(body)
    return _classification_writer().binary_encode(body)


def decode_classification(data: bytes) -> dict:
    return fastavro.schemaless_reader(io.BytesIO(data), classification_schema(), None)


def dead_letter_headers(dl: DeadLetter) -> list[tuple[str, bytes]]:
    headers = [("reason", dl.reason.encode()), ("error", dl.error.encode()[:2000]),
               ("source_topic", dl.message.topic.encode()),
               ("source_partition", str(dl.message.partition).encode()),
               ("source_offset", str(dl.message.offset).encode())]
    if dl.schema_id is not None:
        headers.append(("schema_id", str(dl.schema_id).encode()))
    return headers


class Publisher:
    """An idempotent producer for the output and dead-letter topics. `flush()` raises unless every
    message of the batch was acknowledged, so offsets are stored only after delivery: BrokerError
    (transient: retried) or OutputRejected (a record the cluster refuses for good)."""

    def __init__(self, bootstrap: str, output_topic: str, dead_letter_topic: str, *,
                 broker_version: str, fmt: str = "avro", security: KafkaSecurity = PLAINTEXT,
                 **config: object) -> None:
        self.producer = Producer(producer_config(bootstrap, security, **config))
        self.output_topic, self.dead_letter_topic = output_topic, dead_letter_topic
        self.broker_version, self.fmt = broker_version, fmt
        self._errors: list[KafkaError] = []

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self._errors.append(err)

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers=None) -> None:
        try:
            produce(self.producer, topic, value, key, headers=headers, on_delivery=self._on_delivery)
        except KafkaException as exc:  # refused before sending, e.g. larger than message.max.bytes
            self._errors.append(exc.args[0])

    def publish(self, records: Sequence[ClassificationRecord], dead_letters: Sequence[DeadLetter]) -> None:
        for r in records:
            key = str(r.dia_object_id if r.dia_object_id is not None else r.dia_source_id).encode()
            self._produce(self.output_topic, encode_classification(r, self.broker_version, self.fmt), key)
        for dl in dead_letters:
            # the raw bytes, unchanged
            self._produce(self.dead_letter_topic, dl.message.value, None, dead_letter_headers(dl))
        self.producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self.producer.flush(timeout_s)
        errors, self._errors = self._errors, []
        permanent = [e for e in errors if e.code() in PERMANENT_ERRORS]
        if permanent:
            raise OutputRejected(f"{len(permanent)} record(s) refused by the cluster: {permanent[0].str()}")
        if remaining or errors:
            raise BrokerError(f"{remaining} messages undelivered after {timeout_s:.0f} s, "
                              f"{len(errors)} delivery errors: {[e.str() for e in errors[:3]]}")
