"""How `GET /v1/anomalies` scales: `Store.top_anomalies` on a store of N anomaly scores over ten
nights (SQLite by default, or a PostgreSQL DSN). Prints, for each ranking (an object's latest scored
alert, its highest score), the median time of the latest night's first page of 100, of its 11th
page, and of the whole store's first page.

    .venv/bin/python bench/anomaly_rank_bench.py [--scores 1000000] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from service.anomaly_store import RANKINGS
from service.store import Store
from streaming.records import ClassificationRecord

NIGHTS = 10
CHUNK = 50_000


def fill(store: Store, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        mjd, score, obj = 60000 + rng.uniform(0, NIGHTS, k), rng.random(k), rng.integers(1, n // 5, k)
        store.upsert([ClassificationRecord(start + i + 1, int(obj[i]), start + i + 1, "anomaly", "1.0.0", 1.0,
                                           1.0, float(mjd[i]), [], None, "bench", 0, 0, 0, 0,
                                           round(float(score[i]), 6)) for i in range(k)])
        print(f"\r  filled {start + k:,}/{n:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def median_ms(f, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=int, default=1_000_000)
    parser.add_argument("--dsn", help="a PostgreSQL DSN (an empty database); default a temporary SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rank-bench-") as scratch:  # SQLite's file, WAL and shm
        store = Store(args.dsn or str(Path(scratch) / "scores.sqlite3"))
        try:
            run(store, args)
        finally:
            store.close()


def run(store: Store, args: argparse.Namespace) -> None:
    fill(store, args.scores)
    newest = store.newest_scored_mjd()
    for by in RANKINGS:
        after = None
        for _ in range(10):
            page = store.top_anomalies(newest - 1, newest, 100, after, by=by)
            after = (page[-1].score, page[-1].dia_object_id)
        print({"scores": args.scores, "store": "postgresql" if args.dsn else "sqlite", "rank": by,
               "night_first_page_ms": median_ms(
                   lambda by=by: store.top_anomalies(newest - 1, newest, 100, by=by)),
               "night_11th_page_ms": median_ms(lambda by=by, after=after: store.top_anomalies(
                   newest - 1, newest, 100, after, by=by)),
               "whole_store_first_page_ms": median_ms(lambda by=by: store.top_anomalies(0, 1e6, 100, by=by))},
              flush=True)


if __name__ == "__main__":
    main()
