"""Finding the alerts behind a permanent failure, so that only they are dead-lettered.

A batch is processed, stored and published as a whole (that is where the speed comes from). When a
stage refuses the batch for good (the store rejects a row, the output topic a record, or a bug meets
one alert's data), retrying it cannot help and dropping it would lose the good alerts with it: the
batch is split in halves until the failing alerts stand alone (log2(n) extra attempts per bad alert),
they become dead letters with the reason, and the rest go on. Transient errors pass through, for the
worker's retry loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from streaming.decode import HEADER, MAGIC
from streaming.records import BatchOutcome, ClassificationRecord, DeadLetter, Detection, Message

T = TypeVar("T")


def find_rejected(items: Sequence[T], attempt: Callable[[Sequence[T]], None],
                  rejects: Callable[[Exception], bool]) -> list[tuple[T, Exception]]:
    """`items` failed as a whole: bisect, calling `attempt` on parts, until each item that fails
    alone is found. Returns those with their errors; every other item went through `attempt` once
    successfully. Exceptions `rejects` does not claim (transient ones) propagate."""
    if len(items) == 1:
        return [(items[0], _attempt_error(items, attempt, rejects) or RuntimeError("failed as a whole"))]
    mid = len(items) // 2
    rejected: list[tuple[T, Exception]] = []
    for half in (items[:mid], items[mid:]):
        error = _attempt_error(half, attempt, rejects)
        if error is None:
            continue
        rejected += [(half[0], error)] if len(half) == 1 else find_rejected(half, attempt, rejects)
    return rejected


def _attempt_error(items: Sequence[T], attempt: Callable[[Sequence[T]], None],
                   rejects: Callable[[Exception], bool]) -> Exception | None:
    try:
        attempt(items)
    except Exception as exc:
        if rejects(exc):
            return exc
        raise
    return None


@dataclass
class Unit:
    """One message's share of a batch outcome: its result rows and its object's new detections."""

    message: Message
    records: list[ClassificationRecord] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)


def units_of(outcome: BatchOutcome) -> list[Unit]:
    """The outcome's classified and declined messages, each with what it writes."""
    by_message = {(m.topic, m.partition, m.offset): Unit(m) for m in outcome.classified}
    by_message.update({(m.topic, m.partition, m.offset): Unit(m) for m, _ in outcome.declined})
    objects: dict[int, list[Unit]] = defaultdict(list)
    for r in outcome.records:
        unit = by_message.get((r.topic, r.partition, r.offset))
        if unit is None:  # its message was dead-lettered
            continue
        if not unit.records and r.dia_object_id is not None:
            objects[r.dia_object_id].append(unit)
        unit.records.append(r)
    for d in outcome.detections:  # alerts of one object share detections: each unit writes them
        for unit in objects.get(d.dia_object_id, ()):
            unit.detections.append(d)
    return list(by_message.values())


def merged(units: Sequence[Unit]) -> tuple[list[ClassificationRecord], list[Detection]]:
    records = [r for u in units for r in u.records]
    detections = list({(d.dia_object_id, d.mjd, d.dia_source_id): d for u in units for d in u.detections}
                      .values())
    return records, detections


def dead_letter_units(outcome: BatchOutcome, rejected: Sequence[tuple[Unit, Exception]], reason: str) -> None:
    """Moves rejected messages from classified/declined to the dead letters, their rows out."""
    if not rejected:
        return
    gone = {id(u.message) for u, _ in rejected}
    outcome.classified = [m for m in outcome.classified if id(m) not in gone]
    outcome.declined = [(m, why) for m, why in outcome.declined if id(m) not in gone]
    outcome.records, outcome.detections = merged(units_of(outcome))
    outcome.dead_letters += [DeadLetter(u.message, reason, f"{type(exc).__name__}: {exc}",
                                        schema_id_of(u.message.value)) for u, exc in rejected]


def schema_id_of(value: bytes) -> int | None:
    """The Confluent schema id of a framed packet, if it has one (the decoder's header)."""
    if len(value) >= HEADER.size and value[0] == MAGIC:
        return HEADER.unpack_from(value)[1]
    return None


def combine(outcomes: Sequence[BatchOutcome]) -> BatchOutcome:
    """One outcome from those of a batch's parts."""
    out = BatchOutcome()
    for o in outcomes:
        out.records += o.records
        out.detections += o.detections
        out.history_points += o.history_points
        out.new_objects += o.new_objects
        out.classified += o.classified
        out.declined += o.declined
        out.dead_letters += o.dead_letters
        for stage, seconds in o.stage_seconds.items():
            out.stage_seconds[stage] = out.stage_seconds.get(stage, 0.0) + seconds
    return out
