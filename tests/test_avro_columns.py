"""The compiled field reader: every Avro construct read as fastavro writes it, and bodies it cannot
read exactly rejected, never read wrong (the full reader then decides)."""

from __future__ import annotations

import io

import fastavro
import numpy as np
import pytest

from streaming import avro_columns, bulk_decode
from streaming.decode import Decoder, shipped_versions
from streaming.faults import mutate
from streaming.simulate import simulate_alerts
from tests.helpers import same
from tests.test_bulk_decode import _assert_same_alert

POINT = {"type": "record", "name": "Point", "fields": [
    {"name": "id", "type": "long"},
    {"name": "flag", "type": ["null", "boolean"]},
    {"name": "t", "type": "double"},
    {"name": "flux", "type": ["float", "null"]},  # null second
    {"name": "band", "type": ["null", "string"]},
    {"name": "tags", "type": {"type": "array", "items": "string"}},  # an array inside the items
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b", "c"]}},
]}
SCHEMA = {"type": "record", "name": "Alert", "namespace": "test", "fields": [
    {"name": "alertId", "type": "long"},
    {"name": "nothing", "type": "null"},
    {"name": "ok", "type": "boolean"},
    {"name": "count", "type": "int"},
    {"name": "ratio", "type": ["null", "float"]},
    {"name": "name", "type": "string"},
    {"name": "blob", "type": ["null", "bytes"]},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    {"name": "choice", "type": ["null", "string", {"type": "record", "name": "Inner", "fields": [
        {"name": "x", "type": "double"}, {"name": "y", "type": ["null", "long"]}]}]},
    {"name": "source", "type": POINT},
    {"name": "points", "type": ["null", {"type": "array", "items": "test.Point"}]},  # a reference
    {"name": "others", "type": {"type": "array", "items": "Inner"}},
    {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
]}
WANTED = [("alertId",), ("count",), ("ratio",), ("name",), ("source", "t"), ("source", "flux"),
          ("source", "band"), ("time",), ("points", "*", "id"), ("points", "*", "t"), ("points", "*", "flux"),
          ("points", "*", "band")]


def _point(rng: np.random.Generator) -> dict:
    return {"id": int(rng.integers(-2**62, 2**62)), "flag": [None, True, False][int(rng.integers(3))],
            "t": float(rng.normal() * 1e5),
            "flux": None if rng.random() < 0.3 else float(np.float32(rng.normal())),
            "band": [None, "g", "r", "x", "gg", ""][int(rng.integers(6))],
            "tags": ["é" * int(rng.integers(3))] * int(rng.integers(3)), "kind": "abc"[int(rng.integers(3))]}


def _record(rng: np.random.Generator) -> dict:
    n = int(rng.integers(-1, 5))
    return {"alertId": int(rng.integers(0, 2**63)), "nothing": None, "ok": bool(rng.random() < 0.5),
            "count": int(rng.integers(-2**31, 2**31)), "ratio": None if rng.random() < 0.5 else 0.25,
            "name": "nom ✓" * int(rng.integers(3)),
            "blob": None if rng.random() < 0.5 else bytes(int(rng.integers(9))),
            "digest": b"\x00\x01\x02\x03",
            "choice": [None, "text", {"x": 1.5, "y": None}, {"x": -2.0, "y": 7}][int(rng.integers(4))],
            "source": _point(rng), "points": None if n < 0 else [_point(rng) for _ in range(n)],
            "others": [{"x": 0.5, "y": 3}] * int(rng.integers(3)), "time": int(rng.integers(0, 2**40))}


def _body(record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), record)
    return out.getvalue()


def test_every_construct_reads_as_fastavro_writes_it():
    rng = np.random.default_rng(0)
    records = [_record(rng) for _ in range(300)]
    program = avro_columns.compile_schema(SCHEMA, WANTED, "points", ["g", "r"])
    columns = avro_columns.read(program, [_body(r) for r in records])
    assert not columns.status.any()
    points = [p for r in records for p in r["points"] or []]
    assert columns.count.tolist() == [len(r["points"] or []) for r in records]
    everyone = np.arange(len(records))
    for path, slot in program.slots.items():
        if path[0] == "points":
            got = columns.item(slot).tolist()
            want = [p[path[2]] for p in points]
            if path[2] == "band":
                want = [{"g": 0, "r": 1}.get(b, -1) for b in want]
            if path[2] == "flux":
                want = [float("nan") if v is None else v for v in want]
            assert same(got, want), path
            continue
        values, null = columns.alert(slot, everyone)
        want = [r[path[0]] if len(path) == 1 else r[path[0]][path[1]] for r in records]
        if slot[1] == avro_columns.SPAN:
            spans = zip([_body(r) for r in records], values.tolist(), strict=True)
            got = [None if o < 0 else b[o:o + n].decode() for b, (o, n) in spans]
        else:
            got = [None if m else v for v, m in zip(values.tolist(), null.tolist(), strict=True)]
        assert same(got, want), path


@pytest.mark.parametrize(("body", "reason"), [
    (b"", avro_columns.PAST_END),
    (lambda b: b[:-1], avro_columns.PAST_END),
    (lambda b: b + b"\x00", avro_columns.LEFT_OVER),
    (lambda b: b"\xff" * 11 + b[11:], avro_columns.BAD_VARINT),
])
def test_a_body_it_cannot_read_exactly_is_rejected_with_the_reason(body, reason):
    good = _body(_record(np.random.default_rng(1)))
    bad = body(good) if callable(body) else body
    program = avro_columns.compile_schema(SCHEMA, WANTED, "points", ["g"])
    columns = avro_columns.read(program, [good, bad, good])
    assert columns.status.tolist() == [0, reason, 0]
    assert columns.owner.tolist() == [0] * columns.count[0] + [2] * columns.count[2]  # its points dropped


def test_what_it_cannot_compile_is_said():
    with pytest.raises(avro_columns.Unsupported, match="map"):
        avro_columns.compile_schema({"type": "record", "name": "R", "fields": [
            {"name": "m", "type": {"type": "map", "values": "long"}}]}, [], "points", [])
    with pytest.raises(avro_columns.Unsupported, match="only numbers and strings"):
        avro_columns.compile_schema(SCHEMA, [("ok",)], "points", [])
    with pytest.raises(avro_columns.Unsupported, match="not in the schema"):
        avro_columns.compile_schema(SCHEMA, [("missing",)], "points", [])


def test_mutated_packets_decode_as_the_full_reader_decodes_them_or_are_rejected():
    """Stricter than the full reader, never looser: for thousands of structurally mutated Rubin packets
    (bit flips, truncations, endless varints, bad lengths and union branches, another schema's id),
    the bulk decoder's alerts and light curves equal the per-message path's, errors included."""
    decoder = Decoder()
    rng = np.random.default_rng(48)
    versions = shipped_versions()
    seeds = []
    for version in (versions[-1], versions[-2], versions[0]):
        seeds += decoder.encode_batch(list(simulate_alerts(20, history=12, version=version, forced=True,
                                                           cutout_bytes=50, seed=version.schema_id)), version)
    kinds = set()
    for _ in range(12):
        batch = []
        for _ in range(250):
            packet, kind = mutate(seeds[int(rng.integers(len(seeds)))], rng)
            batch.append(packet)
            kinds.add(kind)
        bulk = bulk_decode.decode_batch(batch, decoder)
        for b, r in zip(bulk, decoder.decode_batch(batch, lean=True), strict=True):
            _assert_same_alert(b, r)
    assert len(kinds) >= 8
