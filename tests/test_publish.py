"""The output topic's records: the ELAsTiCC classification schema, written by cavro on the hot path,
byte for byte what fastavro (the reference writer) writes, and read back unchanged."""

from __future__ import annotations

import io

import fastavro
import pytest

from models.registry import Registry
from streaming.decode import Decoder, latest_version
from streaming.pipeline import process_batch
from streaming.publish import (
    broker_classification,
    classification_schema,
    decode_classification,
    encode_classification,
)
from streaming.records import ClassificationRecord, Message
from streaming.simulate import simulate_alerts


def fastavro_bytes(record: ClassificationRecord) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, classification_schema(), broker_classification(record, "9.9.9"))
    return buf.getvalue()


def edge_records() -> list[ClassificationRecord]:
    def rec(**kw) -> ClassificationRecord:
        base = dict(dia_source_id=1, dia_object_id=2, alert_id=3, classifier="supernova", version="2.0.0",
                    ra=1.0, dec=2.0, mjd=60000.0, classifications=[{"classId": 2222, "probability": 0.5}],
                    reason=None, topic="t", partition=0, offset=0, alert_timestamp_ms=0,
                    ingest_timestamp_ms=0)
        return ClassificationRecord(**(base | kw))

    big = 2**63 - 1
    return [rec(), rec(dia_source_id=big, alert_id=big, alert_timestamp_ms=4_102_444_800_000,
                       ingest_timestamp_ms=4_102_444_800_000),
            rec(classifications=[{"classId": 200, "probability": 0.0},
                                 {"classId": 2323, "probability": 1e-30}]),
            rec(classifications=[], classifier="anomaly", version="1.0.0", score=0.99731),  # a score
            rec(classifications=[], classifier="anomaly", version="1.0.0", reason="too few points: 2 < 3"),
            rec(reason="declined: ünïcode reason ✓")]


def test_records_are_written_as_fastavro_writes_them_and_read_back():
    decoder = Decoder()
    packets = [decoder.encode(r, latest_version()) for r in simulate_alerts(40, history=20, seed=4)]
    out = process_batch([Message(p, "t", 0, i) for i, p in enumerate(packets)], decoder, Registry())
    records = out.records + edge_records()
    assert len(out.records) >= 100
    for r in records:
        data = encode_classification(r, "9.9.9")
        assert data == fastavro_bytes(r)
        back, sent = decode_classification(data), broker_classification(r, "9.9.9")
        # timestamps come back as datetimes (timestamp-millis), probabilities as float32
        assert int(back["brokerIngestTimestamp"].timestamp() * 1000) == sent["brokerIngestTimestamp"]
        assert [c["classId"] for c in back["classifications"]] == [
            c["classId"] for c in sent["classifications"]]
        assert [c["probability"] for c in back["classifications"]] == pytest.approx(
            [c["probability"] for c in sent["classifications"]], rel=1e-6)
        for key in ("alertId", "diaSourceId", "classifierName", "classifierParams", "brokerVersion"):
            assert back[key] == sent[key]


def test_a_record_the_schema_refuses_raises():
    bad = edge_records()[0]
    bad.classifications = [{"classId": "not an int", "probability": 0.5}]
    with pytest.raises(Exception):  # noqa: B017 - cavro raises its own value errors
        encode_classification(bad, "9.9.9")
