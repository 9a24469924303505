"""Soak: a night's worth of trouble on a real 3-broker cluster with PostgreSQL, then the accounting.

Alerts flow from a simulated night (objects observed again and again, so histories grow); one in ten
is malformed, cycling through every kind in `streaming.faults` (bad bytes, bad values, duplicates,
bad history points). Two `alert-classifier worker` processes consume them while faults strike at
random moments (seeded): each worker killed with SIGKILL and restarted (three kills), one broker
killed with SIGKILL and restarted, PostgreSQL restarted once. At the end, from what is durable (the
store and the dead-letter topic), every produced offset is accounted for per partition: consumed =
classified + declined + dead-lettered; dead letters equal the malformed packets that must be dead
letters, by reason; no duplicate store rows; stalls (from the workers' logs) and peak RSS. The last
line is one JSON object.

    python bench/soak.py                      # 100,000 alerts (~15 min on 2 cores)
    python bench/soak.py --count 3000 --worker-kills 1   # the short version (a test runs it)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from models.errors import AlertClassifierError
from models.registry import Registry
from service.settings import Settings
from service.store import Store
from streaming import local_broker
from streaming.decode import Decoder
from streaming.faults import DEAD, DUPLICATE, KINDS, expected, malformed
from streaming.kafka import create_topics, produce, producer_config, read_topic
from streaming.simulate import NightSimulator

N_MODELS = len(Registry().models)


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Postgres:
    """A throwaway PostgreSQL cluster from the Debian binaries, so the soak can restart it."""

    def __init__(self, root: Path) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise SystemExit("PostgreSQL binaries not found: apt-get install postgresql, "
                             "or run with --store sqlite")
        self.bin, self.dir, self.port = found[-1].parent, root / "pg", local_broker.free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/alerts"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["su", "postgres", "-c", shlex.join(cmd)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{args[0]} failed: {done.stderr.strip()[-1000:]}")

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "alerts"], check=True)

    def restart(self) -> None:
        # -l again: without it the new server writes to our pipe and the call never returns
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-m", "fast", "-w",
                  "restart")

    def stop(self) -> None:
        with contextlib.suppress(SystemExit):
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "stop")


def make_stream(count: int, seed: int) -> list[tuple[str, bytes, bytes | None, int | None]]:
    """(kind, packet, key, diaSourceId) for `count` messages; every tenth malformed."""
    sim = NightSimulator(seed, pool_size=3000)
    decoder = Decoder()
    out: list[tuple[str, bytes, bytes | None, int | None]] = []
    last_valid = None
    for i, record in enumerate(sim.alerts(count)):
        key = str(record["diaSource"]["diaObjectId"]).encode()
        if i % 10 != 9:
            last_valid = ("valid", decoder.encode(record, sim.version), key,
                          record["diaSource"]["diaSourceId"])
            out.append(last_valid)
            continue
        kind = KINDS[(i // 10) % len(KINDS)]
        if kind == DUPLICATE and last_valid is not None:
            out.append((kind, *last_valid[1:]))
            continue
        judged = expected(kind).outcome != DEAD
        out.append((kind, malformed(kind, record, sim.version, decoder), key if judged else None,
                    record["diaSource"]["diaSourceId"] if judged else None))
    return out


class Feeder(threading.Thread):
    """Produces the stream at a steady rate; remembers where each message landed."""

    def __init__(self, bootstrap: str, topic: str, stream: list, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.stream, self.rate = bootstrap, topic, stream, rate
        self.placed: dict[int, tuple[int, int]] = {}
        self.failed: list[str] = []

    def run(self) -> None:
        producer = Producer(producer_config(self.bootstrap, **{"log_level": 0}))
        t0 = time.monotonic()
        for i, (_kind, value, key, _sid) in enumerate(self.stream):
            def delivered(err, msg, i=i) -> None:
                if err is None:
                    self.placed[i] = (msg.partition(), msg.offset())
                else:
                    self.failed.append(str(err))
            produce(producer, self.topic, value, key, on_delivery=delivered)
            producer.poll(0)
            ahead = (i + 1) / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush(300)


class Workers:
    """`alert-classifier worker` processes, restarted when killed (as a process manager would)."""

    def __init__(self, n: int, env: dict, logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.starts = 0
        self.log_paths: dict[int, Path] = {}
        self.peak_rss_mb = 0.0
        for i in range(n):
            self.start(i)

    def start(self, i: int) -> None:
        self.starts += 1
        self.log_paths[i] = self.logs / f"worker-{i}-{self.starts}.log"
        with open(self.log_paths[i], "wb") as fh:
            self.procs[i] = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=self.env,
                                             stdout=subprocess.DEVNULL, stderr=fh)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log(f"worker {i} killed with SIGKILL (pid {proc.pid}); restarting it")
        self.start(i)

    def sample_rss(self) -> None:
        for proc in self.procs:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            # An exited worker not yet reaped (a zombie) has no VmRSS line; exits() deals with it.
            rss = [line for line in status.splitlines() if line.startswith("VmRSS")]
            rss_kb = int(rss[0].split()[1]) if rss else 0
            self.peak_rss_mb = max(self.peak_rss_mb, rss_kb / 1024)

    def log_tail(self, i: int, lines: int = 15) -> str:
        text = self.log_paths[i].read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def exits(self) -> list[int | None]:
        return [p.poll() for p in self.procs]

    def stop(self) -> list[int]:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        return [proc.wait(120) for proc in self.procs]

    def stalls(self) -> int:
        return sum(f.read_text(errors="replace").count("stalled for") for f in self.logs.glob("worker-*.log"))


def committed_lag(bootstrap: str, topic: str, group: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        lag = 0
        for tp in parts:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def account(stream: list, placed: dict, store: Store, bootstrap: str, topics: dict, partitions: int) -> dict:
    """Every produced offset: classified, declined or dead-lettered, from the store and the DLQ."""
    with store._connection() as conn:
        cur = conn.cursor()
        cur.execute("SELECT dia_source_id, COUNT(*), SUM(CASE WHEN reason IS NULL THEN 1 ELSE 0 END), "
                    "COUNT(DISTINCT classifier) FROM classifications GROUP BY dia_source_id")
        stored = {int(sid): (int(n), int(ok or 0), int(classifiers))
                  for sid, n, ok, classifiers in cur.fetchall()}
    dead: dict[tuple[int, int], str] = {}
    dlq = read_topic(bootstrap, topics["dead_letter_topic"], quiet_s=5.0)
    for m in dlq:
        h = {k: v.decode() for k, v in m.headers()}
        dead[(int(h["source_partition"]), int(h["source_offset"]))] = h["reason"]
    per_partition: dict[int, Counter] = defaultdict(Counter)
    expected_dead: Counter = Counter()
    got_dead: Counter = Counter()
    problems: list[str] = []
    for i, (kind, _value, _key, sid) in enumerate(stream):
        where = placed.get(i)
        if where is None:
            problems.append(f"message {i} ({kind}) was never acknowledged by the cluster")
            continue
        part = per_partition[where[0]]
        part["consumed"] += 1
        want = expected(kind) if kind != "valid" else None
        if want is not None and want.outcome == DEAD:
            expected_dead[want.reason] += 1
        if where in dead:
            part["dead_lettered"] += 1
            got_dead[dead[where]] += 1
            if want is None or want.outcome != DEAD or dead[where] != want.reason:
                problems.append(f"offset {where} ({kind}) dead-lettered as {dead[where]}")
        elif sid is not None and sid in stored:
            part["classified" if stored[sid][1] else "declined"] += 1
        else:
            part["missing"] += 1
            problems.append(f"offset {where} ({kind}) is neither stored nor dead-lettered")
    rows = sum(n for n, _, _ in stored.values())
    return {
        "per_partition": {p: dict(c) for p, c in sorted(per_partition.items())},
        "adds_up": all(c["consumed"] == c["classified"] + c["declined"] + c["dead_lettered"]
                       for c in per_partition.values()),
        "dead_letters_by_reason": dict(sorted(got_dead.items())),
        "malformed_expected_dead_by_reason": dict(sorted(expected_dead.items())),
        "dead_letters_equal_malformed": got_dead == expected_dead,
        "dead_letter_messages_incl_redelivered": len(dlq),
        "store_rows": rows, "store_alerts": len(stored),
        "duplicate_store_rows": rows - sum(c for _, _, c in stored.values()),
        "problems": problems[:10], "n_problems": len(problems),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=300.0, help="alerts/s produced")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-kills", type=int, default=3)
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = Settings()
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user
    t0 = time.monotonic()
    log(f"building {args.count} messages ({args.count // 10} malformed, {len(KINDS)} kinds)")
    stream = make_stream(args.count, args.seed)
    cluster = local_broker.start(settings.kafka_cache_dir, nodes=3)
    pg = None
    try:
        if args.store == "postgres":
            pg = Postgres(root)
            pg.start()
            dsn = pg.dsn
        else:
            dsn = str(root / "soak.sqlite3")
        store = Store(dsn)
        bootstrap, partitions = cluster.bootstrap_servers, 4
        tag = uuid.uuid4().hex[:8]
        topics = {"topic": f"soak-{tag}", "output_topic": f"soak-out-{tag}",
                  "dead_letter_topic": f"soak-dlq-{tag}", "group": f"soak-{tag}"}
        create_topics(bootstrap, [topics["topic"], topics["output_topic"], topics["dead_letter_topic"]],
                      partitions)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_CLASSIFIER_")}
        env.update({"ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "ALERT_CLASSIFIER_ALERT_TOPIC": topics["topic"],
                    "ALERT_CLASSIFIER_OUTPUT_TOPIC": topics["output_topic"],
                    "ALERT_CLASSIFIER_DEAD_LETTER_TOPIC": topics["dead_letter_topic"],
                    "ALERT_CLASSIFIER_CONSUMER_GROUP": topics["group"], "ALERT_CLASSIFIER_STORE_DSN": dsn,
                    "ALERT_CLASSIFIER_BATCH_SIZE": "200", "OMP_NUM_THREADS": "1"})
        workers = Workers(args.workers, env, root)
        feeder = Feeder(bootstrap, topics["topic"], stream, args.rate)
        feeder.start()
        # faults at random moments of the run (fractions of the stream produced)
        faults = sorted([(rng.uniform(0.1, 0.85), "worker_kill") for _ in range(args.worker_kills)]
                        + [(rng.uniform(0.2, 0.4), "broker_kill"),
                           (rng.uniform(0.5, 0.7), "postgres_restart")])
        if pg is None:
            faults = [f for f in faults if f[1] != "postgres_restart"]
        log(f"faults at {[(round(f, 2), what) for f, what in faults]} of the stream")
        killed_node, restart_at = None, None
        while True:
            done = len(feeder.placed) / len(stream)
            while faults and done >= faults[0][0]:
                _, what = faults.pop(0)
                if what == "worker_kill":
                    workers.kill(rng.randrange(args.workers))
                elif what == "broker_kill":
                    killed_node = rng.choice([n.node_id for n in cluster.nodes])
                    local_broker.kill_node(cluster, killed_node)
                    restart_at = time.monotonic() + 20
                else:
                    log("restarting PostgreSQL")
                    pg.restart()
            if killed_node is not None and time.monotonic() >= restart_at:
                local_broker.restart_node(cluster, killed_node, settings.kafka_cache_dir)
                killed_node = None
            workers.sample_rss()
            dead = [i for i, code in enumerate(workers.exits()) if code is not None]
            for i in dead:
                log(f"worker {i} exited by itself with {workers.procs[i].returncode}: restarting it; its log "
                    f"ended:\n{workers.log_tail(i)}")
                workers.start(i)
            if not feeder.is_alive() and not faults and killed_node is None:
                lag = committed_lag(bootstrap, topics["topic"], topics["group"], partitions)
                if lag == 0:
                    break
                print(f"\rsoak: produced {len(feeder.placed)}/{len(stream)}, lag {lag}     ", end="",
                      file=sys.stderr, flush=True)
            else:
                print(f"\rsoak: produced {len(feeder.placed)}/{len(stream)}     ", end="", file=sys.stderr,
                      flush=True)
            time.sleep(1)
        print(file=sys.stderr)
        unexpected_exits = sum(1 for f in root.glob("worker-*.log")
                               if "Traceback" in f.read_text(errors="replace"))
        codes = workers.stop()
        log("accounting")
        store.close()
        report = account(stream, feeder.placed, Store(dsn), bootstrap, topics, partitions)
        out = read_topic(bootstrap, topics["output_topic"], quiet_s=5.0)
        judged = sum(1 for *_, sid in stream if sid is not None)  # each one's results are published
        report.update({
            "alerts": len(stream), "malformed": sum(1 for k, *_ in stream if k != "valid"),
            "malformed_kinds": len(KINDS), "workers": args.workers, "worker_kills": args.worker_kills,
            "broker_kills": 1, "postgres_restarts": 1 if pg else 0, "store": args.store,
            "stalls": workers.stalls(), "worker_tracebacks": unexpected_exits, "worker_exit_codes": codes,
            "output_records": len(out), "output_duplicates": len(out) - judged * N_MODELS,
            "produce_failures": len(feeder.failed), "peak_rss_mb": round(workers.peak_rss_mb),
            "seconds": round(time.monotonic() - t0)})
        ok = (report["adds_up"] and report["dead_letters_equal_malformed"] and not report["n_problems"]
              and report["duplicate_store_rows"] == 0 and report["stalls"] == 0)
        report["ok"] = ok
        print(json.dumps(report))
        return 0 if ok else 1
    except AlertClassifierError as exc:
        log(f"error ({exc.reason}): {exc}")
        return 2
    finally:
        local_broker.stop(cluster)
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
