"""Isolating the alerts behind a permanent failure: pure functions, no broker."""

from __future__ import annotations

import pytest

from models.errors import StoreError, StoreRejected
from streaming.isolate import dead_letter_units, find_rejected, merged, units_of
from streaming.records import BatchOutcome, ClassificationRecord, Detection, Message


def _refusing(bad: set[int], calls: list):
    def attempt(items):
        calls.append(list(items))
        refused = [i for i in items if i in bad]
        if refused:
            raise StoreRejected(f"refused {refused}")
    return attempt


@pytest.mark.parametrize("bad", [set(), {0}, {99}, {3, 4}, {0, 50, 99}, set(range(100))])
def test_find_rejected_finds_exactly_the_bad_items(bad):
    calls: list = []
    rejected = find_rejected(list(range(100)), _refusing(bad, calls), lambda e: isinstance(e, StoreRejected))
    assert sorted(item for item, _ in rejected) == sorted(bad)
    assert all(f"refused [{item}]" == str(exc) for item, exc in rejected)
    succeeded = [i for part in calls if not set(part) & bad for i in part]
    assert sorted(succeeded) == sorted(set(range(100)) - bad), "every good item written exactly once"
    if len(bad) == 1:
        assert len(calls) <= 2 * 7, "log2(n) halvings"


def test_transient_errors_pass_through():
    def attempt(items):
        raise StoreError("connection lost")

    with pytest.raises(StoreError):
        find_rejected([1, 2, 3], attempt, lambda e: isinstance(e, StoreRejected))


def _outcome() -> BatchOutcome:
    out = BatchOutcome()
    for offset, obj in enumerate([7, 7, 8]):  # two alerts of object 7 share its detections
        msg = Message(b"\x00\x00\x00\x04\x4d" + bytes([offset]), "alerts", 0, offset)
        out.classified.append(msg)
        for clf in ("rrlyrae", "supernova"):
            out.records.append(ClassificationRecord(
                100 + offset, obj, 100 + offset, clf, "1", 1.0, 2.0, 60000.0,
                [{"classId": 200, "probability": 1.0}], None, "alerts", 0, offset, 0, 0))
    out.detections = [Detection(100, 7, 60000.0, 1, 5.0, 1.0), Detection(101, 7, 60001.0, 1, 5.0, 1.0),
                      Detection(102, 8, 60000.0, 1, 5.0, 1.0)]
    return out


def test_units_carry_their_rows_and_their_objects_detections():
    units = units_of(_outcome())
    assert [len(u.records) for u in units] == [2, 2, 2]
    assert [len(u.detections) for u in units] == [2, 2, 1]
    records, detections = merged(units)
    assert len(records) == 6 and len(detections) == 3, "shared detections written once"


def test_dead_lettered_units_leave_the_outcome_and_the_counts_add_up():
    out = _outcome()
    units = units_of(out)
    dead_letter_units(out, [(units[2], StoreRejected("no"))], "store_rejected")
    assert [m.offset for m in out.classified] == [0, 1]
    assert {r.dia_source_id for r in out.records} == {100, 101}
    assert {d.dia_object_id for d in out.detections} == {7}
    [dl] = out.dead_letters
    assert dl.reason == "store_rejected" and dl.schema_id == 1101 and dl.message.offset == 2
    assert out.n_messages == 3
