"""Classification store: SQLite (default, WAL) or PostgreSQL (a DSN), one interface, same SQL.

Rows are upserted on (diaSourceId, classifier, version), so a replayed alert never duplicates.
Positions are also kept as unit vectors so a cone search is exact arithmetic in SQL (no trig
functions needed, correct across RA 0/360 and at the poles) after an indexed declination cut.
It also keeps every detection of each object (`sources`), so light curves grow past the 12 months
an alert carries (`recall`). Schema creation and upgrades are automatic and versioned
(`schema_version` table).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking alone
    fcntl = None

import numpy as np
import orjson

from models.errors import StoreError, StoreRejected
from service import anomaly_store
from service.anomaly_store import AnomalyTables
from streaming.lightcurve import LightCurve
from streaming.records import ClassificationRecord, Detection

log = logging.getLogger("alert_classifier.store")

# Each migration is a list of statements; `{id}` is the auto-increment key of the dialect.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS classifications (
            id {id},
            dia_source_id BIGINT NOT NULL,
            classifier TEXT NOT NULL,
            version TEXT NOT NULL,
            dia_object_id BIGINT,
            alert_id BIGINT NOT NULL,
            ra DOUBLE PRECISION NOT NULL,
            dec DOUBLE PRECISION NOT NULL,
            cx DOUBLE PRECISION NOT NULL,
            cy DOUBLE PRECISION NOT NULL,
            cz DOUBLE PRECISION NOT NULL,
            mjd DOUBLE PRECISION NOT NULL,
            top_class INTEGER NOT NULL,
            top_probability REAL NOT NULL,
            classifications TEXT NOT NULL,
            reason TEXT,
            topic TEXT,
            kafka_partition INTEGER,
            kafka_offset BIGINT,
            alert_timestamp_ms BIGINT,
            ingest_timestamp_ms BIGINT,
            UNIQUE (dia_source_id, classifier, version)
        )""",
        "CREATE INDEX IF NOT EXISTS ix_cls_object ON classifications (dia_object_id, mjd)",
        "CREATE INDEX IF NOT EXISTS ix_cls_mjd ON classifications (mjd)",
        "CREATE INDEX IF NOT EXISTS ix_cls_dec ON classifications (dec)",
        "CREATE INDEX IF NOT EXISTS ix_cls_classifier ON classifications (classifier, id)",
        """CREATE TABLE IF NOT EXISTS probabilities (
            classification_id BIGINT NOT NULL,
            class_id INTEGER NOT NULL,
            probability REAL NOT NULL,
            PRIMARY KEY (classification_id, class_id)
        )""",
        "CREATE INDEX IF NOT EXISTS ix_prob_class ON probabilities (class_id, probability)",
    ],
    [
        # covering: class filters count and collect their rows from the index alone
        "CREATE INDEX IF NOT EXISTS ix_prob_class_row ON probabilities (class_id, probability, "
        "classification_id)",
        "DROP INDEX IF EXISTS ix_prob_class",
    ],
    [
        # every detection of each object: light curves beyond an alert's 12 months. Keyed by object
        # and time, one B-tree serves the duplicate check and the reads (an object's points before a
        # time: a range, already in order); SQLite WITHOUT ROWID: half the insert cost of a rowid
        # table plus an index.
        """CREATE TABLE IF NOT EXISTS sources (
            dia_object_id BIGINT NOT NULL,
            dia_source_id BIGINT NOT NULL,
            mjd DOUBLE PRECISION NOT NULL,
            band SMALLINT NOT NULL,
            flux DOUBLE PRECISION NOT NULL,
            flux_err DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (dia_object_id, mjd, dia_source_id)
        ){without_rowid}""",
    ],
    [
        # nightly statistics: a few dozen counters per night (streaming/nightly.py), whatever the volume
        """CREATE TABLE IF NOT EXISTS nightly (
            night TEXT NOT NULL,
            metric TEXT NOT NULL,
            value BIGINT NOT NULL,
            PRIMARY KEY (night, metric)
        )""",
    ],
    anomaly_store.MIGRATION,
]
ADD_NIGHTLY = """INSERT INTO nightly (night, metric, value) VALUES (?, ?, ?)
    ON CONFLICT (night, metric) DO UPDATE SET value = nightly.value + excluded.value"""

# A detection never changes once measured: a replayed alert's points are already there.
_DETECTION_ORDER = itemgetter(1, 2, 0)  # (dia_object_id, mjd, dia_source_id): the table's key
INSERT_SOURCE = """INSERT INTO sources (dia_source_id, dia_object_id, mjd, band, flux, flux_err)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dia_object_id, mjd, dia_source_id) DO NOTHING"""
# PostgreSQL takes new rows by COPY, ~4x faster than executemany (500 alerts of 31 new detections:
# 884-1,316 -> 196-319 us per alert); COPY has no ON CONFLICT, so a row already there (a replay, two
# workers during a rebalance) sends the batch's rows of that table through the conflict clause instead.
SOURCE_COLUMNS = ("dia_source_id", "dia_object_id", "mjd", "band", "flux", "flux_err")  # Detection's order
STAGE_SOURCES = """CREATE TEMP TABLE IF NOT EXISTS sources_in (dia_source_id BIGINT, dia_object_id BIGINT,
    mjd DOUBLE PRECISION, band SMALLINT, flux DOUBLE PRECISION, flux_err DOUBLE PRECISION)
    ON COMMIT DELETE ROWS"""
INSERT_STAGED_SOURCES = """INSERT INTO sources (dia_source_id, dia_object_id, mjd, band, flux, flux_err)
    SELECT * FROM sources_in ORDER BY dia_object_id, mjd, dia_source_id
    ON CONFLICT (dia_object_id, mjd, dia_source_id) DO NOTHING"""
# SQLite takes rows as multi-row VALUES lists, up to this many rows a statement (and within its
# parameter limit): one call per 500 rows instead of one per row (31 new detections per alert 143 ->
# 92 us), and one release of the GIL instead of one per row, which matters while the worker's next
# batch holds it.
ROWS_PER_INSERT = 500
RECALL_CHUNK = 500  # objects per read (one VALUES list)
# The most recent stored detections added per object: bounds the features' cost for objects observed
# thousands of times (deep drilling fields); ten years of Rubin's main survey give fewer.
RECALL_MAX_POINTS = 1000
# SQLite copies its write-ahead log back into the database (a checkpoint, ending in an fsync) inside
# whichever commit crosses 1,000 pages: on the worker's hot path, a third of `upsert`'s time. A thread
# of the store runs passive checkpoints instead, beside the worker's computing (upsert of 10,000
# alerts with 31 new detections each: 299-606 -> 276-384 us per alert as the store grows); writers
# keep a larger threshold of their own in case the thread falls behind (80 MB of log).
CHECKPOINT_INTERVAL_S = 0.5
WAL_BACKSTOP_PAGES = 20_000
# SQLite's page cache on the connections that write results (a worker's sinks, HTTP `store=true`):
# each alert's rows go into a dozen indexes at random places (object, position, class probability,
# anomaly score), and once the store outgrows the default 2 MB cache every such leaf page is read
# again from the OS on each insert. `bench/store_bench.py`, 100k-400k alerts stored: upsert 165-226
# -> 111-167 us an alert (64 MB: the same). Readers (API threads) keep the default: there may be
# dozens of them.
WRITER_CACHE_KIB = 32_768
# Writers of one SQLite file take turns through an OS lock beside it (`<file>-writer.lock`) before
# SQLite's own: a waiter sleeps in the kernel and wakes when the lock is free, where SQLite's busy
# handler polls with sleeps of up to 100 ms. Two workers at 30+30 points waited 290-380 ms a run for
# SQLite's lock, 200-250 for this one; 2,763 -> 2,856 alerts/s (five interleaved pairs, 4 higher).
WRITER_LOCK_SUFFIX = "-writer.lock"
# Rows per pruning step: each step is its own short transaction, so writers (the workers) interleave.
PRUNE_BATCH = 5000

CLASSIFICATION_COLUMNS = (  # UPSERT's and _row_values' order
    "dia_source_id", "classifier", "version", "dia_object_id", "alert_id", "ra", "dec", "cx", "cy", "cz",
    "mjd", "top_class", "top_probability", "classifications", "reason", "topic", "kafka_partition",
    "kafka_offset", "alert_timestamp_ms", "ingest_timestamp_ms")
UPSERT = """INSERT INTO classifications (dia_source_id, classifier, version, dia_object_id, alert_id,
    ra, dec, cx, cy, cz, mjd, top_class, top_probability, classifications, reason, topic,
    kafka_partition, kafka_offset, alert_timestamp_ms, ingest_timestamp_ms)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (dia_source_id, classifier, version) DO UPDATE SET
    dia_object_id = excluded.dia_object_id, alert_id = excluded.alert_id, ra = excluded.ra,
    dec = excluded.dec, cx = excluded.cx, cy = excluded.cy, cz = excluded.cz, mjd = excluded.mjd,
    top_class = excluded.top_class, top_probability = excluded.top_probability,
    classifications = excluded.classifications, reason = excluded.reason, topic = excluded.topic,
    kafka_partition = excluded.kafka_partition, kafka_offset = excluded.kafka_offset,
    alert_timestamp_ms = excluded.alert_timestamp_ms, ingest_timestamp_ms = excluded.ingest_timestamp_ms"""

PROBABILITY_COLUMNS = ("classification_id", "class_id", "probability")
UPSERT_PROBABILITY = """INSERT INTO probabilities (classification_id, class_id, probability)
    VALUES (?, ?, ?) ON CONFLICT (classification_id, class_id)
    DO UPDATE SET probability = excluded.probability"""

COLUMNS = ("id", "dia_source_id", "classifier", "version", "dia_object_id", "alert_id", "ra", "dec",
           "mjd", "top_class", "top_probability", "classifications", "reason", "topic",
           "kafka_partition", "kafka_offset", "alert_timestamp_ms", "ingest_timestamp_ms")


@cache
def _with_rows(sql: str, rows: int) -> str:
    """An INSERT of one VALUES tuple with `rows` tuples instead."""
    start = sql.index("VALUES (") + len("VALUES ")
    end = sql.index(")", start) + 1
    return sql[:start] + ", ".join([sql[start:end]] * rows) + sql[end:]


def _insert_rows(cur, sql: str, rows: Sequence[tuple]) -> None:
    """SQLite: `sql` (an INSERT of one VALUES tuple) for every row, ROWS_PER_INSERT rows a statement."""
    if not rows:
        return
    max_params = cur.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per_statement = min(ROWS_PER_INSERT, max_params // len(rows[0]))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        cur.execute(_with_rows(sql, len(chunk)), list(chain.from_iterable(chunk)))


def _rejects_the_data(exc: Exception) -> bool:
    """Permanent: the rows themselves are refused (constraint, value out of range, unbindable
    value); retrying the same rows cannot help. Everything else (connection lost, database
    locked, timeout) is transient."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | ValueError | TypeError | OverflowError):
        return True
    module = type(exc).__module__
    if module.startswith("psycopg"):
        import psycopg

        return isinstance(exc, psycopg.errors.IntegrityError | psycopg.errors.DataError)
    return False


def unit_vector(ra_deg: float, dec_deg: float) -> tuple[float, float, float]:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)


@dataclass(frozen=True)
class Cone:
    ra: float
    dec: float
    radius_arcsec: float


# Class filters matching fewer than this many rows per requested row are collected from the
# (covering) probabilities index; above it, probing rows in id order finds `limit` matches sooner.
# On 1M rows (limit 100): p >= 0.9999 524 -> 0.7 ms, p >= 0.99 11 -> 5 ms, unselective 0.7 -> 2.4 ms
# (the capped count).
SELECTIVE_MATCHES = 100
# Probabilities are stored as REAL (float4 in PostgreSQL): thresholds are cast to it too, so
# min_probability=0.95 keeps a stored 0.95 (and the index serves the comparison).
CLASS_MATCH = "class_id = ? AND probability >= CAST(? AS REAL) AND classification_id > ?"


@dataclass(frozen=True)
class Query:
    classifier: str | None = None
    class_id: int | None = None
    min_probability: float | None = None
    since_mjd: float | None = None
    until_mjd: float | None = None
    cone: Cone | None = None
    after_id: int = 0  # cursor: rows with a larger id
    limit: int = 100


_PROBABILITY = itemgetter("probability")


def _row_values(r: ClassificationRecord) -> tuple:
    top = max(r.classifications, key=_PROBABILITY)
    if not all(math.isfinite(c["probability"]) for c in r.classifications):
        raise ValueError(f"a probability is not a finite number: {r.classifications}")
    return (r.dia_source_id, r.classifier, r.version, r.dia_object_id, r.alert_id, r.ra, r.dec,
            *unit_vector(r.ra, r.dec), r.mjd, top["classId"], top["probability"],
            _json(r.classifications), r.reason, r.topic, r.partition, r.offset,
            r.alert_timestamp_ms, r.ingest_timestamp_ms)


def _json(value: object) -> str:
    # orjson: ~10x faster than json (1,000 rows a stream batch); it writes NaN as null, so the
    # caller refuses non-finite probabilities first
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _copy_rows(cur, table: str, columns: Sequence[str], rows: Sequence[tuple], fallback: Callable[[], None]
               ) -> None:
    """PostgreSQL: `rows` into `table` by COPY, in their order (the key order: see `upsert`), inside a
    savepoint. If a row's key is already there, the savepoint is rolled back and `fallback` writes the
    rows with its conflict clause, in the same transaction."""
    import psycopg

    if not rows:
        return
    cur.execute("SAVEPOINT copy_rows")
    try:
        _copy_in(cur, table, columns, rows)
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT copy_rows")
        fallback()
    cur.execute("RELEASE SAVEPOINT copy_rows")


def _stage_detections(cur, detections: list[Detection]) -> None:
    """PostgreSQL, when some are already kept: through a staging table, ON CONFLICT DO NOTHING."""
    cur.execute(STAGE_SOURCES)
    _copy_in(cur, "sources_in", SOURCE_COLUMNS, detections)
    cur.execute(INSERT_STAGED_SOURCES)


def _copy_in(cur, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class _Checkpointer:
    """A daemon thread with its own connection: a passive WAL checkpoint every `interval_s` (it waits
    for no reader or writer; several processes' threads on one file take turns)."""

    def __init__(self, path: str, interval_s: float) -> None:
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(path, interval_s, self._stopped),
                                       name="sqlite-checkpoint", daemon=True)
        self.thread.start()

    @staticmethod
    def _run(path: str, interval_s: float, stopped: threading.Event) -> None:
        # refers to nothing of the Store, so a store dropped without close() is collected (and stops it)
        conn = None
        while not stopped.wait(interval_s):
            try:
                conn = conn or sqlite3.connect(path, timeout=interval_s, check_same_thread=False)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # busy, or the file went away: the writers' backstop remains
                log.debug("WAL checkpoint of %s: %s", path, exc)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stopped.set()


class Store(AnomalyTables):
    """SQLite when `dsn` is a path (or empty), PostgreSQL when it starts with postgresql://."""

    def __init__(self, dsn: str | Path) -> None:
        self.dsn = str(dsn)
        self.is_postgres = self.dsn.startswith(("postgresql://", "postgres://"))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None
        self._writer_fd: int | None = None
        with self._connection() as conn:
            self._migrate(conn)

    # --- connections --------------------------------------------------------------------------

    def _connect(self):
        try:
            if self.is_postgres:
                import psycopg

                return psycopg.connect(self.dsn, autocommit=False)
            Path(self.dsn).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.dsn, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            return conn
        except Exception as exc:  # noqa: BLE001 - any driver error: the store is unavailable
            raise StoreError(f"cannot open the store {self._safe_dsn()}: {exc}") from None

    def _safe_dsn(self) -> str:
        return self.dsn.split("@")[-1] if self.is_postgres else self.dsn

    @contextmanager
    def _connection(self):
        """One connection per thread, reused; a transaction per `with` block."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        try:
            yield conn
            conn.commit()
        except (StoreError, StoreRejected):
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - the connection died meanwhile: open a new one next time
                self._discard(conn)
            raise
        except Exception as exc:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - the connection itself is gone
                self._local.conn = None
            if _rejects_the_data(exc):
                raise StoreRejected(f"the store refused the data ({type(exc).__name__}): {exc}") from exc
            # Connection lost, server restarted, database locked: start afresh next time (a dead
            # PostgreSQL connection can still roll back without error, and would fail for ever).
            self._discard(conn)
            raise StoreError(f"store operation failed on {self._safe_dsn()}: {exc}") from exc

    def _discard(self, conn) -> None:
        self._local.conn = None
        with contextlib.suppress(Exception):  # already closed
            conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.is_postgres else sql

    def _migrate(self, conn) -> None:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        cur.execute("SELECT MAX(version) FROM schema_version")
        current = cur.fetchone()[0] or 0
        id_type = "BIGSERIAL PRIMARY KEY" if self.is_postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            for stmt in statements:
                cur.execute(stmt.replace("{id}", id_type)
                            .replace("{without_rowid}", "" if self.is_postgres else " WITHOUT ROWID"))
            cur.execute(self._sql("INSERT INTO schema_version (version) VALUES (?)"), (version,))

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._writer_fd is not None:
            os.close(self._writer_fd)
            self._writer_fd = None

    # --- writes -------------------------------------------------------------------------------

    def upsert(self, records: Sequence[ClassificationRecord], detections: Sequence[Detection] = ()) -> None:
        """All records and new detections (for the history) in one transaction; idempotent on
        (diaSourceId, classifier, version) and on the detections' (diaObjectId, mjd, diaSourceId)."""
        if not records and not detections:
            return
        # Rows go in key order: concurrent writers (one object's alerts on two partitions, a replay
        # during a rebalance) then lock shared keys in the same order and cannot deadlock.
        detections = sorted(detections, key=_DETECTION_ORDER)
        records = sorted(records, key=lambda r: (r.dia_source_id, r.classifier, r.version))
        scores = [r for r in records if r.is_anomaly]
        records = [r for r in records if not r.is_anomaly]
        try:
            rows = [_row_values(r) for r in records]
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise StoreRejected(f"a result cannot be stored ({type(exc).__name__}): {exc}") from exc
        self._start_checkpointer()
        with self._writing() as conn:
            self._as_writer(conn)
            cur = conn.cursor()
            if detections:
                self._insert_detections(cur, detections)
            if self.is_postgres:
                _copy_rows(cur, "anomaly_scores", anomaly_store.SCORE_COLUMNS,
                           [anomaly_store.score_row(r) for r in scores],
                           lambda: self._upsert_scores(cur, scores))
            else:
                self._upsert_scores(cur, scores)
            if not records:
                return
            self._write_rows(cur, "classifications", CLASSIFICATION_COLUMNS, rows, UPSERT)
            keys = [(r.dia_source_id, r.classifier, r.version) for r in records]
            ids = self._ids(cur, keys)
            probs = sorted((ids[key], c["classId"], c["probability"])
                           for r, key in zip(records, keys, strict=True) for c in r.classifications)
            self._write_rows(cur, "probabilities", PROBABILITY_COLUMNS, probs, UPSERT_PROBABILITY)

    def _write_rows(self, cur, table: str, columns: Sequence[str], rows: list[tuple], upsert: str) -> None:
        """New rows by COPY on PostgreSQL (the upsert where some exist), the upsert on SQLite."""
        if self.is_postgres:
            _copy_rows(cur, table, columns, rows, lambda: self._upsert_rows(cur, upsert, rows))
        else:
            self._upsert_rows(cur, upsert, rows)

    def _upsert_rows(self, cur, upsert: str, rows: Sequence[tuple]) -> None:
        """Row by row on PostgreSQL (executemany pipelines them), multi-row statements on SQLite."""
        if self.is_postgres:
            cur.executemany(self._sql(upsert), rows)
        else:
            _insert_rows(cur, upsert, rows)

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """A write transaction: one thread of this Store at a time, then this process's turn among
        the file's writers (`_writers_turn`). Every write goes through it."""
        with self._lock, self._writers_turn(), self._connection() as conn:
            yield conn

    @contextmanager
    def _writers_turn(self) -> Iterator[None]:
        """SQLite: this process's turn among the file's writers (WRITER_LOCK_SUFFIX), under
        `self._lock` (threads of one Store share the descriptor, and so the lock). Where the OS
        refuses the lock (a file system without flock), SQLite's own locking is all there is."""
        locked = self._take_writers_lock()
        try:
            yield
        finally:
            if locked:
                fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def _take_writers_lock(self) -> bool:
        if self.is_postgres or fcntl is None or self.dsn in ("", ":memory:"):
            return False
        try:
            if self._writer_fd is None:
                self._writer_fd = os.open(self.dsn + WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._writer_fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.debug("no writers' lock beside %s (%s): SQLite's busy handler alone", self.dsn, exc)
            return False
        return True

    def _as_writer(self, conn) -> None:
        """SQLite: the writers' larger page cache (WRITER_CACHE_KIB) and statement journals in memory,
        once per connection."""
        if not self.is_postgres and getattr(self._local, "writer", None) is not conn:
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            # Each multi-row upsert in a batch's transaction journals the pages it changes, and past
            # 64 KiB SQLite spills that journal to a temporary file, a write call per page: in memory,
            # upsert 110 / 147 / 164 -> 88 / 121 / 133 us an alert at 100-300k alerts stored
            # (bench/store_bench.py). Readers keep sorting big query results in files.
            conn.execute("PRAGMA temp_store=MEMORY")
            self._local.writer = conn

    def _start_checkpointer(self) -> None:
        """The WAL checkpoint thread of a SQLite store, from its first write on."""
        if self._checkpointer is None and not self.is_postgres:
            self._checkpointer = _Checkpointer(self.dsn, CHECKPOINT_INTERVAL_S)
            weakref.finalize(self, self._checkpointer.stop)  # a store dropped without close()

    def _insert_detections(self, cur, detections: list[Detection]) -> None:
        if self.is_postgres:
            _copy_rows(cur, "sources", SOURCE_COLUMNS, detections, lambda: _stage_detections(cur, detections))
            return
        _insert_rows(cur, INSERT_SOURCE, detections)

    def _ids(self, cur, keys: list[tuple]) -> dict[tuple, int]:
        out: dict[tuple, int] = {}
        source_ids = sorted({k[0] for k in keys})
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            where = f"FROM classifications WHERE dia_source_id IN ({marks})"
            if self.is_postgres:
                cur.execute(self._sql(f"SELECT dia_source_id, classifier, version, id {where}"), chunk)
                found = cur.fetchall()
            else:
                # one row (one release of the GIL) rather than one per result: see ROWS_PER_INSERT
                cur.execute(f"SELECT json_group_array(json_array(dia_source_id, classifier, version, id)) "
                            f"{where}", chunk)
                found = json.loads(cur.fetchone()[0])
            for sid, clf, ver, row_id in found:
                out[(sid, clf, ver)] = row_id
        return out

    def add_nightly(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Adds to the nightly counters, in key order (concurrent workers cannot deadlock)."""
        if not counts:
            return
        rows = sorted((night, metric, int(n)) for (night, metric), n in counts.items())
        with self._writing() as conn:
            conn.cursor().executemany(self._sql(ADD_NIGHTLY), rows)

    def nightly(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Counters of the nights from `start` to `end` (dayObs dates, inclusive): night -> metric -> n."""
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql("SELECT night, metric, value FROM nightly WHERE night BETWEEN ? AND ? "
                                  "ORDER BY night"), (start, end))
            out: dict[str, dict[str, int]] = {}
            for night, metric, value in cur.fetchall():
                out.setdefault(night, {})[metric] = int(value)
        return out

    # --- reads --------------------------------------------------------------------------------

    def recall(self, before: Mapping[int, float],
               max_points: int = RECALL_MAX_POINTS) -> dict[int, LightCurve]:
        """Each object's kept detections earlier than its time in `before` (what its alert does not
        carry), the latest `max_points` of them, as light curves sorted by time: the pipeline's
        `History`. One read per 500 objects, each a range of the primary key."""
        items = list(before.items())
        rows: list[tuple] = []
        with self._connection() as conn:
            cur = conn.cursor()
            for start in range(0, len(items), RECALL_CHUNK):
                chunk = items[start:start + RECALL_CHUNK]
                # PostgreSQL needs the VALUES types spelt out; in SQLite a CAST there costs 6x the read
                pair = "(CAST(? AS BIGINT), CAST(? AS DOUBLE PRECISION))" if self.is_postgres else "(?, ?)"
                values = ", ".join([pair] * len(chunk))
                cur.execute(self._sql(
                    f"WITH b (oid, before) AS (VALUES {values}) "
                    "SELECT s.dia_object_id, s.dia_source_id, s.mjd, s.band, s.flux, s.flux_err "
                    "FROM b JOIN sources s ON s.dia_object_id = b.oid AND s.mjd < b.before "
                    "ORDER BY s.dia_object_id, s.mjd"), [v for pair in chunk for v in pair])
                rows += cur.fetchall()
        if not rows:
            return {}
        objects = np.array([r[0] for r in rows], dtype=np.int64)
        source_ids = np.array([r[1] for r in rows], dtype=np.int64)
        values_ = np.array([r[2:] for r in rows], dtype=np.float64)  # mjd, band, flux, flux_err
        starts = np.flatnonzero(np.r_[True, objects[1:] != objects[:-1]])
        out = {}
        for lo, hi in zip(starts, np.r_[starts[1:], len(rows)], strict=True):
            lo = max(lo, hi - max_points)
            v = values_[lo:hi]
            out[int(objects[lo])] = LightCurve(v[:, 0], v[:, 2], v[:, 3], v[:, 1].astype(np.int8),
                                               n_input=hi - lo, source_id=source_ids[lo:hi])
        return out

    # --- retention ----------------------------------------------------------------------------

    def newest_mjd(self) -> float | None:
        """The latest observation time the store holds: retention counts back from it, not from the
        wall clock, so a replay of old alerts is not wiped on arrival."""
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT MAX(mjd) FROM classifications")  # indexed
            newest = cur.fetchone()[0]
            if newest is None:  # detections without results: a full scan, once
                cur.execute("SELECT MAX(mjd) FROM sources")
                newest = cur.fetchone()[0]
        return None if newest is None else float(newest)

    def prune_results(self, before_mjd: float, batch: int = PRUNE_BATCH) -> Iterator[int]:
        """Deletes classifications (and their probabilities), then anomaly scores, of alerts observed
        before `before_mjd`, oldest first, `batch` rows per transaction; yields the rows deleted by
        each step."""
        while True:
            with self._writing() as conn:
                cur = conn.cursor()
                cur.execute(self._sql("SELECT id FROM classifications WHERE mjd < ? ORDER BY mjd LIMIT ?"),
                            (before_mjd, batch))
                ids = sorted(r[0] for r in cur.fetchall())  # key order, as in upsert: no deadlock
                if not ids:
                    break
                marks = ",".join("?" * len(ids))
                cur.execute(self._sql(f"DELETE FROM probabilities WHERE classification_id IN ({marks})"), ids)
                cur.execute(self._sql(f"DELETE FROM classifications WHERE id IN ({marks})"), ids)
            yield len(ids)
        while True:
            with self._writing() as conn:
                deleted = self._prune_scores(conn.cursor(), before_mjd, batch)
            if not deleted:
                return
            yield deleted

    def prune_history(self, before_mjd: float, batch: int = PRUNE_BATCH) -> Iterator[int]:
        """Deletes kept detections observed before `before_mjd`; yields the rows deleted per step.

        `sources` has no time index (it would double the cost of every write), so this sweeps the
        primary key once, a range of about `batch` rows per transaction: O(rows) in all."""
        highest = 2**63 - 1
        lower, bound = -(2**63), "dia_object_id >= ?"  # the first step includes the lowest id
        while True:
            with self._writing() as conn:
                cur = conn.cursor()
                # the object `batch` rows further in key order closes this step's range
                cur.execute(self._sql(f"SELECT dia_object_id FROM sources WHERE {bound} "
                                      "ORDER BY dia_object_id, mjd, dia_source_id LIMIT 1 OFFSET ?"),
                            (lower, batch))
                row = cur.fetchone()
                upper = highest if row is None else int(row[0])
                cur.execute(self._sql(f"DELETE FROM sources WHERE {bound} AND dia_object_id <= ? "
                                      "AND mjd < ?"), (lower, upper, before_mjd))
                deleted = max(cur.rowcount, 0)
            yield deleted
            if row is None:
                return
            lower, bound = upper, "dia_object_id > ?"

    def detections(self, dia_object_id: int, after: tuple[float, int] | None = None,
                   limit: int = 1000) -> list[tuple[int, float, int, float, float]]:
        """One object's kept detections in time order, `limit` at a time after the (mjd, diaSourceId)
        cursor: (diaSourceId, mjd, band, flux, flux_err) each. A range of the primary key."""
        where, params = "dia_object_id = ?", [dia_object_id]
        if after is not None:
            where += " AND (mjd > ? OR (mjd = ? AND dia_source_id > ?))"
            params += [after[0], after[0], after[1]]
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(f"SELECT dia_source_id, mjd, band, flux, flux_err FROM sources "
                                  f"WHERE {where} ORDER BY mjd, dia_source_id LIMIT ?"), [*params, limit])
            return [tuple(r) for r in cur.fetchall()]

    def notable(self, classifier: str, class_id: int, min_probability: float, limit: int = 3,
                window: int = 20_000) -> list[tuple[int, float]]:
        """The latest objects (diaObjectId, probability) the classifier gave `class_id` with at least
        `min_probability`, among the newest `window` results: bounded work however large the store."""
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT MAX(id) FROM classifications")
            newest = cur.fetchone()[0] or 0
            cur.execute(self._sql(
                "SELECT c.dia_object_id, p.probability FROM classifications c JOIN probabilities p "
                "ON p.classification_id = c.id WHERE c.id > ? AND c.classifier = ? AND p.class_id = ? "
                "AND p.probability >= CAST(? AS REAL) AND c.dia_object_id IS NOT NULL "
                "ORDER BY c.id DESC LIMIT ?"),
                (newest - window, classifier, class_id, min_probability, limit * 20))
            out: dict[int, float] = {}
            for oid, prob in cur.fetchall():  # newest first; one entry per object
                if oid not in out and len(out) < limit:
                    out[int(oid)] = float(prob)
        return list(out.items())

    def count_sources(self) -> int:
        """Detections kept for the light-curve history."""
        return self._count("sources")

    def _matches_fewer_than(self, cap: int, class_id: int, floor: float, after_id: int) -> bool:
        """Counts matching probabilities through their index, stopping at `cap`."""
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(f"SELECT COUNT(*) FROM (SELECT 1 FROM probabilities WHERE {CLASS_MATCH} "
                                  "LIMIT ?) AS m"),
                        (class_id, floor, after_id, cap))
            return int(cur.fetchone()[0]) < cap

    def _rows(self, sql: str, params: Sequence[Any]) -> list[dict]:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(sql), params)
            return [self._row(r) for r in cur.fetchall()]

    @staticmethod
    def _row(values: Sequence[Any]) -> dict:
        row = dict(zip(COLUMNS, values, strict=True))
        row["classifications"] = json.loads(row["classifications"])
        return row

    def count(self) -> int:
        """Results stored: classifier rows and anomaly scores."""
        return self._count("classifications") + self._count("anomaly_scores")

    def _count(self, table: str) -> int:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(f"SELECT COUNT(*) FROM {table}")  # a table name of ours, never user input
            return int(cur.fetchone()[0])

    def ping(self) -> None:
        with self._connection() as conn:
            conn.cursor().execute("SELECT 1")

    def source_rows(self, dia_source_id: int) -> list[dict]:
        return self._rows(f"SELECT {', '.join(COLUMNS)} FROM classifications WHERE dia_source_id = ? "
                          "ORDER BY classifier, version", (dia_source_id,))

    def object_history(self, dia_object_id: int) -> list[dict]:
        return self._rows(f"SELECT {', '.join(COLUMNS)} FROM classifications WHERE dia_object_id = ? "
                          "ORDER BY mjd, classifier, version", (dia_object_id,))

    def latest_results(self, dia_object_id: int, scan: int = 50) -> list[dict]:
        """The object's latest stored result per classifier (among its newest `scan` rows)."""
        rows = self._rows(f"SELECT {', '.join(COLUMNS)} FROM classifications WHERE dia_object_id = ? "
                          "ORDER BY mjd DESC LIMIT ?", (dia_object_id, scan))
        latest: dict[str, dict] = {}
        for row in rows:
            latest.setdefault(row["classifier"], row)
        return list(latest.values())

    def query(self, q: Query) -> list[dict]:
        where, params = ["c.id > ?"], [q.after_id]
        if q.classifier:
            where.append("c.classifier = ?")
            params.append(q.classifier)
        if q.class_id is not None:
            floor = q.min_probability if q.min_probability is not None else 0.0
            if self._matches_fewer_than(SELECTIVE_MATCHES * q.limit, q.class_id, floor, q.after_id):
                # few matches: collect them from the covering probabilities index
                where.append(f"c.id IN (SELECT classification_id FROM probabilities WHERE {CLASS_MATCH})")
                params += [q.class_id, floor, q.after_id]
            else:
                # many: walk the id order and probe each row; stops after `limit` matches
                where.append("EXISTS (SELECT 1 FROM probabilities p WHERE p.classification_id = c.id "
                             "AND p.class_id = ? AND p.probability >= CAST(? AS REAL))")
                params += [q.class_id, floor]
        elif q.min_probability is not None:
            where.append("c.top_probability >= CAST(? AS REAL)")  # REAL as well: see CLASS_MATCH
            params.append(q.min_probability)
        if q.since_mjd is not None or q.until_mjd is not None:
            # the mjd index, as a subquery (see the cone search)
            where.append("c.id IN (SELECT id FROM classifications WHERE mjd BETWEEN ? AND ?)")
            params += [q.since_mjd if q.since_mjd is not None else -1e9,
                       q.until_mjd if q.until_mjd is not None else 1e9]
        if q.cone is not None:
            r_deg = q.cone.radius_arcsec / 3600.0
            # Indexed declination band first, as a subquery: with ORDER BY id a planner would
            # otherwise walk the id order and test every row. The exact test follows.
            where.append("c.id IN (SELECT id FROM classifications WHERE dec BETWEEN ? AND ?)")
            params += [max(-90.0, q.cone.dec - r_deg), min(90.0, q.cone.dec + r_deg)]
            x, y, z = unit_vector(q.cone.ra, q.cone.dec)
            where.append("c.cx * ? + c.cy * ? + c.cz * ? >= ?")
            params += [x, y, z, math.cos(math.radians(r_deg))]
        cols = ", ".join(f"c.{c}" for c in COLUMNS)
        sql = (f"SELECT {cols} FROM classifications c WHERE {' AND '.join(where)} "
               f"ORDER BY c.id LIMIT ?")
        return self._rows(sql, [*params, q.limit])
