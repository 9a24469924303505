"""The store's anomaly tables: every alert's anomaly score (ranked by `/v1/anomalies`) and the
experts' feedback on objects (read by `alert-classifier anomaly retrain`). A mixin of `Store`, which
owns the connections and the migrations (service/store.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

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
    # ranking a time window: the window's rows from the index, scores alongside (covering)
    "CREATE INDEX IF NOT EXISTS ix_anomaly_window ON anomaly_scores (mjd, score, dia_object_id)",
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
LABELS = ("anomaly", "normal")


@dataclass(frozen=True)
class RankedObject:
    dia_object_id: int
    score: float  # the object's highest score in the window
    mjd: float  # the observation time of its latest scored alert in the window
    classifier: str
    version: str


def score_row(r: ClassificationRecord) -> tuple:
    return (r.dia_source_id, r.classifier, r.version, r.dia_object_id, r.alert_id, r.ra, r.dec, r.mjd,
            r.score, r.reason, r.ingest_timestamp_ms)


class AnomalyTables:
    """Needs `_connection`, `_sql` and `_lock` (Store)."""

    def _upsert_scores(self, cur, records: Sequence[ClassificationRecord]) -> None:
        if records:
            cur.executemany(self._sql(UPSERT_SCORE), [score_row(r) for r in records])

    def newest_scored_mjd(self) -> float | None:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT MAX(mjd) FROM anomaly_scores")  # the window index's first column
            newest = cur.fetchone()[0]
        return None if newest is None else float(newest)

    def top_anomalies(self, since_mjd: float, until_mjd: float, limit: int,
                      after: tuple[float, int] | None = None) -> list[RankedObject]:
        """Objects by their highest score among alerts observed in [since, until], highest first, then
        by id; `after` is the (score, diaObjectId) cursor of the previous page's last object."""
        having, params = "", [since_mjd, until_mjd]
        if after is not None:
            # REAL like the column: PostgreSQL hands a float4 back as its shortest decimal (0.94),
            # which as a double is not the stored value
            having = ("HAVING MAX(score) < CAST(? AS REAL) OR (MAX(score) = CAST(? AS REAL) "
                      "AND dia_object_id > ?)")
            params += [after[0], after[0], after[1]]
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(
                "SELECT dia_object_id, MAX(score) AS best, MAX(mjd), MAX(classifier), MAX(version) "
                "FROM anomaly_scores WHERE mjd BETWEEN ? AND ? AND score IS NOT NULL "
                f"AND dia_object_id IS NOT NULL GROUP BY dia_object_id {having} "
                "ORDER BY best DESC, dia_object_id LIMIT ?"), [*params, limit])
            return [RankedObject(int(o), float(s), float(m), c, v) for o, s, m, c, v in cur.fetchall()]

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
        with self._lock, self._connection() as conn:
            conn.cursor().execute(self._sql(UPSERT_FEEDBACK), (dia_object_id, label, int(time.time() * 1000)))

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
