"""End-to-end throughput and latency through the real broker (`make bench`).

For each history length (30 and 100 points, as many forced points, three 9 kB cutouts) and each
worker count (1 and 2 processes in one consumer group):
  1. throughput: pre-load the topic with K alerts, start the workers, time until all K are stored;
  2. latency: produce at a third of that rate (`--latency-load`) for a while; latency = when the
     result is first seen in the store (polled every 20 ms: committed, after the store write of its
     batch) - the alert's Kafka timestamp.
A naive one-alert-at-a-time loop (full decode, features and models per alert, one DB transaction
and one produce per alert) runs on the same broker as the baseline, before and after each history's
worker runs: the speed-up is against the mean of the two, so that the box's speed drifting during a
run (10-30% from hour to hour on a shared machine) does not decide the ratio.

Every run starts on an empty SQLite store unless `--store-alerts N` gives each run (the naive loop's
too) a copy of one store already holding N alerts of a steady stream's results and detections
(`bench/store_bench.py`'s rows): a service's store after days or weeks, whose writes cost more.

The last line printed is one JSON object (headline figures plus every run).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import fastavro
import numpy as np
from confluent_kafka import Consumer, Producer
from store_bench import batches as steady_stream  # bench/ is the script's folder

from models import features
from models.registry import Registry
from service.runtime import compile_kernels, settle
from service.settings import Settings
from service.store import Query, Store
from streaming import kafka
from streaming.consumer import Worker, WorkerConfig
from streaming.decode import Alert, Decoder, _shipped_schema, latest_version
from streaming.kafka import broker, consumer_config, create_topics, producer_config
from streaming.lightcurve import light_curves
from streaming.publish import encode_classification
from streaming.records import ClassificationRecord, Message
from streaming.simulate import simulate_alerts

VERSION = latest_version()
WARMUP_S = 8.0
POLL_S = 0.02  # how often the latency phase reads new results: latencies are high by at most this


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def packets(n: int, history: int, seed: int) -> list[bytes]:
    """n distinct alerts (distinct ids: the store would merge repeats)."""
    decoder = Decoder()
    return [decoder.encode(r, VERSION) for r in
            simulate_alerts(n, history=history, forced=True, cutout_bytes=9000, seed=seed)]


def produce(bootstrap: str, topic: str, values: list[bytes], rate: float | None = None,
            warm_topic: str | None = None) -> None:
    producer = Producer(producer_config(bootstrap))
    if warm_topic:
        # A new idempotent producer delivers nothing for ~0.5 s (librdkafka waits to acquire its
        # producer id), so a paced stream's first alerts would carry that wait in their latency: a
        # property of this bench's alert source, not of the workers. One delivery elsewhere first.
        producer.produce(warm_topic, b"")
        producer.flush(30)
    t0 = time.monotonic()
    for i, v in enumerate(values):
        kafka.produce(producer, topic, v, str(i).encode())
        producer.poll(0)
        if rate:
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(120)


def topics(bootstrap: str, partitions: int) -> dict:
    tag = uuid.uuid4().hex[:8]
    t = {"topic": f"bench-{tag}", "output_topic": f"bench-out-{tag}", "dead_letter_topic": f"bench-dlq-{tag}",
         "warm_topic": f"bench-warm-{tag}", "group": f"bench-{tag}"}
    create_topics(bootstrap, [t["topic"], t["output_topic"], t["dead_letter_topic"], t["warm_topic"]],
                  partitions)
    return t


def seed_store(path: Path, n_alerts: int) -> None:
    """A store holding `n_alerts` alerts of a steady stream (store_bench's rows), its log folded in,
    for every run to start from a copy of."""
    store = Store(path)
    done, step = 0, max(n_alerts // 10, 1)
    for records, detections, _ in steady_stream(n_alerts, 500, 0.1, 730.0, seed=0):
        store.upsert(records, detections)
        done += len(detections)  # one detection an alert
        if done % step < len(detections) or done == n_alerts:
            log(f"  store seeded with {done:,} of {n_alerts:,} alerts")
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def run_store(scratch: Path, name: str, seed: Path | None) -> str:
    """A new store for one run: empty, or a copy of the seeded one."""
    path = scratch / name
    if seed is not None:
        shutil.copyfile(seed, path)
    return str(path)


def worker_process(bootstrap: str, t: dict, store_path: str, batch: int, out: mp.Queue) -> None:
    config = WorkerConfig(bootstrap=bootstrap, topic=t["topic"], group=t["group"],
                          output_topic=t["output_topic"], dead_letter_topic=t["dead_letter_topic"],
                          batch_size=batch, feature_threads=Settings().feature_threads)
    worker = Worker(config, Registry(), Store(store_path))
    worker.install_signal_handlers()
    compile_kernels()
    settle()  # as `alert-classifier worker` does (`service.runtime.make_worker`)
    stats = worker.run()
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    out.put({"messages": stats.total(), "stage_seconds": dict(stats.stage_seconds),
             "peak_rss_mb": hwm / 1024})


def run_workers(bootstrap: str, n_workers: int, values: list[bytes], fresh: list[bytes], batch: int,
                latency_s: float, load: float, scratch: Path, seed: Path | None = None) -> dict:
    t = topics(bootstrap, 4)
    store_path = run_store(scratch, f"{t['group']}.sqlite3", seed)
    store = Store(store_path)
    models = Registry().models
    n_classifiers = sum(not m.is_anomaly for m in models.values())  # rows of the classifications table
    # Results are counted by their ids (a range of the key: cheap on a seeded store of millions of
    # rows, where COUNT(*) every 50 ms would take a core); the anomaly scores of an alert are written
    # in the same transaction as its classifier rows.
    probe = sqlite3.connect(store_path)
    base = probe.execute("SELECT COALESCE(MAX(id), 0) FROM classifications").fetchone()[0]

    def stored() -> int:
        return probe.execute("SELECT COUNT(*) FROM classifications WHERE id > ?", (base,)).fetchone()[0]

    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=worker_process, args=(bootstrap, t, store_path, batch, results), daemon=True)
             for _ in range(n_workers)]
    for p in procs:
        p.start()
    time.sleep(WARMUP_S)  # imports, model loading, group join: every worker owns partitions first
    # The backlog is in the topic before the workers see any of it, as the naive loop's is: producing
    # 10,000 alerts beside the workers would take the cores they are measured on. Stopped processes
    # send no heartbeats, but a few seconds are far inside the group's session timeout.
    for p in procs:
        os.kill(p.pid, signal.SIGSTOP)
    try:
        t_produce = time.monotonic()
        produce(bootstrap, t["topic"], values)
        log(f"  backlog of {len(values)} alerts produced in {time.monotonic() - t_produce:.1f} s")
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGCONT)
    target = len(values) * n_classifiers
    # Sustained rate: from the first stored result to the last (process start-up, model loading
    # and the group join are not throughput).
    while (first := stored()) == 0:
        time.sleep(0.02)
    t0 = time.monotonic()
    while stored() < target:
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    probe.close()
    rate = (len(values) - first / n_classifiers) / elapsed
    log(f"  {n_workers} worker(s): {len(values)} alerts in {elapsed:.1f} s = {rate:,.0f}/s")

    # latency: a paced stream below capacity
    n_lat = min(len(fresh), int(rate * load * latency_s))
    last_id = base + len(values) * n_classifiers  # ids of the backlog's classification rows
    paced = threading.Thread(target=produce, args=(bootstrap, t["topic"], fresh[:n_lat]),
                             kwargs={"rate": rate * load, "warm_topic": t["warm_topic"]})
    paced.start()
    # Each result's latency runs to its first sight in the store: committed, so stored. (Its
    # ingest timestamp is taken before the store write, so it would leave the sinks out.)
    lat_list: list[float] = []
    after = last_id
    deadline = time.monotonic() + latency_s + 300
    while len(lat_list) < n_lat * n_classifiers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(lat_list)} of {n_lat * n_classifiers} latency-phase results were "
                             "stored within 5 minutes of the stream's end: see the workers' logs above")
        time.sleep(POLL_S)
        now_ms = time.time() * 1000
        rows = store.query(Query(after_id=after, limit=10**6))
        if rows:
            after = rows[-1]["id"]
            lat_list += [now_ms - r["alert_timestamp_ms"] for r in rows]
    paced.join()
    lat = np.array(lat_list)
    for p in procs:
        os.kill(p.pid, signal.SIGTERM)
    stats = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    stages: dict[str, float] = {}
    for s in stats:
        for k, v in s["stage_seconds"].items():
            stages[k] = stages.get(k, 0.0) + v
    handled = sum(s["messages"] for s in stats)
    store.close()
    return {"workers": n_workers, "alerts_per_s": round(rate, 1),
            "p50_latency_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_latency_ms": round(float(np.percentile(lat, 99)), 1),
            "latency_rate_per_s": round(rate * load, 1),
            "stage_us_per_alert": {k: round(v / handled * 1e6, 1) for k, v in stages.items()},
            "peak_rss_mb": round(max(s["peak_rss_mb"] for s in stats), 1)}


def naive(bootstrap: str, values: list[bytes], scratch: Path, seed: Path | None = None) -> float:
    """The straightforward loop: poll one message, fastavro-decode the whole packet, build its light
    curve, extract its features, run each model on one row, one DB transaction, produce."""
    t = topics(bootstrap, 4)
    produce(bootstrap, t["topic"], values)
    registry = Registry()
    schema = _shipped_schema(VERSION)
    store = Store(run_store(scratch, f"naive-{t['group']}.sqlite3", seed))
    consumer = Consumer(consumer_config(bootstrap, t["group"]))
    consumer.subscribe([t["topic"]])
    producer = Producer(producer_config(bootstrap))
    settle()  # the same process settings as the workers
    # the clock starts after the first alert, as the workers' starts with their first result: loading
    # the compiled feature kernels and the first model calls are start-up, not the loop's rate
    done, t0 = 0, None
    while done < len(values):
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if done == 1:
            t0 = time.monotonic()
        record = fastavro.schemaless_reader(io.BytesIO(msg.value()[5:]), schema, None)
        alert = Alert.from_record(record, VERSION)
        [curve] = light_curves([alert])
        X = features.extract([curve])
        m = Message(msg.value(), msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])
        records = []
        for model in registry.models.values():
            [result] = model.classify(X, np.array([len(curve)]))
            records.append(ClassificationRecord(
                alert.dia_source_id, alert.dia_object_id, alert.alert_id, result.classifier, result.version,
                alert.ra, alert.dec, alert.mjd, result.classifications, result.reason, m.topic, m.partition,
                m.offset, m.timestamp_ms, int(time.time() * 1000)))
        store.upsert(records)
        for r in records:
            producer.produce(t["output_topic"], encode_classification(r, "bench"))
        producer.poll(0)
        consumer.store_offsets(msg)
        done += 1
    producer.flush(30)
    consumer.close()
    store.close()
    return (len(values) - 1) / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts per run (default 10000)")
    parser.add_argument("--naive-alerts", type=int, default=1000)
    parser.add_argument("--histories", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--latency-load", type=float, default=1 / 3,
                        help="latency phase rate as a fraction of the measured capacity (default 1/3)")
    parser.add_argument("--store-alerts", type=int, default=0,
                        help="start every run's store holding this many alerts (default 0: empty)")
    args = parser.parse_args()
    settings = Settings()
    runs = []
    # every store of the run (with SQLite's write-ahead logs: hundreds of MB) goes with the directory
    with broker(settings.kafka_bootstrap_servers, settings.kafka_cache_dir) as bootstrap, \
            tempfile.TemporaryDirectory(prefix="alert-bench-") as tmp:
        scratch = Path(tmp)
        seed = None
        if args.store_alerts > 0:
            seed = scratch / "seed.sqlite3"
            log(f"seeding a store with {args.store_alerts:,} alerts of a steady stream")
            seed_store(seed, args.store_alerts)
        for history in args.histories:
            log(f"history {history}+{history} points: simulating {args.alerts} alerts")
            values = packets(args.alerts, history, seed=history)
            fresh = packets(args.alerts // 2, history, seed=history + 1)  # distinct ids for the latency phase
            before = naive(bootstrap, values[:args.naive_alerts], scratch, seed)
            log(f"  naive loop: {before:,.0f}/s")
            measured = [run_workers(bootstrap, n, values, fresh, args.batch, args.latency_seconds,
                                    args.latency_load, scratch, seed) for n in args.workers]
            after = naive(bootstrap, values[:args.naive_alerts], scratch, seed)
            naive_rate = (before + after) / 2
            log(f"  naive loop again: {after:,.0f}/s (mean {naive_rate:,.0f}/s)")
            for run in measured:
                run.update(history_points=history, naive_alerts_per_s=round(naive_rate, 1),
                           naive_before_after=[round(before, 1), round(after, 1)],
                           speedup_vs_naive=round(run["alerts_per_s"] / naive_rate, 2),
                           alert_bytes=len(values[0]), store_alerts=args.store_alerts)
                runs.append(run)
    print(f"{'hist':>5} {'workers':>7} {'alerts/s':>9} {'naive/s':>8} {'x':>5} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'RSS MB':>7}  stage us/alert")
    for r in runs:
        print(f"{r['history_points']:>5} {r['workers']:>7} {r['alerts_per_s']:>9,.0f} "
              f"{r['naive_alerts_per_s']:>8,.0f} {r['speedup_vs_naive']:>5.1f} {r['p50_latency_ms']:>7.0f} "
              f"{r['p99_latency_ms']:>7.0f} {r['peak_rss_mb']:>7.0f}  {r['stage_us_per_alert']}")
    best = max((r for r in runs if r["history_points"] == args.histories[0]), key=lambda r: r["alerts_per_s"])
    headline = {k: best[k] for k in ("alerts_per_s", "naive_alerts_per_s", "speedup_vs_naive",
                                     "p50_latency_ms", "p99_latency_ms", "workers", "history_points",
                                     "peak_rss_mb", "stage_us_per_alert")}
    print(json.dumps({**headline, "runs": runs}))


if __name__ == "__main__":
    main()
