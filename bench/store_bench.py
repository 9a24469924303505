"""The store at scale: what a worker's writes and history reads cost as the store fills up.

`make bench` starts every run on an empty store; a service keeps its store for months. This feeds
one store (SQLite by default, or `--dsn postgresql://...`) the rows a steady stream leaves, batch by
batch, exactly as a worker's sinks write them (`Store.upsert`) and its history reads them
(`Store.recall`): objects observed again and again, each alert bringing one new detection and its
three results (two classifiers with their class probabilities, one anomaly score); `--new-objects`
of the alerts are an object's first. Object ids are random 63-bit integers (no locality to lean
on), source ids and times increase as a survey's do, positions cover the sky. The alerts span
`--days`; each history read asks for what an alert's 12 months do not carry, so reads return
points once the stream is more than a year old.

Every `--report` alerts it prints the alerts stored so far, the store's size on disk (SQLite), and
the upsert and recall cost per alert over that stretch (p50 / p99 of its batches). The last line
is one JSON object.

    python bench/store_bench.py                              # 2,000,000 alerts into SQLite
    python bench/store_bench.py --dsn postgresql://host/db   # the same into PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.registry import Registry
from service.store import Store
from streaming.records import ClassificationRecord, Detection

PACKET_DAYS = 365.0  # what an alert carries; the history read asks for points older than that
FIRST_MJD = 61_000.0


def log(msg: str) -> None:
    print(f"[store {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def batches(n_alerts: int, batch: int, new_objects: float, days: float, seed: int
            ) -> Iterator[tuple[list[ClassificationRecord], list[Detection], dict[int, float]]]:
    """The store rows of a steady stream, one batch at a time: results, new detections, and the
    history read (object -> time before which its points are wanted)."""
    rng = np.random.default_rng(seed)
    models = [(m.name, m.version, m.class_ids, m.is_anomaly) for m in Registry().models.values()]
    objects = np.empty(0, dtype=np.int64)
    for start in range(0, n_alerts, batch):
        n = min(batch, n_alerts - start)
        # the first batch has no known objects to see again: all new
        new = rng.random(n) < new_objects if len(objects) else np.ones(n, dtype=bool)
        fresh = rng.integers(1, 2**63 - 1, int(new.sum()), dtype=np.int64)
        old = objects[rng.integers(0, len(objects), n - len(fresh))] if len(objects) else fresh[:0]
        obj = np.empty(n, dtype=np.int64)
        obj[new], obj[~new] = fresh, old
        objects = np.concatenate([objects, fresh])
        source = (start + np.arange(n, dtype=np.int64)) * 1_000 + 7  # increasing, as visits go by
        mjd = FIRST_MJD + (start + np.arange(n)) * (days / n_alerts)
        ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        band, flux = rng.integers(1, 7, n), rng.normal(5_000, 2_000, n)
        records, detections, before = [], [], {}
        now_ms = int(time.time() * 1000)
        for i in range(n):
            sid, oid, t = int(source[i]), int(obj[i]), float(mjd[i])
            detections.append(Detection(sid, oid, t, int(band[i]), float(flux[i]), 100.0))
            before[oid] = t - PACKET_DAYS
            for name, version, class_ids, is_anomaly in models:
                if is_anomaly:
                    classes, score = [], float(rng.random())
                else:
                    p = rng.dirichlet(np.ones(len(class_ids)))
                    classes, score = [{"classId": c, "probability": float(v)} for c, v in
                                      zip(class_ids, p, strict=True)], None
                records.append(ClassificationRecord(sid, oid, sid, name, version, float(ra[i]), float(dec[i]),
                                                    t, classes, None, "rubin-alerts", 0, start + i,
                                                    now_ms, now_ms, score))
        yield records, detections, before


def size_mb(dsn: str) -> float | None:
    """SQLite: the database file in MB, its write-ahead log aside (None for PostgreSQL)."""
    if dsn.startswith("postgres"):
        return None
    return round(Path(dsn).stat().st_size / 1e6, 1)


def run(store: Store, dsn: str, args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    upsert_us: list[float] = []
    recall_us: list[float] = []
    done, t_start = 0, time.monotonic()
    stream = batches(args.alerts, args.batch, args.new_objects, args.days, args.seed)
    for records, detections, before in stream:
        t0 = time.perf_counter()
        store.recall(before)
        t1 = time.perf_counter()
        store.upsert(records, detections)
        t2 = time.perf_counter()
        n = len(detections)
        recall_us.append((t1 - t0) / n * 1e6)
        upsert_us.append((t2 - t1) / n * 1e6)
        done += n
        if done % args.report < n or done == args.alerts:
            row = {"alerts_stored": done, "db_mb": size_mb(dsn),
                   "upsert_us_p50": round(float(np.percentile(upsert_us, 50)), 1),
                   "upsert_us_p99": round(float(np.percentile(upsert_us, 99)), 1),
                   "recall_us_p50": round(float(np.percentile(recall_us, 50)), 1),
                   "recall_us_p99": round(float(np.percentile(recall_us, 99)), 1)}
            rows.append(row)
            log(f"{done:>11,} alerts ({done / args.alerts:4.0%}, {time.monotonic() - t_start:5.0f} s): "
                f"upsert p50/p99 {row['upsert_us_p50']:.0f}/{row['upsert_us_p99']:.0f} us an alert, "
                f"recall {row['recall_us_p50']:.0f}/{row['recall_us_p99']:.0f}"
                + (f", {row['db_mb']:,.0f} MB on disk" if row["db_mb"] is not None else ""))
            upsert_us, recall_us = [], []
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=500, help="alerts per upsert, as a worker's batch")
    ap.add_argument("--new-objects", type=float, default=0.1,
                    help="fraction of alerts that are an object's first")
    ap.add_argument("--days", type=float, default=730.0, help="time the alerts span")
    ap.add_argument("--report", type=int, default=None, help="alerts between reports (default a tenth)")
    ap.add_argument("--dsn", default=None,
                    help="postgresql://... (default: a SQLite file in a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.alerts > 0 and args.batch > 0 and 0 < args.new_objects <= 1 and args.days > 0):
        ap.error("--alerts, --batch and --days must be positive, --new-objects in (0, 1]")
    args.report = args.report or max(args.batch, args.alerts // 10)
    with tempfile.TemporaryDirectory() as tmp:
        dsn = args.dsn or str(Path(tmp) / "store.sqlite3")
        store = Store(dsn)
        try:
            where = "PostgreSQL" if dsn.startswith("postgres") else dsn
            log(f"{args.alerts:,} alerts into {where}, batches of {args.batch}, "
                f"{args.new_objects:.0%} new objects, over {args.days:.0f} days")
            rows = run(store, dsn, args)
        finally:
            store.close()
    print(json.dumps({"store": "postgresql" if dsn.startswith("postgres") else "sqlite",
                      "alerts": args.alerts, "batch": args.batch, "new_objects": args.new_objects,
                      "days": args.days, "stretches": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
