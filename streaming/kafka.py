"""Thin confluent-kafka helpers: client configs we rely on, topic creation, bulk produce."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from models.errors import BrokerError
from streaming import local_broker


def producer_config(bootstrap: str, **extra: object) -> dict:
    # Idempotence is off by default in librdkafka: switch it on explicitly (at-least-once without
    # duplicates from producer retries). linger batches small messages into requests.
    return {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "log.connection.close": False,
            "linger.ms": 5, "compression.type": "lz4", "message.max.bytes": 10_000_000, **extra}


def consumer_config(bootstrap: str, group: str, **extra: object) -> dict:
    # Offsets are stored by hand only after results are written (at-least-once).
    return {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.offset.store": False,
            "log.connection.close": False,
            "enable.auto.commit": True, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 10_485_760, **extra}


def create_topics(bootstrap: str, topics: Iterable[str], partitions: int = 4) -> None:
    """Create topics that do not exist yet; existing ones are left alone."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1)
           for t in topics if t not in existing]
    if not new:
        return
    for topic, future in admin.create_topics(new, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerError(f"could not create topic {topic!r}: {exc}") from None


def produce_all(bootstrap: str, topic: str, values: Iterable[bytes], *,
                key: bytes | None = None, progress=None) -> int:
    """Produce every value, flush, and raise BrokerError if any delivery failed. Returns the count."""
    producer = Producer(producer_config(bootstrap))
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    n = 0
    for value in values:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let it drain
                producer.poll(0.05)
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
