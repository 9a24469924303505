"""The streaming worker: a consumer-group member that classifies alerts in batches.

Loop: consume a batch -> process_batch (decode, light curves + the store's earlier detections,
features, models) -> its sinks on a thread of their own: store upsert (results and new detections),
produce results and dead letters and wait for their acknowledgement; meanwhile the next batch is
consumed and processed, then the first batch's offsets are stored and committed. Offsets are
committed only after the sinks succeeded (at-least-once), in order, at most two batches behind;
`close()` commits the last ones. Transient failures (store, broker, schema registry unreachable) are retried
with backoff and the batch is never dead-lettered for them; a batch retried longer than
`stall_after_s` marks the worker stalled (readiness and a gauge say so) until it goes through.
Permanent failures (the store or the output topic refusing a row, an unexpected error on one
alert's data) are narrowed down to the alerts behind them, which are dead-lettered; the rest go on.
SIGTERM/SIGINT finish the current batch and exit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from models.errors import AlertClassifierError, BrokerError, OutputRejected, ProcessingError, StoreRejected
from models.registry import Registry
from streaming.decode import Decoder
from streaming.isolate import combine, dead_letter_units, find_rejected, merged, schema_id_of, units_of
from streaming.kafka import PLAINTEXT, KafkaSecurity, consumer_config
from streaming.nightly import batch_counts
from streaming.pipeline import WithPending, process_batch
from streaming.publish import Publisher
from streaming.records import BatchOutcome, DeadLetter, Message, ResultStore

log = logging.getLogger("alert_classifier.worker")
T = TypeVar("T")
STOPPED = object()  # what a retry gives back when the worker stops before the action succeeded


@dataclass
class WorkerConfig:
    bootstrap: str
    topic: str
    group: str
    output_topic: str
    dead_letter_topic: str
    broker_version: str = "0.1.0"
    batch_size: int = 500
    # A short wait keeps latency low when alerts trickle; under load batches fill before it expires.
    poll_timeout_s: float = 0.1
    output_format: str = "avro"
    max_backoff_s: float = 10.0
    # Bounds the prefetch queue whatever the backlog (memory stays flat).
    queued_max_kbytes: int = 65536
    # Extend each alert's light curve with the store's earlier detections of the object.
    keep_history: bool = True
    # A batch retried for longer than this marks the worker stalled (readiness answers 503).
    stall_after_s: float = 60.0
    security: KafkaSecurity = PLAINTEXT
    # results and dead letters: another cluster, or (None) the alerts' own
    output_bootstrap: str | None = None
    output_security: KafkaSecurity | None = None
    auto_offset_reset: str = "earliest"  # where a new consumer group starts
    # light-curve's extractors hold the GIL through a call; on 2 threads that stretch of a batch
    # halves when a core is free (bench: 1 worker +22%; 2 workers on 2 cores the same either way)
    feature_threads: int = 2
    # Curves per call of those extractors (None: the whole batch). Each call holds the GIL and starts
    # its threads: a worker alone in its process makes one call per batch (2 workers on 2 cores +7.8%
    # against calls of 32 curves); a worker inside the HTTP server's process keeps them short.
    feature_chunk: int | None = None


@dataclass
class Stats:
    """Counters per partition and outcome; they add up to the messages consumed."""

    outcomes: Counter = field(default_factory=Counter)  # (partition, outcome) -> n
    declined_reasons: Counter = field(default_factory=Counter)
    dead_letter_reasons: Counter = field(default_factory=Counter)
    batches: int = 0
    stage_seconds: Counter = field(default_factory=Counter)

    def total(self, outcome: str | None = None) -> int:
        return sum(n for (_, o), n in self.outcomes.items() if outcome in (None, o))


# (outcome, messages, seconds spent in the sinks, lag per assigned partition)
BatchObserver = Callable[[BatchOutcome, Sequence[Message], float, dict[int, int]], None]


class Worker:
    def __init__(self, config: WorkerConfig, registry: Registry, store: ResultStore,
                 decoder: Decoder | None = None, observer: BatchObserver | None = None) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self.decoder = decoder or Decoder()
        self.observer = observer
        self.stats = Stats()
        self.stop_event = threading.Event()
        # when the batch in hand first failed transiently, and why (None: not retrying)
        self.retrying_since: float | None = None
        self.retry_reason: str | None = None
        self.assigned: set[tuple[str, int]] = set()
        # the batch whose sinks run beside the next batch's processing (None: nothing in flight)
        self._sinks: ThreadPoolExecutor | None = None
        self._in_flight: _InFlight | None = None
        self.consumer = Consumer(consumer_config(
            config.bootstrap, config.group, config.security,
            **{"queued.max.messages.kbytes": config.queued_max_kbytes,
               "auto.offset.reset": config.auto_offset_reset}))
        self.publisher = Publisher(config.output_bootstrap or config.bootstrap, config.output_topic,
                                   config.dead_letter_topic, broker_version=config.broker_version,
                                   fmt=config.output_format,
                                   security=config.output_security or config.security)

    # --- lifecycle ----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())

    def stop(self) -> None:
        self.stop_event.set()

    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        # Callbacks run inside consume(), between batches: once the batch in flight is finished and
        # its offsets stored, commit them so the partition's next owner does not redo work.
        self.assigned -= {(p.topic, p.partition) for p in partitions}
        self._finish_in_flight()
        try:
            consumer.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - nothing stored since the last commit, or broker gone
            log.debug("commit on revoke: %s", exc)

    def _on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        self.assigned -= {(p.topic, p.partition) for p in partitions}  # nothing to commit: not ours

    def run(self, max_messages: int | None = None) -> Stats:
        """Consume until stopped (or `max_messages` handled, for tests and benchmarks)."""
        self._sinks = ThreadPoolExecutor(1, thread_name_prefix="sinks")
        self.consumer.subscribe([self.config.topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        try:
            while not self.stop_event.is_set():
                if max_messages is not None and self.stats.total() >= max_messages:
                    break
                raw = self.consumer.consume(self.config.batch_size, self.config.poll_timeout_s)
                messages = [self._message(m) for m in raw if self._usable(m)]
                if messages:
                    self.handle(messages, raw)
                else:
                    self._finish_in_flight()  # a quiet stream: finish the batch in flight now
        finally:
            try:
                self._finish_in_flight()  # its offsets are stored, so close() commits them
            finally:
                self._sinks.shutdown()
                self.consumer.close()  # commits the stored offsets
                # Close, not only flush: a producer left to the garbage collector keeps reconnecting.
                # Whatever is still undelivered after 10 s is dropped: its offsets were never stored.
                producer = self.publisher.producer
                if producer.flush(10):
                    producer.purge()
                producer.close()
        return self.stats

    @staticmethod
    def _usable(msg) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err)
        return False

    @staticmethod
    def _message(msg) -> Message:
        return Message(msg.value() or b"", msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])

    # --- one batch ----------------------------------------------------------------------------

    def handle(self, messages: list[Message], raw: Sequence) -> None:
        """Processes the batch, then hands it to the sinks' thread once the previous batch's sinks
        are done (so offsets are committed in order)."""
        # the history read can meet a transient store failure: retried like the writes
        outcome = self._retry(lambda: self._process(messages))
        self._finish_in_flight()
        if outcome is STOPPED:
            return  # stopping mid-retry: offsets not stored, the batch is redone later
        self._in_flight = _InFlight(self._sinks.submit(self._sink, outcome, messages), outcome, messages, raw)

    def _sink(self, outcome: BatchOutcome, messages: list[Message]) -> float | object:
        """The sinks' thread: store, output topic, nightly counters. Seconds taken, or STOPPED."""
        t0 = time.perf_counter()
        if self._retry(lambda: self._write(outcome)) is STOPPED:
            return STOPPED  # stopping mid-retry: offsets not stored, the batch is redone later
        counts = batch_counts(outcome, messages, time.time())
        if self._retry(lambda: self.store.add_nightly(counts)) is STOPPED:
            return STOPPED
        outcome.stored_at = time.time()
        return time.perf_counter() - t0

    def _finish_in_flight(self) -> None:
        """Waits for the batch in flight; once its sinks succeeded, stores and commits its offsets.
        Raises what the sinks raised."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return
        sink_s = flight.sinks.result()
        if sink_s is STOPPED:
            return
        self.retrying_since = self.retry_reason = None
        offsets = _next_offsets(flight.raw)
        # Commit now rather than at the next auto-commit tick (5 s of work): after a crash at most
        # the batches in flight are redone. One round trip per batch; auto-commit stays as a backstop.
        try:
            self.consumer.store_offsets(offsets=offsets)
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. a partition revoked meanwhile: its new owner redoes the batch (at-least-once)
            log.warning("storing or committing the batch's offsets failed (%s); auto-commit will retry", exc)
        self._count(flight.outcome, sink_s)
        if self.observer is not None:
            self.observer(flight.outcome, flight.messages, sink_s, self.lag())

    def stalled_seconds(self) -> float:
        """How long the batch in hand has been retried, once that exceeds `stall_after_s`; else 0."""
        since = self.retrying_since
        if since is None:
            return 0.0
        elapsed = time.monotonic() - since
        return elapsed if elapsed >= self.config.stall_after_s else 0.0

    def _process(self, messages: list[Message]) -> BatchOutcome:
        history = self.store if self.config.keep_history else None
        flight = self._in_flight
        if history is not None and flight is not None and flight.outcome.detections:
            # every alert with detections has results: their objects are the pending ones
            objects = {r.dia_object_id for r in flight.outcome.records}
            history = WithPending(history, flight.outcome.detections, objects)

        def run(part: Sequence[Message]) -> BatchOutcome:
            return process_batch(part, self.decoder, self.registry, history=history,
                                 feature_threads=self.config.feature_threads,
                                 feature_chunk=self.config.feature_chunk)

        try:
            return run(messages)
        except Exception as exc:
            if _transient(exc):
                raise
            log.exception("batch of %d failed permanently; isolating the alerts behind it", len(messages))
        parts: list[BatchOutcome] = []
        rejected = find_rejected(messages, lambda part: parts.append(run(part)),
                                 lambda exc: not _transient(exc))
        poison = BatchOutcome(dead_letters=[
            DeadLetter(m, ProcessingError.reason, f"{type(exc).__name__}: {exc}", schema_id_of(m.value))
            for m, exc in rejected])
        return combine([*parts, poison])

    def _write(self, outcome: BatchOutcome) -> None:
        try:
            self.store.upsert(outcome.records, outcome.detections)
        except StoreRejected:
            rejected = find_rejected(units_of(outcome), lambda units: self.store.upsert(*merged(units)),
                                     lambda exc: isinstance(exc, StoreRejected))
            log.warning("the store refused %d alert(s): dead-lettered", len(rejected))
            dead_letter_units(outcome, rejected, StoreRejected.reason)
        try:
            self.publisher.publish(outcome.records, outcome.dead_letters)
            self.publisher.flush()
        except OutputRejected:
            rejected = find_rejected(units_of(outcome), self._publish_results,
                                     lambda exc: isinstance(exc, OutputRejected))
            log.warning("the output topic refused %d alert(s)' results: dead-lettered", len(rejected))
            # their store rows stay: the results are right, only the topic would not take them
            dead_letter_units(outcome, rejected, OutputRejected.reason)
            try:
                self.publisher.publish([], outcome.dead_letters)
                self.publisher.flush()
            except OutputRejected as exc:
                # A dead letter is the raw packet: if its topic refuses it, nothing may be dropped;
                # retry (and show a stall) until the operator raises the topic's max.message.bytes.
                raise BrokerError(f"the dead-letter topic {self.config.dead_letter_topic!r} refuses a "
                                  f"packet ({exc}): raise its max.message.bytes") from exc

    def _publish_results(self, units) -> None:
        self.publisher.publish(merged(units)[0], [])
        self.publisher.flush()

    def lag(self) -> dict[int, int]:
        """Messages behind the high watermark per assigned partition (cached watermarks: no request)."""
        out = {}
        parts = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        try:
            positions = self.consumer.position(parts)
        except Exception:  # noqa: BLE001 - during a rebalance: report nothing this time
            return out
        for tp in positions:
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                out[tp.partition] = max(0, high - tp.offset)
        return out

    def _retry(self, action: Callable[[], T]) -> T | object:
        """The action's result, retried with backoff on transient errors; STOPPED if the worker is
        asked to stop meanwhile. Anything else propagates (the actions isolate permanent ones)."""
        delay = 0.2
        while True:
            try:
                return action()
            except AlertClassifierError as exc:
                if not exc.transient:
                    raise
                if self.retrying_since is None:
                    self.retrying_since = time.monotonic()
                self.retry_reason = f"{exc.reason}: {exc}"
                stalled = self.stalled_seconds()
                log.warning("transient failure (%s), retrying in %.1f s%s: %s", exc.reason, delay,
                            f" (stalled for {stalled:.0f} s)" if stalled else "", exc)
            if self.stop_event.wait(delay):
                return STOPPED
            delay = min(delay * 2, self.config.max_backoff_s)

    def _count(self, outcome: BatchOutcome, sink_s: float) -> None:
        s = self.stats
        s.batches += 1
        for m in outcome.classified:
            s.outcomes[(m.partition, "classified")] += 1
        for m, reason in outcome.declined:
            s.outcomes[(m.partition, "declined")] += 1
            s.declined_reasons[reason.split(":")[0]] += 1
        for dl in outcome.dead_letters:
            s.outcomes[(dl.message.partition, "dead_lettered")] += 1
            s.dead_letter_reasons[dl.reason] += 1
        s.stage_seconds.update(outcome.stage_seconds)
        s.stage_seconds["sinks"] += sink_s


@dataclass
class _InFlight:
    sinks: Future  # the seconds the sinks took, or STOPPED
    outcome: BatchOutcome
    messages: list[Message]
    raw: Sequence


def _transient(exc: Exception) -> bool:
    return isinstance(exc, AlertClassifierError) and exc.transient


def _next_offsets(raw: Sequence) -> list[TopicPartition]:
    """One offset per partition: one past the highest message of the batch."""
    highest: dict[tuple[str, int], int] = {}
    for m in raw:
        if m.error() is None:
            key = (m.topic(), m.partition())
            highest[key] = max(highest.get(key, -1), m.offset())
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]
