"""HTTP figures against a running `alert-classifier serve` (uvicorn, one process):

1. POST /v1/classify latency p50/p99 and requests/s: one Avro alert per request, and 100 JSON
   alerts per request (30-point histories);
2. query latency on a store of `--rows` classifications (default 1,000,000): object history,
   class + probability filter, time window, cone search, each through HTTP.

    .venv/bin/python bench/http_bench.py [--rows 1000000]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from service.store import Store
from streaming import local_broker
from streaming.decode import Decoder, latest_version
from streaming.records import ClassificationRecord
from streaming.simulate import simulate_alerts

VERSION = latest_version()


def log(msg: str) -> None:
    print(f"[http-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fill_store(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` classifications (half rrlyrae, half supernova) over the whole sky and a year."""
    store = Store(path)
    rng = np.random.default_rng(seed)
    n_alerts = rows // 2
    chunk = 20_000
    for start in range(0, n_alerts, chunk):
        n = min(chunk, n_alerts - start)
        ra = rng.uniform(0, 360, n)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        mjd = rng.uniform(60500, 60865, n)
        p = rng.random(n)
        objects = rng.integers(1, n_alerts // 5 + 2, n)
        records = []
        for i in range(n):
            sid = start + i + 1
            for clf, classes in (("rrlyrae", [{"classId": 200, "probability": float(1 - p[i])},
                                               {"classId": 2323, "probability": float(p[i])}]),
                                 ("supernova", [{"classId": 200, "probability": float(p[i])},
                                                {"classId": 2222, "probability": float(1 - p[i])}])):
                records.append(ClassificationRecord(sid, int(objects[i]), sid, clf, "1.0.0", float(ra[i]),
                                                    float(dec[i]), float(mjd[i]), classes, None, "bench", 0,
                                                    sid, 0, 0))
        store.upsert(records)
        log(f"  store: {min(start + chunk, n_alerts) * 2:,}/{rows:,} rows")
    store.close()


def percentiles(samples: list[float]) -> dict:
    a = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def timed(client: httpx.Client, n: int, request) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = request(client, i)
        out.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise SystemExit(f"request failed: {r.status_code} {r.text[:300]}")
    return out


def throughput(url: str, n: int, request, workers: int = 4) -> float:
    def run(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            for j in range(i, n, workers):
                request(c, j)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(workers)))
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="http-bench-"))
    store_path = workdir / "classifications.sqlite3"
    log(f"filling a store with {args.rows:,} classifications")
    fill_store(store_path, args.rows)

    decoder = Decoder()
    records = list(simulate_alerts(200, history=30, seed=1))
    packets = [decoder.encode(r, VERSION) for r in records]
    batch = json.dumps([decoder.decode(p).record for p in packets[:100]],
                       default=lambda b: None).encode()

    port = local_broker.free_port()
    env = {**os.environ, "ALERT_CLASSIFIER_DATA_DIR": str(workdir), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        results: dict = {}
        avro_headers = {"content-type": "application/avro"}

        def single(c, i):
            return c.post("/v1/classify", content=packets[i % len(packets)], headers=avro_headers)

        def hundred(c, _i):
            return c.post("/v1/classify", content=batch, headers={"content-type": "application/json"})

        with httpx.Client(base_url=url, timeout=60) as c:
            timed(c, 20, single)  # warm-up
            results["classify_single"] = {**percentiles(timed(c, args.requests, single)),
                                          "requests_per_s": round(throughput(url, args.requests, single), 1)}
            log(f"  single: {results['classify_single']}")
            results["classify_batch_100"] = {**percentiles(timed(c, 30, hundred)),
                                             "requests_per_s": round(throughput(url, 30, hundred), 2)}
            results["classify_batch_100"]["alerts_per_s"] = round(
                results["classify_batch_100"]["requests_per_s"] * 100, 1)
            log(f"  batch of 100: {results['classify_batch_100']}")
            rng = np.random.default_rng(2)
            queries = {
                "object_history": lambda c, i: c.get(f"/v1/objects/{int(rng.integers(1, args.rows // 10))}"),
                "class_and_probability": lambda c, i: c.get(
                    "/v1/classifications", params={"classId": 2323, "min_probability": 0.99, "limit": 100}),
                "classifier_time_window": lambda c, i: c.get(
                    "/v1/classifications", params={"classifier": "supernova", "since": 60600 + i % 200,
                                                   "until": 60601 + i % 200, "limit": 100}),
                "cone_60_arcsec": lambda c, i: c.get("/v1/classifications", params={
                    "ra": float(rng.uniform(0, 360)), "dec": float(rng.uniform(-60, 60)), "radius": 60}),
                "cone_1_deg": lambda c, i: c.get("/v1/classifications", params={
                    "ra": float(rng.uniform(0, 360)), "dec": float(rng.uniform(-60, 60)), "radius": 3600}),
            }
            results["queries"] = {}
            for name, q in queries.items():
                for i in range(5):  # warm-up (an object id may not exist: 404 is fine)
                    q(c, i)
                samples = []
                for i in range(100):
                    t0 = time.perf_counter()
                    r = q(c, i)
                    samples.append(time.perf_counter() - t0)
                    assert r.status_code in (200, 404), r.text
                results["queries"][name] = percentiles(samples)
                log(f"  {name}: {results['queries'][name]}")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)  # the store and its write-ahead log: hundreds of MB
    results["store_rows"] = args.rows
    print(json.dumps(results))


if __name__ == "__main__":
    main()
