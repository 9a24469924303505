"""Nightly counters: pure functions."""

from __future__ import annotations

import datetime as dt

from streaming.nightly import batch_counts, day_obs, summarise
from streaming.records import BatchOutcome, ClassificationRecord, DeadLetter, Message


def _unix(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_a_night_is_rubins_day_obs_utc_minus_12h():
    assert day_obs(_unix("2026-12-02T11:59:59")) == "2026-12-01"  # still the night that began on the 1st
    assert day_obs(_unix("2026-12-02T12:00:00")) == "2026-12-02"
    assert day_obs(_unix("2026-12-03T03:00:00")) == "2026-12-02"  # Chilean night, after UTC midnight


def test_batch_counts_and_summary():
    now = _unix("2026-12-03T03:00:00")
    msgs = [Message(b"x", "t", 0, i, int((now - lag) * 1000)) for i, lag in enumerate([0.03, 0.2, 0.2, 4.0])]
    out = BatchOutcome(classified=msgs[:2], declined=[(msgs[2], "rrlyrae: too few points")],
                       dead_letters=[DeadLetter(msgs[3], "invalid_value", "ra = nan", 1101)], new_objects=1)
    ia = [{"classId": 2222, "probability": 0.7}, {"classId": 200, "probability": 0.3}]
    out.records = [ClassificationRecord(1, 7, 1, "supernova", "1", 0, 0, 60000, ia, None, "t", 0, 0, 0, 0),
                   ClassificationRecord(2, 8, 2, "supernova", "1", 0, 0, 60000,
                                        [{"classId": 300, "probability": 1.0}], "too few points",
                                        "t", 0, 2, 0, 0)]
    # anomaly scores: one in the top 1%, one below, one declined
    out.records += [ClassificationRecord(i, 7, i, "anomaly", "1.0.0", 0, 0, 60000, [], reason, "t", 0, i,
                                         0, 0, score)
                    for i, score, reason in ((3, 0.995, None), (4, 0.5, None), (5, None, "too few points"))]
    counts = batch_counts(out, msgs, now)
    night = {metric: n for (n_, metric), n in counts.items() if n_ == "2026-12-02"}
    assert sum(counts.values()) == sum(night.values()), "one night"
    s = summarise("2026-12-02", night)
    assert (s["consumed"], s["classified"], s["declined"], s["dead_lettered"]) == (4, 2, 1, 1)
    assert s["dead_lettered_by_reason"] == {"invalid_value": 1} and s["new_objects"] == 1
    assert s["classes_p_ge_0_5"] == {"supernova": {"2222": 1}}, "declined results do not count"
    assert s["anomalous_score_ge_0_99"] == {"anomaly": 1}
    assert s["latency_ms"] == {"p50": 250.0, "p90": 5000.0, "p99": 5000.0}


def test_summary_of_a_quiet_night():
    assert summarise("2026-12-01", {})["latency_ms"] == {"p50": None, "p90": None, "p99": None}
