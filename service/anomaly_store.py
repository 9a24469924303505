"""The store's anomaly tables: every alert's anomaly score (ranked by `/v1/anomalies`) and the
experts' feedback on objects (read by `alert-classifier anomaly retrain`). A mixin of `Store`, which
owns the connections and the migrations (service/store.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from streaming.records import ClassificationRecord

MIGRATION = [
    """CREATE TABLE IF NOT EXISTS anomaly_scores (
        dia_source_id BIGINT NOT NULL,
        classifier TEXT NOT NULL,
        version TEXT NOT NULL,
        dia_object_id BIGINT,
        alert_id BIGINT NOT NULL,
        ra DOUBLE PRECISION NOT NULL,
        dec DOUBLE PRECISION NOT NULL,
        mjd DOUBLE PRECISION NOT NULL,
        score REAL,
        reason TEXT,
        ingest_timestamp_ms BIGINT,
        PRIMARY KEY (dia_source_id, classifier, version)
    )""",
    # ranking: the score order, with what the walk needs alongside (covering)
    "CREATE INDEX IF NOT EXISTS ix_anomaly_rank ON anomaly_scores (score, dia_object_id, mjd)",
    "CREATE INDEX IF NOT EXISTS ix_anomaly_mjd ON anomaly_scores (mjd)",  # the newest, retention
    "CREATE INDEX IF NOT EXISTS ix_anomaly_object ON anomaly_scores (dia_object_id, mjd)",
    """CREATE TABLE IF NOT EXISTS anomaly_feedback (
        dia_object_id BIGINT PRIMARY KEY,
        label TEXT NOT NULL,
        updated_ms BIGINT NOT NULL
    )""",
]
UPSERT_SCORE = """INSERT INTO anomaly_scores (dia_source_id, classifier, version, dia_object_id, alert_id,
    ra, dec, mjd, score, reason, ingest_timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (dia_source_id, classifier, version) DO UPDATE SET
    dia_object_id = excluded.dia_object_id, alert_id = excluded.alert_id, ra = excluded.ra,
    dec = excluded.dec, mjd = excluded.mjd, score = excluded.score, reason = excluded.reason,
    ingest_timestamp_ms = excluded.ingest_timestamp_ms"""
UPSERT_FEEDBACK = """INSERT INTO anomaly_feedback (dia_object_id, label, updated_ms) VALUES (?, ?, ?)
    ON CONFLICT (dia_object_id) DO UPDATE SET label = excluded.label, updated_ms = excluded.updated_ms"""
Label = Literal["anomaly", "normal"]
LABELS: tuple[str, ...] = get_args(Label)
# how an object with several alerts in a window is ranked (`top_anomalies`, `GET /v1/anomalies`)
Ranking = Literal["latest", "highest"]
RANKINGS: tuple[str, ...] = get_args(Ranking)
RANK_CHUNK = 500  # rows fetched at a time while walking the score index
# windows of this many rows or more are walked down the score index; fewer are sorted (< ~25 ms)
WALK_FROM = 5_000


@dataclass(frozen=True)
class RankedObject:
    dia_object_id: int
    score: float  # the object's score in the window (its highest, or its latest alert's)
    mjd: float  # the observation time of the alert that gave it
    classifier: str
    version: str


SCORE_COLUMNS = ("dia_source_id", "classifier", "version", "dia_object_id", "alert_id", "ra", "dec", "mjd",
                 "score", "reason", "ingest_timestamp_ms")  # score_row's order (COPY on PostgreSQL)


def score_row(r: ClassificationRecord) -> tuple:
    return (r.dia_source_id, r.classifier, r.version, r.dia_object_id, r.alert_id, r.ra, r.dec, r.mjd,
            r.score, r.reason, r.ingest_timestamp_ms)


class AnomalyTables:
    """Needs `_connection`, `_writing`, `_sql` and `_upsert_rows` (Store)."""

    def _upsert_scores(self, cur, records: Sequence[ClassificationRecord]) -> None:
        self._upsert_rows(cur, UPSERT_SCORE, [score_row(r) for r in records])

    def newest_scored_mjd(self) -> float | None:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT MAX(mjd) FROM anomaly_scores")  # the window index's first column
            newest = cur.fetchone()[0]
        return None if newest is None else float(newest)

    def top_anomalies(self, since_mjd: float, until_mjd: float, limit: int,
                      after: tuple[float, int] | None = None, by: Ranking = "highest") -> list[RankedObject]:
        """Objects by one score each among their alerts observed in [since, until], highest first
        (ties: larger diaObjectId first); `after` is the (score, diaObjectId) of the previous page's
        last object. `by`: "highest", the object's highest score in the window (each object's
        first row in score order); "latest", the score of its latest scored alert in the window.

        A window of fewer than WALK_FROM rows is read through the time index and sorted; a larger
        one (a night of millions) is walked down the score index a chunk at a time, so the work
        grows with the rows read before the page is full, not with the window."""
        if by not in RANKINGS:
            raise ValueError(f"by must be one of {RANKINGS}, not {by!r}")
        out: list[RankedObject] = []
        seen: set[int] = set()
        walk = not self._window_fewer_than(WALK_FROM, since_mjd, until_mjd)
        # "latest": the time of each object's latest scored alert; the whole window's at once when
        # it is small, else for the new objects of each chunk the walk reads
        latest = {} if by == "highest" or walk else self._latest_scored(since_mjd, until_mjd)
        key = after
        while True:
            rows = self._ranked_rows(since_mjd, until_mjd, key, RANK_CHUNK if walk else None)
            if by == "latest" and walk:
                latest |= self._latest_scored(since_mjd, until_mjd, {r[1] for r in rows} - latest.keys())
            for score, oid, mjd, classifier, version in rows:
                if oid in seen:
                    continue
                if by == "latest":
                    if mjd != latest[oid]:  # an earlier alert of the object: its latest ranks it
                        continue
                    seen.add(oid)
                else:
                    seen.add(oid)
                    # past a cursor an object's first row here may not be its highest: then an
                    # earlier page listed it
                    if after is not None and self._scored_higher(oid, score, since_mjd, until_mjd):
                        continue
                out.append(RankedObject(int(oid), float(score), float(mjd), classifier, version))
                if len(out) == limit:
                    return out
            if not walk or len(rows) < RANK_CHUNK:
                return out
            key = (rows[-1][0], rows[-1][1])  # that object's other rows at that score: seen already

    def _latest_scored(self, since_mjd: float, until_mjd: float, objects: set[int] | None = None
                       ) -> dict[int, float]:
        """diaObjectId -> the time of its latest scored alert in the window: of the given objects
        (one query), or of every object in it."""
        if objects is not None and not objects:
            return {}
        where, params = "", [since_mjd, until_mjd]
        if objects is not None:
            where = f" AND dia_object_id IN ({', '.join('?' * len(objects))})"
            params += sorted(objects)
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql("SELECT dia_object_id, MAX(mjd) FROM anomaly_scores WHERE mjd BETWEEN ? "
                                  "AND ? AND score IS NOT NULL AND dia_object_id IS NOT NULL"
                                  f"{where} GROUP BY dia_object_id"), params)
            return dict(cur.fetchall())

    def _window_fewer_than(self, cap: int, since_mjd: float, until_mjd: float) -> bool:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql("SELECT COUNT(*) FROM (SELECT 1 FROM anomaly_scores WHERE mjd BETWEEN ? "
                                  "AND ? LIMIT ?) AS w"), (since_mjd, until_mjd, cap))
            return cur.fetchone()[0] < cap

    def _ranked_rows(self, since_mjd: float, until_mjd: float, below: tuple[float, int] | None,
                     chunk: int | None) -> list[tuple]:
        """Scored rows of the window below the (score, diaObjectId) key, highest first: all of them
        (time index), or the next `chunk` down the score index (`+mjd` keeps the planner off the
        time index, which would sort the whole window)."""
        where, params = "score IS NOT NULL AND dia_object_id IS NOT NULL", [since_mjd, until_mjd]
        if below is not None:
            # REAL like the column: PostgreSQL hands a float4 back as its shortest decimal (0.94),
            # which as a double is not the stored value
            where += " AND (score < CAST(? AS REAL) OR (score = CAST(? AS REAL) AND dia_object_id < ?))"
            params += [below[0], below[0], below[1]]
        window = "+mjd BETWEEN ? AND ?" if chunk else "mjd BETWEEN ? AND ?"
        limit = ""
        if chunk:
            limit = "LIMIT ?"
            params.append(chunk)
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(f"SELECT score, dia_object_id, mjd, classifier, version FROM "
                                  f"anomaly_scores WHERE {window} AND {where} ORDER BY score DESC, "
                                  f"dia_object_id DESC, mjd DESC {limit}"), params)
            return cur.fetchall()

    def _scored_higher(self, dia_object_id: int, score: float, since_mjd: float, until_mjd: float) -> bool:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql("SELECT 1 FROM anomaly_scores WHERE dia_object_id = ? AND mjd BETWEEN ? "
                                  "AND ? AND score > CAST(? AS REAL) LIMIT 1"),
                        (dia_object_id, since_mjd, until_mjd, score))
            return cur.fetchone() is not None

    def object_scores(self, dia_object_id: int) -> list[dict]:
        """One object's anomaly results, oldest first."""
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql("SELECT dia_source_id, classifier, version, mjd, score, reason FROM "
                                  "anomaly_scores WHERE dia_object_id = ? ORDER BY mjd"), (dia_object_id,))
            return [{"diaSourceId": s, "classifier": c, "version": v, "mjd": m, "score": sc, "reason": r}
                    for s, c, v, m, sc, r in cur.fetchall()]

    def knows_object(self, dia_object_id: int) -> bool:
        with self._connection() as conn:
            cur = conn.cursor()
            for table in ("anomaly_scores", "classifications", "sources"):
                cur.execute(self._sql(f"SELECT 1 FROM {table} WHERE dia_object_id = ? LIMIT 1"),
                            (dia_object_id,))
                if cur.fetchone():
                    return True
        return False

    def add_feedback(self, dia_object_id: int, label: str) -> None:
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {label!r}")
        with self._writing() as conn:
            conn.cursor().execute(self._sql(UPSERT_FEEDBACK), (dia_object_id, label, int(time.time() * 1000)))

    def count_feedback(self) -> int:
        return self._count("anomaly_feedback")

    def feedback(self) -> dict[int, str]:
        """diaObjectId -> its latest label."""
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT dia_object_id, label FROM anomaly_feedback ORDER BY dia_object_id")
            return {int(o): label for o, label in cur.fetchall()}

    def _prune_scores(self, cur, before_mjd: float, batch: int) -> int:
        cur.execute(self._sql("SELECT dia_source_id, classifier, version FROM anomaly_scores WHERE mjd < ? "
                              "ORDER BY mjd LIMIT ?"), (before_mjd, batch))
        keys = sorted(cur.fetchall())
        if keys:
            cur.executemany(self._sql("DELETE FROM anomaly_scores WHERE dia_source_id = ? AND classifier = ? "
                                      "AND version = ?"), keys)
        return len(keys)
