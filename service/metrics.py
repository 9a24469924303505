"""Prometheus metrics and the rolling figures behind the status page, fed by the worker's batches.

Each app owns its own CollectorRegistry (several apps in one test process must not collide).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from streaming.records import BatchOutcome, Message

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ANOMALY_BUCKETS = (0.5, 0.9, 0.99, 0.999, 0.9999, 1.0)
WINDOW_S = 600  # the status page shows the last ten minutes


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = PromCounter("alert_classifier_messages_total",
                                    "Consumed alert messages by partition and outcome",
                                    ["partition", "outcome"], registry=r)
        self.lag = Gauge("alert_classifier_consumer_lag", "Messages behind the end of the partition",
                         ["partition"], registry=r)
        self.stage = Histogram("alert_classifier_stage_seconds", "Time per batch in each pipeline stage",
                               ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.latency = Histogram("alert_classifier_alert_latency_seconds",
                                 "Kafka message timestamp to result stored", buckets=STAGE_BUCKETS,
                                 registry=r)
        self.inference = Histogram("alert_classifier_model_inference_seconds", "ONNX call time per batch",
                                   ["model"], buckets=STAGE_BUCKETS, registry=r)
        self.history = PromCounter("alert_classifier_history_points_total",
                                   "Light-curve history: detections kept by the store, and stored points "
                                   "added to alerts' light curves (beyond the year an alert carries)",
                                   ["direction"], registry=r)
        self.classes = PromCounter("alert_classifier_top_class_total", "Top class of stored results",
                                   ["classifier", "class_id"], registry=r)
        self.anomaly = Histogram("alert_classifier_anomaly_score",
                                 "Anomaly scores of stored results (population percentile; 0.99 = top 1%)",
                                 ["classifier"], buckets=ANOMALY_BUCKETS, registry=r)
        self.stalled = Gauge("alert_classifier_worker_stalled_seconds",
                             "How long the worker has retried one batch (store, broker or schema registry "
                             "unreachable), once past the stall threshold; 0 when it flows",
                             registry=r)
        self.classify_in_progress = Gauge("alert_classifier_classify_in_progress",
                                          "HTTP classify requests being worked on", registry=r)
        self.http_requests = PromCounter("alert_classifier_http_requests_total", "HTTP requests",
                                         ["method", "route", "status"], registry=r)
        self.http_latency = Histogram("alert_classifier_http_request_seconds", "HTTP request time",
                                      ["method", "route"], buckets=STAGE_BUCKETS, registry=r)
        # rolling state for the status page: (time, n alerts), latencies, outcome totals
        self._lock = threading.Lock()
        self._throughput: deque[tuple[float, int]] = deque()
        self._latencies: deque[tuple[float, float]] = deque(maxlen=50_000)
        self.totals: Counter = Counter()
        self.class_mix: Counter = Counter()
        self.lag_by_partition: dict[int, int] = {}

    def watch_worker(self, stalled_seconds: Callable[[], float]) -> None:
        """The stall gauge reads the worker when scraped: it rises while a batch is stuck."""
        self.stalled.set_function(stalled_seconds)

    def observe_batch(self, outcome: BatchOutcome, messages: Sequence[Message], sink_s: float,
                      lag: dict[int, int] | None = None) -> None:
        now = outcome.stored_at or time.time()  # latency ends when the results were stored
        for m in outcome.classified:
            self.messages.labels(str(m.partition), "classified").inc()
        for m, _reason in outcome.declined:
            self.messages.labels(str(m.partition), "declined").inc()
        for dl in outcome.dead_letters:
            self.messages.labels(str(dl.message.partition), "dead_lettered").inc()
        self.history.labels("kept").inc(len(outcome.detections))
        self.history.labels("recalled").inc(outcome.history_points)
        for stage, seconds in {**outcome.stage_seconds, "sinks": sink_s}.items():
            self.stage.labels(stage).observe(seconds)
        latencies = [max(0.0, now - m.timestamp_ms / 1000) for m in messages if m.timestamp_ms > 0]
        for lat in latencies:
            self.latency.observe(lat)
        tops = [(r.classifier, max(r.classifications, key=lambda c: c["probability"])["classId"])
                for r in outcome.records if not r.reason and not r.is_anomaly]
        for classifier, top in tops:
            self.classes.labels(classifier, str(top)).inc()
        for r in outcome.records:
            if r.is_anomaly and r.score is not None:
                self.anomaly.labels(r.classifier).observe(r.score)
        with self._lock:
            self._throughput.append((now, len(messages)))
            self._latencies.extend((now, lat) for lat in latencies)
            self.totals.update(classified=len(outcome.classified), declined=len(outcome.declined),
                               dead_lettered=len(outcome.dead_letters), history_kept=len(outcome.detections),
                               history_recalled=outcome.history_points)
            self.class_mix.update(f"{classifier}:{top}" for classifier, top in tops)
            if lag is not None:
                self.lag_by_partition = dict(lag)
                for partition, n in lag.items():
                    self.lag.labels(str(partition)).set(n)
            while self._throughput and self._throughput[0][0] < now - WINDOW_S:
                self._throughput.popleft()

    def summary(self) -> dict:
        """Alerts/s per 10 s bucket over the last ten minutes, latency percentiles, totals, mix."""
        now = time.time()
        with self._lock:
            points = list(self._throughput)
            lats = [lat for t, lat in self._latencies if t >= now - WINDOW_S]
            totals, mix, lag = dict(self.totals), dict(self.class_mix), dict(self.lag_by_partition)
        buckets = np.zeros(WINDOW_S // 10)
        for t, n in points:
            i = int((now - t) // 10)
            if 0 <= i < len(buckets):
                buckets[len(buckets) - 1 - i] += n
        recent = sum(n for t, n in points if t >= now - 60)
        covered = min(60.0, now - points[0][0]) if points else 60.0  # at start-up, less than a minute
        pct = (lambda q: round(float(np.percentile(lats, q)) * 1000, 1)) if lats else (lambda q: None)
        return {"alerts_per_s_last_minute": round(recent / max(covered, 1.0), 1),
                "alerts_per_s_series": (buckets / 10).round(1).tolist(), "series_step_s": 10,
                "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99)},
                "totals": totals, "class_mix": mix, "lag": lag}
