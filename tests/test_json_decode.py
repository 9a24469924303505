"""JSON alerts typed in bulk (msgspec) against the per-alert path (each written as Avro, then decoded):
the same alerts and light curves for every shipped schema version, and never laxer: whatever the
Avro writer refuses, the bulk path refuses too (the per-alert path then names the fault)."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import DecodeError
from streaming import bulk_decode, json_decode
from streaming.decode import Decoder, read_container, sample_paths, shipped_versions
from streaming.simulate import simulate_alerts
from tests.test_bulk_decode import _assert_same_alert

VERSIONS = shipped_versions()
LATEST = VERSIONS[-1]


def _json(record: dict) -> dict:
    """The record as a JSON client sends it: bytes (the cutouts) cannot be JSON, so null; timestamps
    as their microseconds; no NaN (the simulator's filler for fields of older schemas), so 0."""
    def plain(value):
        return round(value.timestamp() * 1e6) if isinstance(value, datetime) else None
    return json.loads(json.dumps(record, default=plain).replace("NaN", "0.0"))


def _reference(items: list[dict], version, decoder: Decoder) -> list:
    """The per-alert path: each written as Avro by the schema's writer, then bulk-decoded."""
    return bulk_decode.decode_batch([decoder.json_to_avro(item, version) for item in items], decoder)


def _records(version) -> list[dict]:
    _, sample = read_container(sample_paths(version)[0])
    records = [_json(r) for r in sample + list(simulate_alerts(10, history=14, version=version, forced=True,
                                                                seed=version.schema_id))]
    records[2]["prvDiaSources"] = None
    records[3]["prvDiaSources"] = []
    messy = records[4]["prvDiaSources"]  # points the light curve drops or merges
    messy[1]["band" if version.major >= 5 else "filterName"] = "x"
    messy[2]["diaSourceId"] = -3
    messy.append(copy.deepcopy(messy[0]))
    records[5]["diaSource"]["ra"] = 400.0  # an impossible position: InvalidValue, as from Avro
    return records


@pytest.mark.parametrize("version", VERSIONS, ids=str)
def test_json_alerts_equal_the_per_alert_avro_path(version):
    decoder = Decoder()
    records = _records(version)
    decoded = json_decode.decode_json(json.dumps(records).encode(), version)
    assert decoded is not None, "the bulk path refused valid alerts"
    many, items = decoded
    assert many and len(items) == len(records)
    fast = json_decode.alerts(items, version, decoder)
    assert isinstance(fast[5], DecodeError)
    for got, want in zip(fast, _reference(records, version, decoder), strict=True):
        _assert_same_alert(got, want)


def test_one_alert_not_in_a_list():
    decoder = Decoder()
    record = _records(LATEST)[1]
    many, items = json_decode.decode_json(json.dumps(record).encode(), LATEST)
    assert not many and len(items) == 1
    want = _reference([record], LATEST, decoder)[0]
    _assert_same_alert(json_decode.alerts(items, LATEST, decoder)[0], want)


def test_float32_fields_carry_what_a_packet_can():
    """psfFlux is an Avro float: 1234.5678901 in JSON is what float32 holds, as after an Avro trip."""
    decoder = Decoder()
    record = _records(LATEST)[1]
    record["diaSource"]["psfFlux"] = 1234.5678901
    alert = json_decode.alerts(json_decode.decode_json(json.dumps([record]).encode(), LATEST)[1], LATEST,
                               decoder)[0]
    i = int(np.flatnonzero(alert.curve.source_id == record["diaSource"]["diaSourceId"])[0])
    assert alert.curve.flux[i] == float(np.float32(1234.5678901)) != 1234.5678901


def _leaves(value, path=()):
    """Every place in a record a value can be changed: (path to the container, key)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield path, i
            yield from _leaves(v, (*path, i))


BASE = _records(LATEST)[1]
PLACES = list(_leaves(BASE))
REPLACEMENTS = [None, True, False, 0, -1, 1.5, 2**31, -2**31 - 1, 2**63, 1e39, 1e300, "x", "\ud800", [], {},
                {"diaSourceId": 1}, [1.0]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PLACES),
                          st.one_of(st.sampled_from(REPLACEMENTS), st.just("<delete>"), st.just("<extra>"))),
                min_size=1, max_size=3))
def test_the_bulk_path_is_never_laxer_than_the_avro_writer(changes):
    record = copy.deepcopy(BASE)
    for (path, key), value in changes:
        container = record
        try:
            for step in path:
                container = container[step]
            if value == "<delete>":
                del container[key]
            elif value == "<extra>" and isinstance(container, dict):
                container["notInTheSchema"] = key
            elif value != "<extra>":
                container[key] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or retyped this place
    decoder = Decoder()
    try:
        reference = _reference([record], LATEST, decoder)
    except DecodeError:
        reference = None
    try:
        body = json.dumps(record).encode()
    except ValueError:
        return
    decoded = json_decode.decode_json(body, LATEST)
    if decoded is None:
        return  # refused: the per-alert path answers, whatever it says
    assert reference is not None, "the bulk path accepted what the Avro writer refuses"
    _assert_same_alert(json_decode.alerts(decoded[1], LATEST, decoder)[0], reference[0])
