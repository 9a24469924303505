"""Decoding: every shipped schema version, framed / unframed / JSON, and a table of malformed input."""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import (
    CorruptAvro,
    DecodeError,
    EmptyPacket,
    InvalidJson,
    InvalidValue,
    MissingField,
    SchemaMismatch,
    SchemaRegistryUnavailable,
    TooShort,
    UnknownSchema,
    WrongMagicByte,
)
from streaming.decode import Decoder, SchemaVersion, read_container, sample_paths, shipped_versions
from streaming.simulate import simulate_alerts
from tests.helpers import same

VERSIONS = shipped_versions()
LATEST = VERSIONS[-1]


def test_package_ships_every_version_from_3_0_to_11_1():
    assert VERSIONS[0] == SchemaVersion(3, 0)
    assert SchemaVersion(11, 1) in VERSIONS
    assert len(VERSIONS) >= 15


def test_schema_id_is_major_times_100_plus_minor():
    assert SchemaVersion(11, 1).schema_id == 1101
    assert SchemaVersion.from_id(703) == SchemaVersion(7, 3)
    assert SchemaVersion.parse("11.1") == SchemaVersion(11, 1)
    with pytest.raises(ValueError, match=r"11\.1"):
        SchemaVersion.parse("eleven")


@pytest.mark.parametrize("version", VERSIONS, ids=str)
def test_shipped_samples_decode_framed_and_unframed(version):
    # the codec alone: the fake samples of schemas before 8.0 carry Unix seconds as their MJD
    decoder = Decoder(check_values=False)
    avro_path, json_path = sample_paths(version)
    container_version, records = read_container(avro_path)
    assert container_version == version
    assert records, "the sample container holds at least one alert"
    record = records[0]

    framed = decoder.encode(record, version)
    assert framed[0] == 0 and struct.unpack(">I", framed[1:5])[0] == version.schema_id
    alert = decoder.decode(framed)
    assert alert.version == version
    assert same(alert.record, record)
    assert alert.dia_source_id == record["diaSource"]["diaSourceId"]

    unframed = decoder.encode(record, version, framed=False)
    alert2 = Decoder(default_version=version, check_values=False).decode(unframed)
    assert same(alert2.record, record)

    from_json = decoder.decode_json(json_path.read_bytes(), version)
    assert from_json.version == version
    assert from_json.dia_source_id > 0

    # with the value checks on (the default), the sample passes them or names what is wrong
    [checked] = Decoder().decode_batch([framed])
    if version.major < 8:
        assert isinstance(checked, InvalidValue) and "1480360995" in str(checked)
    else:
        assert same(checked.record, record)


def _with(record: dict, **changes) -> dict:
    out = json.loads(json.dumps(record))
    out["diaSource"].update(changes)
    return out


BAD_VALUES = [
    ("ra NaN", {"ra": float("nan")}, "diaSource.ra = nan"),
    ("ra +inf", {"ra": float("inf")}, "diaSource.ra = inf"),
    ("ra 1e300", {"ra": 1e300}, "diaSource.ra = 1e+300"),
    ("ra 360", {"ra": 360.0}, "diaSource.ra = 360.0"),
    ("ra negative", {"ra": -0.5}, "diaSource.ra = -0.5"),
    ("dec -1e300", {"dec": -1e300}, "diaSource.dec = -1e+300"),
    ("dec 90.5", {"dec": 90.5}, "diaSource.dec = 90.5"),
    ("dec NaN", {"dec": float("nan")}, "diaSource.dec = nan"),
    ("time +inf", {"midpointMjdTai": float("inf")}, "diaSource.midpointMjdTai = inf"),
    ("time NaN", {"midpointMjdTai": float("nan")}, "diaSource.midpointMjdTai = nan"),
    ("time Unix seconds", {"midpointMjdTai": 1.7e9}, "diaSource.midpointMjdTai = 1700000000.0"),
    ("negative source id", {"diaSourceId": -5}, "diaSource.diaSourceId = -5"),
    ("zero source id", {"diaSourceId": 0}, "diaSource.diaSourceId = 0"),
    ("negative object id", {"diaObjectId": -(2**63)}, f"diaSource.diaObjectId = {-(2**63)}"),
]


@pytest.mark.parametrize(("name", "changes", "message"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_invalid_value_errors_naming_the_field(name, changes, message, decoder):
    record = next(simulate_alerts(1, history=4, seed=3))
    good = decoder.encode(record, LATEST)
    bad = decoder.encode(_with(record, **changes), LATEST)
    results = decoder.decode_batch([good, bad, good])
    assert not isinstance(results[0], DecodeError) and not isinstance(results[2], DecodeError)
    assert isinstance(results[1], InvalidValue), f"{name}: got {results[1]!r}"
    assert results[1].reason == "invalid_value" and results[1].schema_id == LATEST.schema_id
    assert message in str(results[1]), str(results[1])
    # the JSON path checks the same values (Python's JSON reads NaN and Infinity)
    text = json.dumps(_with(record, **changes)).encode()
    with pytest.raises(InvalidValue, match="diaSource"):
        decoder.decode_json(text, LATEST)


@pytest.mark.parametrize("version", VERSIONS, ids=str)
def test_simulated_alerts_round_trip_every_version(version, decoder):
    for record in simulate_alerts(5, history=12, version=version, forced=True, seed=version.schema_id):
        once = decoder.decode(decoder.encode(record, version)).record
        twice = decoder.decode(decoder.encode(once, version)).record
        assert same(once, twice)
        assert len(once["prvDiaSources"]) == 12


def test_json_batch_path_detects_json(decoder):
    record = next(simulate_alerts(1, history=3))
    payload = decoder.decode(decoder.encode(record, LATEST)).record
    text = json.dumps({k: v for k, v in payload.items() if not isinstance(v, bytes)}).encode()
    [alert] = decoder.decode_batch([text])
    assert not isinstance(alert, DecodeError), alert
    assert alert.dia_source_id == payload["diaSource"]["diaSourceId"]


def _valid() -> bytes:
    return Decoder().encode(next(simulate_alerts(1, history=5)), LATEST)


MALFORMED = [
    ("empty", b"", EmptyPacket),
    ("1 byte", b"\x00", TooShort),
    ("4 bytes", b"\x00\x00\x00\x04", TooShort),
    ("header only", b"\x00\x00\x00\x04\x4d", TooShort),
    ("wrong magic", b"\x07" + _valid()[1:], WrongMagicByte),
    ("unknown id 9999", b"\x00" + struct.pack(">I", 9999) + _valid()[5:], UnknownSchema),
    ("truncated body", _valid()[:200], CorruptAvro),
    ("random bytes", b"\x9c" + os.urandom(63), WrongMagicByte),
    ("valid framing + garbage", _valid()[:5] + b"\xff" * 300, CorruptAvro),
    ("trailing bytes", _valid() + b"\x00\x00", CorruptAvro),
    ("invalid JSON", b"{not json", InvalidJson),
    ("JSON missing fields", b'{"diaSourceId": 1}', MissingField),
    ("JSON wrong types", b'{"diaSourceId": "one", "diaSource": 5}', SchemaMismatch),
    ("JSON array", b"[1, 2]", SchemaMismatch),
]


@pytest.mark.parametrize(("name", "data", "error"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_yields_its_reason_and_never_raises(name, data, error, decoder):
    good = _valid()
    results = decoder.decode_batch([good, data, good])
    assert not isinstance(results[0], DecodeError) and not isinstance(results[2], DecodeError)
    assert isinstance(results[1], error), f"{name}: got {results[1]!r}"
    assert results[1].reason == error.reason
    assert str(results[1]), "every error has a message"


def test_unknown_id_carries_schema_id(decoder):
    [err] = decoder.decode_batch([b"\x00" + struct.pack(">I", 9999) + b"\x02"])
    assert isinstance(err, UnknownSchema) and err.schema_id == 9999


def test_registry_that_cannot_be_reached_is_transient_not_a_dead_letter():
    dec = Decoder(registry_url="http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(SchemaRegistryUnavailable, match="cannot be reached") as caught:
        dec.decode_batch([b"\x00" + struct.pack(">I", 4242) + b"\x02"])
    assert caught.value.transient


def test_unframed_needs_a_default_version(decoder):
    record = next(simulate_alerts(1, history=2))
    record["diaSourceId"] = 1  # zig-zag varint 0x02: the packet's first byte
    unframed = decoder.encode(record, LATEST, framed=False)
    with pytest.raises(WrongMagicByte, match="default schema version"):
        Decoder().decode(unframed)
    assert Decoder(default_version=LATEST).decode(unframed).alert_id == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_bytes_decode_to_alert_or_error_value(data):
    [result] = Decoder(default_version=LATEST).decode_batch([data])
    assert result is not None


def test_schema_registry_resolves_an_unshipped_id():
    """A Confluent-style registry (GET /schemas/ids/{id}) supplies a schema the package lacks."""
    import http.server
    import threading

    from streaming.decode import _shipped_definition

    schema_text = json.dumps(_shipped_definition(LATEST))
    calls = []

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.path)
            # 4545: the registry blinks (503) on the first request, then answers
            blinking = self.path == "/schemas/ids/4545" and calls.count(self.path) == 1
            found = self.path in ("/schemas/ids/4242", "/schemas/ids/4545") and not blinking
            body = json.dumps({"schema": schema_text} if found else {"error_code": 40403}).encode()
            self.send_response(200 if found else 503 if blinking else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dec = Decoder(registry_url=f"http://127.0.0.1:{server.server_port}")
        record = next(simulate_alerts(1, history=3))
        body = Decoder().encode(record, LATEST)[5:]
        alert, missing = dec.decode_batch([b"\x00" + struct.pack(">I", 4242) + body,
                                           b"\x00" + struct.pack(">I", 4343) + body])
        assert not isinstance(alert, DecodeError), alert
        assert alert.dia_source_id == record["diaSource"]["diaSourceId"]
        assert isinstance(missing, UnknownSchema) and missing.schema_id == 4343
        dec.decode_batch([b"\x00" + struct.pack(">I", i) + body for i in (4242, 4343, 4343)])
        assert calls.count("/schemas/ids/4242") == 1, "resolved ids are cached"
        assert calls.count("/schemas/ids/4343") == 1, "misses are not asked again at once"
        # a 5xx is transient: the batch is retried (not dead-lettered), and then it decodes
        blinked = [b"\x00" + struct.pack(">I", 4545) + body]
        with pytest.raises(SchemaRegistryUnavailable, match="answered 503"):
            dec.decode_batch(blinked)
        [later] = dec.decode_batch(blinked)
        assert not isinstance(later, DecodeError) and later.dia_source_id == alert.dia_source_id
    finally:
        server.shutdown()
