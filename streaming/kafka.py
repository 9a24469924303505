"""Thin confluent-kafka helpers: client configs we rely on, security, topic creation, bulk produce."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from models.errors import BrokerError
from streaming import local_broker

CONNECT_TIMEOUT_S = 20.0
# Errors that retrying with the same settings cannot cure: fail at start-up, saying which setting.
_FATAL_AT_CONNECT = {KafkaError._AUTHENTICATION: "authentication failed",
                     KafkaError.SASL_AUTHENTICATION_FAILED: "authentication failed",
                     KafkaError._SSL: "TLS handshake failed",
                     KafkaError.TOPIC_AUTHORIZATION_FAILED: "not authorised",
                     KafkaError.CLUSTER_AUTHORIZATION_FAILED: "not authorised"}


@dataclass(frozen=True)
class KafkaSecurity:
    """How to reach a secured cluster (SASL and/or TLS); PLAINTEXT by default. Secrets never show
    in repr, logs or readiness."""

    protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str = "SCRAM-SHA-512"  # SCRAM-SHA-256, SCRAM-SHA-512, PLAIN
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None  # a client certificate, where the cluster asks for one
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    def config(self) -> dict:
        """librdkafka properties (with the secrets: pass to clients only)."""
        out: dict = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            out.update({"sasl.mechanisms": self.sasl_mechanism, "sasl.username": self.sasl_username or "",
                        "sasl.password": self.sasl_password or ""})
        if self.protocol.endswith("SSL"):
            optional = {"ssl.ca.location": self.ssl_ca_location,
                        "ssl.certificate.location": self.ssl_certificate_location,
                        "ssl.key.location": self.ssl_key_location, "ssl.key.password": self.ssl_key_password}
            out.update({k: v for k, v in optional.items() if v})
        return out

    def describe(self) -> str:
        if not self.protocol.startswith("SASL"):
            return self.protocol
        return f"{self.protocol} as {self.sasl_username!r} ({self.sasl_mechanism})"


PLAINTEXT = KafkaSecurity()


def producer_config(bootstrap: str, security: KafkaSecurity = PLAINTEXT, **extra: object) -> dict:
    # Idempotence is off by default in librdkafka: switch it on explicitly (at-least-once without
    # duplicates from producer retries). linger batches small messages into requests.
    return {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "log.connection.close": False,
            "linger.ms": 5, "compression.type": "lz4", "message.max.bytes": 10_000_000,
            **security.config(), **extra}


def consumer_config(bootstrap: str, group: str, security: KafkaSecurity = PLAINTEXT,
                    **extra: object) -> dict:
    # Offsets are stored by hand only after results are written (at-least-once).
    return {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.offset.store": False,
            "log.connection.close": False,
            "enable.auto.commit": True, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 10_485_760,
            **security.config(), **extra}


def connect_admin(bootstrap: str, security: KafkaSecurity = PLAINTEXT,
                  timeout_s: float = CONNECT_TIMEOUT_S) -> AdminClient:
    """An admin client that has answered a metadata request, or BrokerError at once when the
    cluster refuses us (wrong password, untrusted certificate): librdkafka would otherwise retry
    quietly for ever."""
    refused: list[KafkaError] = []
    # quiet: what goes wrong is raised below, once, with what to do
    admin = AdminClient({"bootstrap.servers": bootstrap, **security.config(), "log_level": 0,
                         "error_cb": refused.append})
    deadline = time.monotonic() + timeout_s
    while True:
        admin.poll(0.2)  # serves the error callback
        fatal = [e for e in refused if e.code() in _FATAL_AT_CONNECT]
        if fatal:
            what = _FATAL_AT_CONNECT[fatal[0].code()]
            raise BrokerError(f"Kafka at {bootstrap} ({security.describe()}): {what}: {fatal[0].str()}. "
                              "Check the KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* settings.")
        try:
            if admin.list_topics(timeout=1).brokers:
                return admin
        except KafkaException:
            pass  # not answering yet, or refusing: the error callback says which
        if time.monotonic() > deadline:
            seen = f"; last error: {refused[-1].str()}" if refused else ""
            raise BrokerError(f"no answer from Kafka at {bootstrap} ({security.describe()}) within "
                              f"{timeout_s:.0f} s{seen}. Check KAFKA_BOOTSTRAP_SERVERS and the network.")


def create_topics(bootstrap: str, topics: Iterable[str], partitions: int = 4,
                  security: KafkaSecurity = PLAINTEXT) -> None:
    """Create topics that do not exist yet; existing ones are left alone."""
    admin = connect_admin(bootstrap, security)
    existing = set(admin.list_topics(timeout=10).topics)
    # replication -1: the cluster's default.replication.factor (3 on the local 3-node cluster)
    new = [NewTopic(t, num_partitions=partitions, replication_factor=-1)
           for t in topics if t not in existing]
    if not new:
        return
    for topic, future in admin.create_topics(new, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerError(f"could not create topic {topic!r}: {exc}") from None
    # created is not yet known everywhere: wait until the metadata lists them with every partition
    # led (a fresh cluster can list a topic before its partitions), so a consumer subscribing next
    # sees its partitions at once
    deadline = time.monotonic() + 30
    while not _all_led(admin.list_topics(timeout=10).topics, [t.topic for t in new], partitions):
        if time.monotonic() > deadline:
            raise BrokerError(f"topics {[t.topic for t in new]} were created but the metadata does not "
                              "list them after 30 s")
        time.sleep(0.1)


def _all_led(listed: dict, topics: list[str], partitions: int) -> bool:
    return all(name in listed and len(listed[name].partitions) == partitions
               and all(p.leader >= 0 for p in listed[name].partitions.values()) for name in topics)


def read_topic(bootstrap: str, topic: str, expect: int | None = None, quiet_s: float = 3.0,
               security: KafkaSecurity = PLAINTEXT) -> list:
    """Every message of a topic (a fresh group), until `expect` are read or nothing comes for
    `quiet_s` after the first (joining a group on a fresh broker takes seconds: 60 s for the first).
    For tests, benchmarks and an operator's look at the dead-letter topic."""
    from confluent_kafka import Consumer

    consumer = Consumer(consumer_config(bootstrap, f"reader-{uuid.uuid4().hex}", security, log_level=0))
    consumer.subscribe([topic])
    out: list = []
    last = time.monotonic()
    try:
        while (time.monotonic() - last < (quiet_s if out else 60.0)
               and (expect is None or len(out) < expect)):
            batch = [m for m in consumer.consume(5000, 0.5) if m.error() is None]
            if batch:
                out += batch
                last = time.monotonic()
    finally:
        consumer.close()
    return out


def produce(producer: Producer, topic: str, value: bytes, key: bytes | None = None, *,
            headers=None, on_delivery=None) -> None:
    """One message, waiting while the local queue is full (serving delivery reports meanwhile)
    rather than failing: backpressure. KafkaException (e.g. a message over `message.max.bytes`)
    propagates."""
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


def produce_all(bootstrap: str, topic: str, values: Iterable[bytes], *,
                key: bytes | None = None, progress=None, security: KafkaSecurity = PLAINTEXT) -> int:
    """Produce every value, flush, and raise BrokerError if any delivery failed. Returns the count."""
    producer = Producer(producer_config(bootstrap, security))
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    n = 0
    for value in values:
        produce(producer, topic, value, key, on_delivery=on_delivery)
        producer.poll(0)
        n += 1
        if progress is not None:
            progress(n)
    undelivered = producer.flush(60)
    producer.close()  # a producer left to the garbage collector keeps reconnecting
    if undelivered or failures:
        raise BrokerError(f"{len(failures)} of {n} messages to {topic!r} were not delivered: "
                          f"{failures[:3]}")
    return n


@contextmanager
def broker(bootstrap_servers: str | None, cache_dir: Path, partitions: int = 4) -> Iterator[str]:
    """Yield bootstrap servers: the configured cluster as is, else a local broker for the block's life."""
    if bootstrap_servers:
        yield bootstrap_servers
        return
    handle = local_broker.start(cache_dir, partitions=partitions)
    try:
        yield handle.bootstrap_servers
    finally:
        local_broker.stop(handle)
