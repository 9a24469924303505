"""Faults on a real 3-node Kafka cluster (KRaft, replication 3, min.insync.replicas 2) while alerts
flow: a broker killed with SIGKILL and restarted, the leader of a partition the worker reads killed.
Every alert classified, none lost, no duplicate store rows, at most one batch of output duplicates per
fault, and the worker never exits. SQLite and (where CI gives a DSN) PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from models.registry import Registry
from service.store import Query
from streaming import local_broker
from streaming.consumer import Worker, WorkerConfig
from streaming.decode import Decoder
from streaming.kafka import create_topics, produce_all, read_topic
from tests.test_worker import simulated_packets, wait_for

pytestmark = pytest.mark.kafka
BATCH = 100


@pytest.fixture(scope="module")
def cluster(settings):
    handle = local_broker.start(settings.kafka_cache_dir, nodes=3)
    yield handle
    local_broker.stop(handle)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def _topics(bootstrap: str) -> dict:
    tag = uuid.uuid4().hex[:8]
    names = {"topic": f"alerts-{tag}", "output_topic": f"out-{tag}", "dead_letter_topic": f"dlq-{tag}",
             "group": f"grp-{tag}"}
    create_topics(bootstrap, [names["topic"], names["output_topic"], names["dead_letter_topic"]], 4)
    return names


def _partition(bootstrap: str, topic: str, partition: int):
    """The partition's metadata. A new client may ask a node whose view of a just-created topic has
    not caught up yet (the topic listed without its partitions): ask again until it has."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + 30
    while True:
        found = admin.list_topics(topic, timeout=10).topics[topic].partitions.get(partition)
        if found is not None and found.leader >= 0:
            return found
        assert time.monotonic() < deadline, f"{topic}[{partition}] has no metadata after 30 s"
        time.sleep(0.1)


def _leader(bootstrap: str, topic: str, partition: int) -> int:
    return _partition(bootstrap, topic, partition).leader


def _flow_with_fault(cluster, settings, registry, store, pick_victim) -> None:
    """Alerts produced in the background while the worker runs; a node is killed once the worker
    has made progress and restarted later; then everything must be accounted for."""
    bootstrap = cluster.bootstrap_servers
    t = _topics(bootstrap)
    replicas = _partition(bootstrap, t["topic"], 0).replicas
    assert len(replicas) == 3, "replicated three times"
    n = 2400
    packets = simulated_packets(n, seed=41)
    config = WorkerConfig(bootstrap=bootstrap, topic=t["topic"], group=t["group"],
                          output_topic=t["output_topic"], dead_letter_topic=t["dead_letter_topic"],
                          batch_size=BATCH)
    worker = Worker(config, registry, store)
    crashed: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - the test fails on it below
            crashed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    def feed() -> None:  # a steady stream, so the fault meets alerts in flight
        for i in range(0, n, 200):
            produce_all(bootstrap, t["topic"], packets[i:i + 200])
            time.sleep(0.3)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    rows = len(registry.models)
    try:
        wait_for(lambda: store.count() >= 400 * rows, what="progress before the fault")
        victim = pick_victim(bootstrap, t["topic"])
        local_broker.kill_node(cluster, victim)
        wait_for(lambda: store.count() >= 1400 * rows, timeout_s=180, what="progress with a node down")
        assert thread.is_alive(), crashed
        local_broker.restart_node(cluster, victim, settings.kafka_cache_dir)
        feeder.join(120)
        wait_for(lambda: store.count() >= n * rows, timeout_s=180, what="every alert classified")
    finally:
        worker.stop()
        thread.join(60)
    assert not crashed, f"the worker exited: {crashed}"
    assert worker.stats.total("dead_lettered") == 0
    assert store.count() == n * rows, "no duplicate store rows"
    decoder = Decoder()
    stored = {r["dia_source_id"] for r in store.query(Query(limit=10**6))}
    assert stored == {decoder.decode(p).dia_source_id for p in packets}, "no alert lost"
    out = read_topic(bootstrap, t["output_topic"])
    duplicates = len(out) - n * rows
    assert 0 <= duplicates <= BATCH * rows, f"{duplicates} output duplicates for one fault"


def test_a_broker_killed_and_restarted_loses_nothing(cluster, settings, registry, store):
    _flow_with_fault(cluster, settings, registry, store, lambda _bootstrap, _topic: 2)


def test_killing_the_leader_of_a_partition_being_read_loses_nothing(cluster, settings, registry, tmp_path):
    from service.store import Store

    _flow_with_fault(cluster, settings, registry, Store(tmp_path / "s.sqlite3"),
                     lambda bootstrap, topic: _leader(bootstrap, topic, 0))


def test_the_nodes_temporary_files_are_kept_in_the_cluster_folder(cluster):
    """lz4-java unpacks its native library per JVM; in /tmp a node killed by SIGKILL left it for good."""
    t = _topics(cluster.bootstrap_servers)
    produce_all(cluster.bootstrap_servers, t["topic"], [bytes(2000)] * 20)  # lz4-compressed batches
    unpacked = list(Path(cluster.workdir).glob("liblz4-java-*.so"))
    assert unpacked, f"no lz4-java library under {cluster.workdir}: the JVMs unpacked it elsewhere"
