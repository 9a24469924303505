"""The streaming worker on the real broker: results, dead letters, crashes, scale-out, shutdown."""

from __future__ import annotations

import copy
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from models.errors import StoreError
from models.registry import Registry
from service.store import Query, Store
from streaming.consumer import Worker, WorkerConfig
from streaming.decode import Decoder, latest_version
from streaming.kafka import consumer_config, create_topics, produce_all, read_topic
from streaming.lightcurve import LightCurve, light_curve
from streaming.pipeline import classify_alerts
from streaming.publish import decode_classification
from streaming.simulate import NightSimulator, alert_at, simulate_alerts
from tests.helpers import long_lived_object, refuse_sources

pytestmark = pytest.mark.kafka
VERSION = latest_version()
N_MODELS = len(Registry().models)  # one result per model per alert: the store's rows, the output's records


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


@pytest.fixture
def topics(kafka_bootstrap) -> dict:
    tag = uuid.uuid4().hex[:8]
    names = {"topic": f"alerts-{tag}", "output_topic": f"out-{tag}", "dead_letter_topic": f"dlq-{tag}",
             "group": f"grp-{tag}"}
    create_topics(kafka_bootstrap, [names["topic"], names["output_topic"], names["dead_letter_topic"]],
                  partitions=4)
    return names


# Scores and probabilities are kept to 6 decimals, and onnxruntime rounds the last float32 bit of a
# row by batch (the anomaly mixtures' matrix products; the tree ensembles: a batch of 200 against
# batches of 30 differ by 2.4e-7 in both classifiers, measured), so the same alert scored in another
# batch can land one step away.
ONE_SCORE_STEP = 1.01e-6
# The anomaly mixtures' float32 log-likelihoods cancel from ~10^2 down to the raw score, so a row's
# raw score moves by far more than its own last bit with the batch's row count: up to 1.9e-6 in 8 of
# 3,000 rows of 30+30-point alerts scored in batches of 30 against one batch (measured), and ~1.3e-5
# in a CI run (a percentile 4e-6 away). Allowed: 1e-4 of raw score, as a percentile where the
# population is (3e-5 at its densest), plus the 6-decimal step.
RAW_SCORE_SLACK = 1e-4


def assert_same_score(stored: float | None, expected: float | None, registry: Registry) -> None:
    if expected is None or stored is None:  # declined: both must be
        assert stored is None and expected is None, (stored, expected)
        return
    raw_card = next(m for m in registry.models.values() if m.is_anomaly).card["raw_score"]
    levels, population = (np.asarray(raw_card[k]) for k in ("percentile_levels", "population_scores"))
    raw = np.interp(expected, levels, population)
    low, high = np.interp([raw - RAW_SCORE_SLACK, raw + RAW_SCORE_SLACK], population, levels)
    assert low - ONE_SCORE_STEP <= stored <= high + ONE_SCORE_STEP, (stored, expected, low, high)


def assert_same_classifications(stored: list[dict], expected: list[dict]) -> None:
    assert [c["classId"] for c in stored] == [c["classId"] for c in expected]
    assert [c["probability"] for c in stored] == pytest.approx([c["probability"] for c in expected],
                                                               abs=ONE_SCORE_STEP)


def simulated_packets(n: int, seed: int = 0) -> list[bytes]:
    decoder = Decoder()
    return [decoder.encode(r, VERSION) for r in NightSimulator(seed, pool_size=300).alerts(n)]


def worker_env(bootstrap: str, topics: dict, store: Path, batch: int = 100) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_CLASSIFIER_")}
    env.update({"ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "ALERT_CLASSIFIER_ALERT_TOPIC": topics["topic"],
                "ALERT_CLASSIFIER_OUTPUT_TOPIC": topics["output_topic"],
                "ALERT_CLASSIFIER_DEAD_LETTER_TOPIC": topics["dead_letter_topic"],
                "ALERT_CLASSIFIER_CONSUMER_GROUP": topics["group"],
                "ALERT_CLASSIFIER_STORE_DSN": str(store),
                "ALERT_CLASSIFIER_BATCH_SIZE": str(batch), "OMP_NUM_THREADS": "1"})
    return env


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=fh)


def wait_for(predicate, timeout_s: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def restart_until_done(env: dict, log: Path, store: Store, rows: int) -> None:
    """Start a worker, wait until the store holds `rows`, stop it with SIGTERM (it must exit 0)."""
    worker = start_worker(env, log)
    try:
        wait_for(lambda: store.count() >= rows, what="a restarted worker to classify the rest")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()[-2000:]


def in_process_worker(bootstrap, topics, registry, store, batch=200) -> Worker:
    config = WorkerConfig(bootstrap=bootstrap, topic=topics["topic"], group=topics["group"],
                          output_topic=topics["output_topic"], dead_letter_topic=topics["dead_letter_topic"],
                          batch_size=batch)
    return Worker(config, registry, store)


def test_n_alerts_in_n_results_out_equal_to_classify(kafka_bootstrap, topics, registry, tmp_path):
    n = 1500
    packets = simulated_packets(n, seed=1)
    produce_all(kafka_bootstrap, topics["topic"], packets)
    store = Store(tmp_path / "s.sqlite3")
    worker = in_process_worker(kafka_bootstrap, topics, registry, store)
    stats = worker.run(max_messages=n)

    assert stats.total() == n
    assert stats.total("classified") + stats.total("declined") == n and stats.total("dead_lettered") == 0
    assert store.count() == n * len(registry.models)

    # the stream's results equal the offline `classify` path on the same packets (full decode),
    # with the same history of each object's detections
    decoder = Decoder()
    expected = classify_alerts([decoder.decode(p) for p in packets], registry, history=store)
    for obj in expected[::37]:
        rows = {r["classifier"]: r for r in store.source_rows(obj["diaSourceId"])}
        [score] = [s for s in store.object_scores(obj["diaObjectId"])
                   if s["diaSourceId"] == obj["diaSourceId"]]
        for result in obj["results"]:
            if "score" in result:  # the anomaly model: its own table
                assert_same_score(score["score"], result["score"], registry)
                assert score["reason"] == result["reason"]
                continue
            stored = rows[result["classifier"]]
            assert_same_classifications(stored["classifications"], result["classifications"])
            assert rows[result["classifier"]]["reason"] == result["reason"]

    out = read_topic(kafka_bootstrap, topics["output_topic"], expect=n * N_MODELS)
    assert len(out) == n * N_MODELS
    records = [decode_classification(m.value()) for m in out[:30]]
    assert {r["classifierName"] for r in records} == set(registry.models)
    for record in records:
        assert record["brokerName"] == "alert-classifier"
        if record["classifierName"] == "anomaly":  # ELAsTiCC has no class for it: the score in params
            assert not record["classifications"]
            assert "score=" in record["classifierParams"] or "declined" in record["classifierParams"]
        else:
            assert abs(sum(c["probability"] for c in record["classifications"]) - 1) < 1e-4


def test_the_store_extends_light_curves_beyond_the_alerts_year(kafka_bootstrap, topics, registry, tmp_path):
    """An object seen for 2.5 years: its last alert carries one year of detections; the worker
    classifies it on all of them, from the store's copies of the earlier alerts."""
    obj = long_lived_object()
    n = len(obj.t)
    decoder = Decoder()
    packets = [decoder.encode(alert_at(obj, i), VERSION) for i in range(n)]
    produce_all(kafka_bootstrap, topics["topic"], packets, key=b"4242")  # one partition, in order
    store = Store(tmp_path / "h.sqlite3")
    # batches of 30: the last alerts find the first ones' detections stored
    in_process_worker(kafka_bootstrap, topics, registry, store, batch=30).run(max_messages=n)

    assert store.count_sources() == n
    last = decoder.decode(packets[-1])
    alone = light_curve(last)
    assert len(alone) < n * 0.6, "the alert itself carries only its last year"
    everything = LightCurve.from_arrays(obj.t, obj.flux, obj.flux_err, obj.band)
    rows = {r["classifier"]: r for r in store.source_rows(last.dia_source_id)}
    on_all, on_alone = registry.classify([everything])[0], registry.classify([alone])[0]
    for result in on_all[:-1]:  # the classifiers; the anomaly score is checked below
        assert_same_classifications(rows[result.classifier]["classifications"],
                                    result.as_dict()["classifications"])
    [score] = [s for s in store.object_scores(4242) if s["diaSourceId"] == last.dia_source_id]
    assert_same_score(score["score"], on_all[-1].score, registry)
    assert [r.as_dict() for r in on_all] != [r.as_dict() for r in on_alone], "the history changed nothing"

    # without the history (keep_history off) the same alerts are judged on their year alone
    plain = Store(tmp_path / "plain.sqlite3")
    config = WorkerConfig(bootstrap=kafka_bootstrap, topic=topics["topic"], group=topics["group"] + "-plain",
                          output_topic=topics["output_topic"], dead_letter_topic=topics["dead_letter_topic"],
                          batch_size=30, keep_history=False)
    Worker(config, registry, plain).run(max_messages=n)
    rows = {r["classifier"]: r for r in plain.source_rows(last.dia_source_id)}
    for result in on_alone[:-1]:
        assert_same_classifications(rows[result.classifier]["classifications"],
                                    result.as_dict()["classifications"])
    assert plain.count_sources() == 0


class StoreDownAtFirst(Store):
    """The real store, unreachable for its first history reads (as during a database restart)."""

    failures = 2

    def recall(self, before):
        if self.failures:
            self.failures -= 1
            raise StoreError("store operation failed: connection refused (injected)")
        return super().recall(before)


def test_a_store_outage_during_the_history_read_is_retried_and_loses_nothing(kafka_bootstrap, topics,
                                                                             registry, tmp_path):
    n = 200
    produce_all(kafka_bootstrap, topics["topic"], simulated_packets(n, seed=8))
    store = StoreDownAtFirst(tmp_path / "down.sqlite3")
    stats = in_process_worker(kafka_bootstrap, topics, registry, store, batch=100).run(max_messages=n)
    assert store.failures == 0, "the outage was met"
    assert stats.total() == n and stats.total("dead_lettered") == 0
    assert store.count() == n * len(registry.models)


def test_malformed_packets_are_dead_lettered_and_the_worker_goes_on(kafka_bootstrap, topics, registry,
                                                                    tmp_path):
    good = simulated_packets(300, seed=2)
    bad = {b"": "empty", b"\x00\x01": "too_short", b"\x07garbage-bytes": "wrong_magic_byte",
           b"\x00\x00\x00\x27\x0f" + good[0][5:]: "unknown_schema_id",
           good[1][:100]: "corrupt_avro", good[2][:5] + b"\xff" * 50: "corrupt_avro",
           good[3] + b"\x00": "corrupt_avro",  # a byte left over: the bulk decoder's end marker
           b'{"diaSourceId": "x"}': "missing_field"}
    mixed = good[:150] + list(bad) + good[150:]
    produce_all(kafka_bootstrap, topics["topic"], mixed)
    store = Store(tmp_path / "s.sqlite3")
    worker = in_process_worker(kafka_bootstrap, topics, registry, store, batch=64)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_for(lambda: worker.stats.total() >= len(mixed), what="the mixed batch")

    dlq = read_topic(kafka_bootstrap, topics["dead_letter_topic"], expect=len(bad))
    assert len(dlq) == len(bad)
    for msg in dlq:
        headers = {k: v.decode() for k, v in msg.headers()}
        assert msg.value() in bad, "dead letters carry the raw bytes, unchanged"
        assert headers["reason"] == bad[msg.value()]
        assert headers["source_topic"] == topics["topic"]
        assert int(headers["source_offset"]) >= 0 and headers["error"]
    places = {(dict(m.headers())["source_partition"], dict(m.headers())["source_offset"]) for m in dlq}
    assert len(places) == len(bad), "each dead letter names its own source offset"
    unknown = next(m for m in dlq if dict(m.headers())["reason"] == b"unknown_schema_id")
    assert dict(unknown.headers())["schema_id"] == b"9999"

    # still running: more valid alerts are classified after the bad ones
    more = simulated_packets(50, seed=3)
    produce_all(kafka_bootstrap, topics["topic"], more)
    wait_for(lambda: worker.stats.total() >= len(mixed) + 50, what="alerts after the bad packets")
    worker.stop()
    thread.join(30)
    s = worker.stats
    assert s.total("dead_lettered") == len(bad)
    assert s.total("classified") + s.total("declined") == len(good) + 50
    assert s.total() == len(mixed) + 50  # every offset ends as exactly one outcome
    assert store.count() == (len(good) + 50) * len(registry.models)


def _committed(bootstrap: str, topic: str, group: str, partitions: int = 4) -> dict[int, int]:
    c = Consumer(consumer_config(bootstrap, group))
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c.close()
    return {p.partition: p.offset for p in parts}


class HeldStore(Store):
    """A real store whose first upsert waits to be released; counts the history reads (one a batch)."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.release, self.entered, self.reads = threading.Event(), threading.Event(), 0

    def upsert(self, records, detections=()):
        self.entered.set()
        self.release.wait(60)
        super().upsert(records, detections)

    def recall(self, before, **kw):
        self.reads += 1
        return super().recall(before, **kw)


def test_the_next_batch_is_processed_while_the_sinks_write_and_offsets_wait_for_them(
        kafka_bootstrap, topics, registry, tmp_path):
    n = 150
    produce_all(kafka_bootstrap, topics["topic"], simulated_packets(n, seed=8))
    store = HeldStore(tmp_path / "s.sqlite3")
    worker = in_process_worker(kafka_bootstrap, topics, registry, store, batch=50)
    runner = threading.Thread(target=lambda: worker.run(max_messages=n))
    runner.start()
    try:
        assert store.entered.wait(60), "the first batch never reached the store"
        wait_for(lambda: store.reads >= 2, what="the next batch to be processed beside the first one's sinks")
        time.sleep(0.5)  # a commit would be quick: give it the chance to be wrongly made
        committed = _committed(kafka_bootstrap, topics["topic"], topics["group"])
        assert sum(max(o, 0) for o in committed.values()) == 0, "no offset before its batch is stored"
    finally:
        store.release.set()
        runner.join(120)
    assert worker.stats.total() == n
    assert store.count() == n * N_MODELS
    committed = _committed(kafka_bootstrap, topics["topic"], topics["group"])
    assert sum(max(o, 0) for o in committed.values()) == n


def test_kill_9_then_restart_loses_nothing_and_duplicates_no_rows(kafka_bootstrap, topics, tmp_path):
    n, batch = 3000, 100
    produce_all(kafka_bootstrap, topics["topic"], simulated_packets(n, seed=4))
    store_path = tmp_path / "s.sqlite3"
    store = Store(store_path)
    env = worker_env(kafka_bootstrap, topics, store_path, batch)
    first = start_worker(env, tmp_path / "w1.log")
    wait_for(lambda: store.count() >= 600, what="the first worker to make progress")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    before = store.count()
    assert before < n * N_MODELS, "killed mid-stream"

    restart_until_done(env, tmp_path / "w2.log", store, n * N_MODELS)
    assert store.count() == n * N_MODELS  # upserts: no duplicate rows
    assert len({r["dia_source_id"] for r in store.query(Query(limit=10**7))}) == n
    out = read_topic(kafka_bootstrap, topics["output_topic"])
    duplicates = len(out) - n * N_MODELS
    # at-least-once: at most the batch in flight when killed is produced twice (2 records per alert)
    assert 0 <= duplicates <= batch * N_MODELS, duplicates


def test_two_workers_split_the_partitions_and_classify_everything_once(kafka_bootstrap, topics, tmp_path):
    n = 3000
    store_path = tmp_path / "s.sqlite3"
    store = Store(store_path)
    env = worker_env(kafka_bootstrap, topics, store_path, 100)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(env, logs[0]), start_worker(env, logs[1])]
    try:
        # both own partitions before the data arrives
        wait_for(lambda: all(_assigned(log.read_text()) for log in logs), what="both workers to join")
        produce_all(kafka_bootstrap, topics["topic"], simulated_packets(n, seed=5))
        wait_for(lambda: store.count() >= n * N_MODELS, what="both workers to finish")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(60) for w in workers]
    assert codes == [0, 0]
    assert store.count() == n * N_MODELS
    assigned = [_assigned(log.read_text()) for log in logs]
    assert all(assigned), f"each worker owned partitions: {assigned}"
    assert assigned[0] | assigned[1] == {0, 1, 2, 3}, assigned
    out = read_topic(kafka_bootstrap, topics["output_topic"])
    assert len(out) == n * N_MODELS, "no reprocessing without a crash"


def _assigned(log: str) -> set[int]:
    parts: set[int] = set()
    for line in log.splitlines():
        if "assigned [" in line:
            parts |= {int(x) for x in line.split("assigned [")[1].rstrip("]").split(",") if x.strip()}
    return parts


def test_sigterm_commits_and_nothing_is_reprocessed(kafka_bootstrap, topics, tmp_path):
    n = 4000
    produce_all(kafka_bootstrap, topics["topic"], simulated_packets(n, seed=6))
    store_path = tmp_path / "s.sqlite3"
    store = Store(store_path)
    env = worker_env(kafka_bootstrap, topics, store_path, 100)
    worker = start_worker(env, tmp_path / "w.log")
    wait_for(lambda: store.count() >= 1000, what="progress")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0, (tmp_path / "w.log").read_text()[-2000:]
    done = store.count() // N_MODELS
    committed = _committed(kafka_bootstrap, topics["topic"], topics["group"])
    assert sum(max(o, 0) for o in committed.values()) == done, "offsets committed = alerts stored"

    restart_until_done(env, tmp_path / "w2.log", store, n * N_MODELS)
    out = read_topic(kafka_bootstrap, topics["output_topic"])
    assert len(out) == n * N_MODELS, "nothing reprocessed after a clean shutdown"


# --- bad values, refused rows, poison alerts, stalls: never a halt ---------------------------------

def _with(record: dict, **changes) -> dict:
    """A copy of an alert record with diaSource (and diaObject, where it has them) values changed."""
    out = copy.deepcopy(record)
    out["diaSource"].update(changes)
    if isinstance(out.get("diaObject"), dict):
        out["diaObject"].update({k: v for k, v in changes.items() if k in out["diaObject"]})
    return out


def test_bad_values_are_dead_letters_and_classification_goes_on(kafka_bootstrap, topics, registry, tmp_path):
    """The operator's report: one alert with ra = NaN stopped all classification for good."""
    decoder = Decoder()
    records = list(simulate_alerts(220, history=12, seed=13))
    bad_values = [{"ra": math.nan}, {"midpointMjdTai": math.inf}, {"ra": 1e300, "dec": -1e300},
                  {"dec": -91.0}, {"diaSourceId": -7}, {"midpointMjdTai": math.nan}]
    bad = [decoder.encode(_with(records[i], **c), VERSION) for i, c in enumerate(bad_values)]
    # a NaN flux and a zero error in history points: those points are dropped, the alert classified
    holey = copy.deepcopy(records[10])
    holey["prvDiaSources"][0]["psfFlux"] = math.nan
    holey["prvDiaSources"][1]["psfFluxErr"] = 0.0
    good = [decoder.encode(r, VERSION) for r in records[20:]] + [decoder.encode(holey, VERSION)]
    packets = good[:100] + bad + good[100:]
    produce_all(kafka_bootstrap, topics["topic"], packets)
    store = Store(tmp_path / "s.sqlite3")
    worker = in_process_worker(kafka_bootstrap, topics, registry, store, batch=64)
    stats = worker.run(max_messages=len(packets))

    assert stats.total() == len(packets)
    assert dict(stats.dead_letter_reasons) == {"invalid_value": len(bad)}
    assert stats.total("classified") + stats.total("declined") == len(good)
    assert store.count() == len(good) * len(registry.models), "every good alert stored, no stall"
    assert worker.stalled_seconds() == 0 and worker.retrying_since is None
    dlq = read_topic(kafka_bootstrap, topics["dead_letter_topic"], expect=len(bad))
    assert sorted(m.value() for m in dlq) == sorted(bad), "the raw bytes, unchanged"
    errors = sorted(dict(m.headers())["error"].decode() for m in dlq)
    for field in ("diaSource.ra = nan", "diaSource.midpointMjdTai = inf", "diaSource.ra = 1e+300",
                  "diaSource.dec = -91.0", "diaSource.diaSourceId = -7", "diaSource.midpointMjdTai = nan"):
        assert any(field in e for e in errors), (field, errors)
    holey_rows = store.source_rows(holey["diaSource"]["diaSourceId"])
    assert len(holey_rows) == len(registry.models) - 1  # the classifiers; the anomaly score has its table
    assert len(light_curve(decoder.decode(decoder.encode(holey, VERSION)))) == 13 - 2

    # the night's counters, from the store (a fresh connection: they survive restarts), and over HTTP
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from streaming.nightly import day_obs

    tonight = day_obs(time.time())
    counters = Store(tmp_path / "s.sqlite3").nightly(tonight, tonight)[tonight]
    assert counters["consumed"] == len(packets) and counters["dead_lettered:invalid_value"] == len(bad)
    assert counters.get("classified", 0) + counters.get("declined", 0) == len(good)
    assert counters.get("new_objects", 0) == sum(1 for r in records[20:] if not r["prvDiaSources"])
    with TestClient(create_app(Settings(data_dir=tmp_path), registry=registry, store=store)) as client:
        [night] = client.get("/v1/stats/nightly", params={"start": tonight, "end": tonight}).json()
    assert night["consumed"] == len(packets)
    assert night["dead_lettered_by_reason"] == {"invalid_value": len(bad)}
    assert night["classified"] == stats.total("classified") and night["declined"] == stats.total("declined")
    sn_ia = sum(1 for r in store.query(Query(classifier="supernova", class_id=2222, min_probability=0.5,
                                             limit=10_000)))
    assert night["classes_p_ge_0_5"].get("supernova", {}).get("2222", 0) == sn_ia
    assert night["latency_ms"]["p50"] is not None


def test_rows_the_store_refuses_dead_letter_only_their_alerts(kafka_bootstrap, topics, registry, store):
    """A permanent store error: the batch is split until the alerts behind it stand alone; they
    are dead-lettered (store_rejected), the rest stored and published. SQLite and PostgreSQL."""
    n = 300
    packets = simulated_packets(n, seed=12)
    decoder = Decoder()
    victims = {decoder.decode(packets[i]).dia_source_id: packets[i] for i in (5, 150, 299)}
    refuse_sources(store, victims)
    produce_all(kafka_bootstrap, topics["topic"], packets)
    stats = in_process_worker(kafka_bootstrap, topics, registry, store, batch=100).run(max_messages=n)

    assert stats.total() == n and dict(stats.dead_letter_reasons) == {"store_rejected": len(victims)}
    assert store.count() == (n - len(victims)) * len(registry.models)
    dlq = read_topic(kafka_bootstrap, topics["dead_letter_topic"], expect=len(victims))
    assert sorted(m.value() for m in dlq) == sorted(victims.values())
    for m in dlq:
        headers = {k: v.decode() for k, v in m.headers()}
        assert headers["reason"] == "store_rejected" and "refused by the test trigger" in headers["error"]
        assert headers["schema_id"] == str(VERSION.schema_id)
    out = read_topic(kafka_bootstrap, topics["output_topic"], expect=(n - len(victims)) * N_MODELS)
    published = {decode_classification(m.value())["diaSourceId"] for m in out}
    assert len(out) == (n - len(victims)) * len(registry.models) and not published & set(victims)


class PoisonRegistry(Registry):
    """A bug that one alert's data meets: scoring any batch holding a curve of 61 points fails."""

    def score(self, X, n_points):
        if (n_points == 61).any():
            raise ValueError("index 61 is out of bounds (a bug met by this curve)")
        return super().score(X, n_points)

    def classify(self, curves):
        if any(len(c) == 61 for c in curves):
            raise ValueError("index 61 is out of bounds (a bug met by this curve)")
        return super().classify(curves)


def test_an_alert_that_meets_a_bug_is_dead_lettered_alone(kafka_bootstrap, topics, tmp_path):
    decoder = Decoder()
    packets = simulated_packets(150, seed=14)  # 31 points each at most
    poison = decoder.encode(next(simulate_alerts(1, history=60, seed=15)), VERSION)
    produce_all(kafka_bootstrap, topics["topic"], [*packets[:70], poison, *packets[70:]])
    registry = PoisonRegistry()
    store = Store(tmp_path / "s.sqlite3")
    config = WorkerConfig(bootstrap=kafka_bootstrap, topic=topics["topic"], group=topics["group"],
                          output_topic=topics["output_topic"], dead_letter_topic=topics["dead_letter_topic"],
                          batch_size=200, keep_history=False)
    stats = Worker(config, registry, store).run(max_messages=151)
    assert stats.total() == 151 and dict(stats.dead_letter_reasons) == {"processing_error": 1}
    assert store.count() == 150 * len(registry.models)
    [dead] = read_topic(kafka_bootstrap, topics["dead_letter_topic"], expect=1)
    assert dead.value() == poison and b"a bug met by this curve" in dict(dead.headers())["error"]


class Outage(Store):
    """The real store behind a switch: while `down`, writes fail as a lost connection does."""

    down = False

    def upsert(self, records, detections=()):
        if self.down:
            raise StoreError("store operation failed: connection refused (injected outage)")
        super().upsert(records, detections)


def test_a_stuck_batch_marks_the_worker_stalled_until_it_goes_through(kafka_bootstrap, topics, registry,
                                                                      tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, alert_topic=topics["topic"],
                        output_topic=topics["output_topic"], dead_letter_topic=topics["dead_letter_topic"],
                        consumer_group=topics["group"], data_dir=tmp_path, stall_after_s=1.0)
    store = Outage(tmp_path / "s.sqlite3")
    store.down = True
    with TestClient(create_app(settings, consume=True, registry=registry, store=store)) as client:
        assert client.get("/readyz").status_code == 200, "ready before the trouble"
        produce_all(kafka_bootstrap, topics["topic"], simulated_packets(50, seed=16))
        wait_for(lambda: client.get("/readyz").status_code == 503, what="the stall to show")
        worker = client.get("/readyz").json()["checks"]["worker"]
        assert worker["detail"].startswith("stalled") and "injected outage" in worker["detail"]
        gauge = _gauge(client.get("/metrics").text, "alert_classifier_worker_stalled_seconds")
        assert gauge >= 1.0
        status = client.get("/v1/status").json()
        assert status["stalled_s"] >= 1.0 and "injected outage" in status["stall_reason"]

        store.down = False  # the database is back: the worker recovers by itself
        wait_for(lambda: store.count() == 50 * len(registry.models), what="the batch to go through")
        wait_for(lambda: client.get("/readyz").status_code == 200, what="readiness to recover")
        assert _gauge(client.get("/metrics").text, "alert_classifier_worker_stalled_seconds") == 0
        assert client.get("/v1/status").json()["stall_reason"] is None


def _gauge(metrics_text: str, name: str) -> float:
    [line] = [ln for ln in metrics_text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])
