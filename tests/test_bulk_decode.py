"""The bulk decoder (compiled per schema, `streaming/avro_columns.py`) against lsst-alert-packet's
reader and the per-message path: the same content for every shipped schema version, and a corrupt
packet in a batch is the only one that becomes a dead letter."""

from __future__ import annotations

import copy
import struct

import lsst.alert.packet as alert_packet
import numpy as np
import pytest

from models.errors import CorruptAvro, DecodeError, InvalidValue, TooShort
from streaming import avro_columns, bulk_decode
from streaming.decode import Decoder, field_names, read_container, sample_paths, shipped_versions
from streaming.lightcurve import BANDS, light_curve
from streaming.simulate import simulate_alerts
from tests.helpers import same

VERSIONS = shipped_versions()
LATEST = VERSIONS[-1]


def _records(version, n=12, seed=0) -> list[dict]:
    """lsst-alert-packet's own sample (as its fastavro reader returns it) and simulated alerts with
    history, forced photometry and cutouts."""
    _, sample = read_container(sample_paths(version)[0])
    return sample + list(simulate_alerts(n, history=15, version=version, forced=True, cutout_bytes=300,
                                         seed=seed + version.schema_id))


def _messy(record: dict, version) -> dict:
    """Every kind of point the light curve must drop or merge: null and NaN values, an unknown band,
    an impossible time, a non-positive id, repeated ids (also the alert's own source)."""
    names = field_names(version)
    record = copy.deepcopy(record)
    prv = record["prvDiaSources"]
    source_fields = next(f["type"]["fields"] for f in Decoder().schema(version.schema_id)["fields"]
                         if f["name"] == "diaSource")
    flux_type = next(f["type"] for f in source_fields if f["name"] == names.flux)
    prv[1][names.flux] = None if "null" in flux_type else float("nan")  # null where the schema allows
    prv[2][names.flux_err] = float("nan")
    prv[3][names.band] = "x"
    prv[4][names.time] = 1e9
    prv[5]["diaSourceId"] = -5
    prv[6][names.flux_err] = 0.0
    prv[7][names.flux] = float("inf")
    prv.append(copy.deepcopy(prv[0]))
    prv.append(copy.deepcopy(record["diaSource"]))
    prv[9][names.time] = prv[8][names.time]  # a tie in time: packet order decides
    return record


@pytest.mark.parametrize("version", VERSIONS, ids=str)
def test_columns_equal_lsst_alert_packets_records(version):
    """Every field the bulk decoder reads, in the alert and in every history point, as lsst-alert-
    packet's own reader reads it."""
    decoder = Decoder(check_values=False)
    records = _records(version)
    records[1]["prvDiaSources"] = None
    packets = decoder.encode_batch(records, version)
    schema = alert_packet.Schema.from_file(
        f"{alert_packet.get_schema_path(version.major, version.minor)}/"
        f"lsst.v{version.major}_{version.minor}.alert.avsc")
    program = bulk_decode._program(version)
    columns = avro_columns.read(program, packets, 5)
    assert not columns.status.any()
    everyone = np.arange(len(packets))
    want = [schema.deserialize(p[5:]) for p in packets]
    history = [point for record in want for point in record["prvDiaSources"] or []]
    assert columns.count.tolist() == [len(r["prvDiaSources"] or []) for r in want]
    assert columns.owner.tolist() == [k for k, r in enumerate(want) for _ in r["prvDiaSources"] or []]
    assert len(program.slots) >= 13
    for path, slot in program.slots.items():
        if path[0] == bulk_decode.HISTORY:
            got = columns.item(slot).tolist()
            expected = [point[path[2]] for point in history]
            if slot[1] == avro_columns.CODE:
                expected = [BANDS.index(b) if b in BANDS else -1 for b in expected]
            assert same(got, expected), path
            continue
        values, null = columns.alert(slot, everyone)
        expected = [r[path[0]] if len(path) == 1 else r[path[0]][path[1]] for r in want]
        if slot[1] == avro_columns.SPAN:
            got = [None if o < 0 else p[5 + o:5 + o + n].decode()
                   for p, (o, n) in zip(packets, values.tolist(), strict=True)]
        else:
            got = [None if m else v for v, m in zip(values.tolist(), null.tolist(), strict=True)]
        assert same(got, expected), path


def _assert_same_alert(bulk, reference) -> None:
    assert type(bulk) is type(reference)
    if isinstance(reference, DecodeError):
        assert str(bulk) == str(reference)
        return
    for name in ("version", "alert_id", "dia_source_id", "dia_object_id", "ra", "dec", "mjd", "band"):
        assert getattr(bulk, name) == getattr(reference, name), name
    want = light_curve(reference)
    assert len(want) > 0 or not reference.record.get("prvDiaSources")
    for name in ("t", "flux", "flux_err", "band", "source_id"):
        assert np.array_equal(getattr(bulk.curve, name), getattr(want, name)), name
        assert getattr(bulk.curve, name).dtype == getattr(want, name).dtype, name
    for name in ("n_input", "n_dropped", "n_duplicates"):
        assert getattr(bulk.curve, name) == getattr(want, name), name
    assert bulk.previous_count == reference.previous_count


@pytest.mark.parametrize("version", VERSIONS, ids=str)
def test_alerts_and_light_curves_equal_the_per_message_path(version):
    decoder = Decoder()
    records = list(simulate_alerts(16, history=12, version=version, seed=version.schema_id))
    records[3] = _messy(records[3], version)
    records[5]["prvDiaSources"] = None
    records[6]["prvDiaSources"] = []
    records[8]["diaSource"]["ra"] = float("nan")
    packets = decoder.encode_batch(records, version)
    bulk = bulk_decode.decode_batch(packets, decoder)
    reference = decoder.decode_batch(packets, lean=True)
    assert isinstance(bulk[8], InvalidValue)
    assert bulk[3].curve.n_dropped == 7 and bulk[3].curve.n_duplicates == 2
    for b, r in zip(bulk, reference, strict=True):
        _assert_same_alert(b, r)


def _corrupt(kind: str, packet: bytes) -> bytes:
    if kind == "trailing byte":
        return packet + b"\x00"
    if kind == "truncated":
        return packet[:len(packet) // 2]
    if kind == "header only":
        return packet[:5]
    if kind == "overwritten bytes":
        return packet[:60] + b"\xff" * 12 + packet[72:]
    if kind == "older schema id":  # a v11.1 body labelled 11.0
        return b"\x00" + struct.pack(">I", 1100) + packet[5:]
    raise AssertionError(kind)


@pytest.mark.parametrize("position", [0, 17, 39])
@pytest.mark.parametrize("kind", ["trailing byte", "truncated", "header only", "overwritten bytes",
                                  "older schema id"])
def test_a_corrupt_packet_in_a_bulk_batch_is_the_only_dead_letter(kind, position):
    decoder = Decoder()
    packets = decoder.encode_batch(list(simulate_alerts(40, history=20, cutout_bytes=200, seed=7)), LATEST)
    packets[position] = _corrupt(kind, packets[position])
    bulk = bulk_decode.decode_batch(packets, decoder)
    reference = decoder.decode_batch(packets, lean=True)
    assert [i for i, a in enumerate(bulk) if isinstance(a, DecodeError)] == [position]
    assert isinstance(bulk[position], (CorruptAvro, TooShort))
    for b, r in zip(bulk, reference, strict=True):
        _assert_same_alert(b, r)


def test_json_unframed_and_mixed_versions_share_one_batch():
    decoder = Decoder()
    old = VERSIONS[-2]
    new = list(simulate_alerts(10, history=5, seed=1))
    older = list(simulate_alerts(10, history=5, version=old, seed=2))
    packets = decoder.encode_batch(new, LATEST) + decoder.encode_batch(older, old) + [b'{"diaSourceId": 1}']
    packets = packets[::2] + packets[1::2]  # interleaved
    bulk = bulk_decode.decode_batch(packets, decoder)
    reference = decoder.decode_batch(packets, lean=True)
    for b, r in zip(bulk, reference, strict=True):
        _assert_same_alert(b, r)
    assert sum(isinstance(b, DecodeError) for b in bulk) == 1


def test_histories_longer_than_the_first_guess_grow_the_columns():
    decoder = Decoder()
    packets = decoder.encode_batch(list(simulate_alerts(3, history=150, seed=3)), LATEST)
    assert sum(r.previous_count for r in decoder.decode_batch(packets, lean=True)) > 64 + 40 * 3  # rows
    for b, r in zip(bulk_decode.decode_batch(packets, decoder), decoder.decode_batch(packets, lean=True),
                    strict=True):
        _assert_same_alert(b, r)


def test_a_failure_after_reading_falls_back_to_the_per_message_decoder(monkeypatch):
    decoder = Decoder()
    packets = decoder.encode_batch(list(simulate_alerts(12, history=8, seed=4)), LATEST)

    def broken(*_args):
        raise KeyError("a field this code did not expect")

    monkeypatch.setattr(bulk_decode, "curves_from_points", broken)
    reference = decoder.decode_batch(packets, lean=True)
    for b, r in zip(bulk_decode.decode_batch(packets, decoder), reference, strict=True):
        _assert_same_alert(b, r)


def test_a_schema_the_reader_cannot_compile_is_decoded_per_message(monkeypatch):
    decoder = Decoder()
    packets = decoder.encode_batch(list(simulate_alerts(6, history=4, seed=5)), LATEST)

    def unsupported(_version):
        raise avro_columns.Unsupported("type map")

    monkeypatch.setattr(bulk_decode, "_program", unsupported)
    for b, r in zip(bulk_decode.decode_batch(packets, decoder), decoder.decode_batch(packets, lean=True),
                    strict=True):
        _assert_same_alert(b, r)
