"""CPU time per alert of a stream worker's whole path, against the real broker.

One process, one thread calling what a worker's two threads call, batch after batch: decode, light
curves (with the store's history), features, models, then the sinks (store upsert, output topic with
its delivery wait, nightly counters). It reports the process's CPU time (every thread of it:
polars', onnxruntime's and librdkafka's too) per alert and stage. Throughput runs
(`bench/pipeline_bench.py`) move 10-30% with the hour on a shared 2-core box; CPU time per alert
moves a few percent, so it shows changes of that size that the throughput runs cannot. Two cores
do at most 2 / (CPU per alert) alerts a second.

    python bench/cpu_bench.py [--alerts 5000] [--history 30] [--rounds 3]

The last line printed is one JSON object: the smallest of the rounds per stage, and every round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pipeline_bench import log, packets

from models.registry import Registry
from service.runtime import compile_kernels, settle
from service.settings import Settings
from service.store import Store
from streaming.decode import Decoder
from streaming.kafka import broker, create_topics
from streaming.nightly import batch_counts
from streaming.pipeline import process_batch
from streaming.publish import Publisher
from streaming.records import Message

STAGES = ("process", "store", "output_topic", "nightly")


def one_round(values: list[bytes], offset: int, batch: int, decoder: Decoder, registry: Registry,
              publisher: Publisher, store: Store, feature_threads: int) -> dict[str, float]:
    """CPU seconds per stage over every batch but the first (its one-time costs are start-up)."""
    messages = [Message(v, "bench", 0, offset + i, 0) for i, v in enumerate(values)]
    spent = dict.fromkeys(STAGES, 0.0)
    for start in range(0, len(messages), batch):
        part = messages[start:start + batch]
        c0 = time.process_time()
        outcome = process_batch(part, decoder, registry, history=store, feature_threads=feature_threads,
                                feature_chunk=None)  # a worker in its own process: one call a batch
        c1 = time.process_time()
        store.upsert(outcome.records, outcome.detections)
        c2 = time.process_time()
        publisher.publish(outcome.records, outcome.dead_letters)
        publisher.flush()
        c3 = time.process_time()
        store.add_nightly(batch_counts(outcome, part, time.time()))
        c4 = time.process_time()
        if start:
            for stage, seconds in zip(STAGES, (c1 - c0, c2 - c1, c3 - c2, c4 - c3), strict=True):
                spent[stage] += seconds
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=5000, help="alerts per round (default 5000)")
    parser.add_argument("--history", type=int, default=30, help="detections and forced points (default 30)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.alerts <= args.batch:
        sys.exit("--alerts must exceed --batch: the first batch of a round is not counted")
    settings = Settings()
    log(f"simulating {args.alerts} alerts of {args.history}+{args.history} points")
    values = packets(args.alerts, args.history, seed=args.history)
    timed = args.alerts - args.batch
    rounds = []
    with broker(settings.kafka_bootstrap_servers, settings.kafka_cache_dir) as bootstrap, \
            tempfile.TemporaryDirectory(prefix="alert-cpu-bench-") as tmp:
        create_topics(bootstrap, ["cpu-bench-out", "cpu-bench-dlq"], 4)
        publisher = Publisher(bootstrap, "cpu-bench-out", "cpu-bench-dlq", broker_version="bench")
        registry, decoder = Registry(), Decoder()
        compile_kernels()
        settle()
        for r in range(args.rounds):
            store = Store(str(Path(tmp) / f"round-{r}.sqlite3"))  # a fresh store: every round alike
            spent = one_round(values, r * args.alerts, args.batch, decoder, registry, publisher, store,
                              settings.feature_threads)  # as a worker runs them
            store.close()
            us = {stage: round(seconds / timed * 1e6, 1) for stage, seconds in spent.items()}
            us["total"] = round(sum(us.values()), 1)
            rounds.append(us)
            log(f"  round {r + 1}/{args.rounds}: {us['total']:.0f} us CPU per alert {us}")
        publisher.producer.flush(10)
    best = {stage: min(r[stage] for r in rounds) for stage in (*STAGES, "total")}
    print(f"CPU per alert (us, smallest of {args.rounds} rounds): {best}; at most "
          f"{2e6 / best['total']:,.0f} alerts/s on 2 cores")
    print(json.dumps({"history_points": args.history, "batch": args.batch, "cpu_us_per_alert": best,
                      "rounds": rounds}))


if __name__ == "__main__":
    main()
