"""The records that cross modules: messages in, detections kept, classification rows, dead
letters, a batch's outcome, and the store's two faces (history and sink) that `service` implements.

Plain data, no behaviour beyond counting: the pipeline makes them, the worker and the publisher
carry them, the store keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from streaming.lightcurve import LightCurve


class Detection(NamedTuple):
    """One detection the light-curve history keeps (a store row)."""

    dia_source_id: int
    dia_object_id: int
    mjd: float
    band: int
    flux: float
    flux_err: float


class History(Protocol):
    """Earlier detections per object, beyond the 12 months an alert carries (`service` implements it):
    each object's detections before the given time."""

    def recall(self, before: Mapping[int, float]) -> dict[int, LightCurve]: ...


@dataclass(frozen=True, slots=True)
class Message:
    """What the pipeline needs of a Kafka message (also built by tests and replay)."""

    value: bytes
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp_ms: int = 0


@dataclass(slots=True)
class ClassificationRecord:
    """One model's verdict on one alert: the store's row, keyed by (diaSourceId, classifier, version).
    An anomaly model's record has no classifications and carries its score (None when it declined)."""

    dia_source_id: int
    dia_object_id: int | None
    alert_id: int
    classifier: str
    version: str
    ra: float
    dec: float
    mjd: float
    classifications: list[dict]
    reason: str | None
    topic: str
    partition: int
    offset: int
    alert_timestamp_ms: int
    ingest_timestamp_ms: int
    score: float | None = None

    @property
    def is_anomaly(self) -> bool:
        return not self.classifications


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: str
    error: str
    schema_id: int | None


@dataclass
class BatchOutcome:
    records: list[ClassificationRecord] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)  # new to the history: the store keeps them
    history_points: int = 0  # points the history added to the batch's light curves
    new_objects: int = 0  # alerts that are their object's first detection (no earlier source anywhere)
    classified: list[Message] = field(default_factory=list)  # at least one classifier judged it
    declined: list[tuple[Message, str]] = field(default_factory=list)  # every classifier declined
    dead_letters: list[DeadLetter] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stored_at: float = 0.0  # time.time() when its sinks succeeded (0: not yet)

    @property
    def n_messages(self) -> int:
        return len(self.classified) + len(self.declined) + len(self.dead_letters)


class ResultStore(History, Protocol):
    """The sink `service` implements: idempotent upsert keyed by (diaSourceId, classifier, version),
    which also keeps new detections, and the light-curve history it recalls."""

    def upsert(self, records: Sequence[ClassificationRecord],
               detections: Sequence[Detection] = ()) -> None: ...

    def add_nightly(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Adds (night, metric) -> n to the nightly counters (`streaming.nightly`)."""
