"""Nightly statistics: what one batch adds to its night's counters (pure; the store adds them up).

A night is Rubin's `dayObs`: the date twelve hours behind UTC, so one Chilean night is one date. It is
the night an alert was *processed* (when the worker consumed it), which for a live stream is the
night it was observed, and which dead letters (no observation time) have too. Counters are a few
dozen rows per night whatever the volume; after a crash the batch in flight may be counted twice
(at-least-once, like the output topic).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from streaming.records import BatchOutcome, Message

# Upper bounds of the latency histogram (seconds), Kafka timestamp -> stored; the last is open.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, float("inf"))
CLASS_FLOOR = 0.5  # a class counts for the night when its probability is at least this
ANOMALY_FLOOR = 0.99  # an alert counts as anomalous for the night from this score (its top 1%)


def day_obs(unix_s: float) -> str:
    """Rubin's dayObs of a moment: the UTC-12h date, YYYY-MM-DD."""
    return (dt.datetime.fromtimestamp(unix_s, dt.UTC) - dt.timedelta(hours=12)).date().isoformat()


def batch_counts(outcome: BatchOutcome, messages: Sequence[Message], now_s: float) -> Counter:
    """(night, metric) -> n for one batch: consumed, classified, declined, dead_lettered:<reason>,
    new_objects, class:<classifier>:<classId> (p >= 0.5), anomalous:<classifier> (score >= 0.99),
    latency_le:<bound> (histogram)."""
    night = day_obs(now_s)
    counts: Counter = Counter()
    counts[(night, "consumed")] += len(messages)
    counts[(night, "classified")] += len(outcome.classified)
    counts[(night, "declined")] += len(outcome.declined)
    for dl in outcome.dead_letters:
        counts[(night, f"dead_lettered:{dl.reason}")] += 1
    counts[(night, "new_objects")] += outcome.new_objects
    for r in outcome.records:
        if r.is_anomaly and r.score is not None and r.score >= ANOMALY_FLOOR:
            counts[(night, f"anomalous:{r.classifier}")] += 1
        if r.reason is None:
            for c in r.classifications:
                if c["probability"] >= CLASS_FLOOR:
                    counts[(night, f"class:{r.classifier}:{c['classId']}")] += 1
    for m in messages:
        if m.timestamp_ms > 0:
            latency = max(0.0, now_s - m.timestamp_ms / 1000)
            bound = next(b for b in LATENCY_BUCKETS_S if latency <= b)
            counts[(night, f"latency_le:{bound}")] += 1
    return +counts  # drop zeros


def summarise(night: str, metrics: dict[str, int]) -> dict:
    """One night's counters as the API answers them."""
    dead = {k.split(":", 1)[1]: n for k, n in metrics.items() if k.startswith("dead_lettered:")}
    classes: dict[str, dict[str, int]] = {}
    for key, n in metrics.items():
        if key.startswith("class:"):
            _, classifier, class_id = key.split(":")
            classes.setdefault(classifier, {})[class_id] = n
    histogram = sorted((float(k.split(":", 1)[1]), n) for k, n in metrics.items()
                       if k.startswith("latency_le:"))
    return {"night": night, "consumed": metrics.get("consumed", 0),
            "classified": metrics.get("classified", 0), "declined": metrics.get("declined", 0),
            "dead_lettered": sum(dead.values()),
            "dead_lettered_by_reason": dead, "new_objects": metrics.get("new_objects", 0),
            "classes_p_ge_0_5": classes,
            "anomalous_score_ge_0_99": {k.split(":", 1)[1]: n for k, n in metrics.items()
                                        if k.startswith("anomalous:")},
            "latency_ms": _percentiles(histogram)}


def _percentiles(histogram: list[tuple[float, int]]) -> dict[str, float | None]:
    """p50/p90/p99 from the histogram: the upper bound of the bucket each falls in (an upper limit;
    None when beyond the last finite bound or when nothing was timed)."""
    total = sum(n for _, n in histogram)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        if not total:
            out[name] = None
            continue
        seen = 0
        for bound, n in histogram:
            seen += n
            if seen >= q * total:
                out[name] = None if bound == float("inf") else round(bound * 1000, 1)
                break
    return out
