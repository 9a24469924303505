"""HTTP API through the ASGI app (real store, real ONNX sessions) and through a running uvicorn."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from models.registry import Registry
from service.api import classify as classify_api
from service.app import create_app
from service.settings import Settings
from streaming.decode import Decoder, latest_version, read_container, sample_paths, shipped_versions
from streaming.lightcurve import LightCurve, light_curve
from streaming.pipeline import classify_alerts
from streaming.simulate import alert_at, simulate_alerts
from tests.helpers import long_lived_object, serve

VERSION = latest_version()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


@pytest.fixture
def client(tmp_path, registry):
    settings = Settings(data_dir=tmp_path, api_key="s3cret", max_body_bytes=200_000, max_batch_alerts=50)
    with TestClient(create_app(settings, registry=registry)) as c:
        yield c


def packets(n: int, history: int = 25, seed: int = 0) -> list[bytes]:
    decoder = Decoder()
    return [decoder.encode(r, VERSION) for r in simulate_alerts(n, history=history, seed=seed)]


def alert_json(seed: int = 0, history: int = 20) -> dict:
    decoder = Decoder()
    [record] = simulate_alerts(1, history=history, seed=seed)
    return decoder.decode(decoder.encode(record, VERSION)).record


def avro(c: TestClient, body: bytes, **params) -> httpx.Response:
    return c.post("/v1/classify", content=body, params=params, headers={"content-type": "application/avro"})


def js(c: TestClient, obj, **kw) -> httpx.Response:
    return c.post("/v1/classify", content=json.dumps(obj), headers={"content-type": "application/json",
                                                                    **kw.pop("headers", {})}, params=kw)


# --- classify ----------------------------------------------------------------------------------

def test_classify_avro_framed_and_unframed(client, registry):
    [packet] = packets(1)
    r = avro(client, packet)
    assert r.status_code == 200
    body = r.json()
    assert [x["classifier"] for x in body["results"]] == list(registry.models)
    for result in body["results"][:-1]:
        assert sum(c["probability"] for c in result["classifications"]) == pytest.approx(1, abs=1e-5)
    assert body["results"][-1]["classifier"] == "anomaly" and 0 <= body["results"][-1]["score"] <= 1
    unframed = packet[5:]
    r2 = avro(client, unframed, schema="11.1")
    assert r2.json() == body
    assert avro(client, unframed).status_code == 422  # no schema given for an unframed packet


def test_classify_json_object_and_list_match_the_cli_path(client, registry):
    alerts = [alert_json(i) for i in range(3)]
    single = js(client, alerts[0])
    assert single.status_code == 200 and isinstance(single.json(), dict)
    many = js(client, alerts)
    assert many.status_code == 200 and len(many.json()) == 3
    decoder = Decoder()
    expected = classify_alerts([decoder.alert_from_dict(a, VERSION) for a in alerts], registry)
    assert many.json() == json.loads(json.dumps(expected))
    assert single.json() == many.json()[0]


def test_classify_agrees_with_the_classify_command(client, tmp_path):
    files = []
    for i, packet in enumerate(packets(4, history=40, seed=9)):
        path = tmp_path / f"alert{i}.avro"
        path.write_bytes(packet)
        files.append(path)
    out = subprocess.run([sys.executable, "-m", "service.cli", "classify", *map(str, files)],
                         capture_output=True, text=True, timeout=120, check=True)
    cli = [json.loads(line) for line in out.stdout.splitlines()]
    for path, line in zip(files, cli, strict=True):
        http = avro(client, path.read_bytes()).json()
        line.pop("file")
        assert http == line


def test_package_samples_classify_over_http(client):
    """Schemas 8.0 on: classified. Before 8.0 the fake samples carry Unix seconds as MJD: a 422
    naming the field, for JSON and Avro alike."""
    for version in shipped_versions():
        avro_path, json_path = sample_paths(version)
        _, records = read_container(avro_path)
        answers = [js(client, json.loads(json_path.read_text()), schema=str(version)),
                   avro(client, Decoder(check_values=False).encode(records[0], version))]
        for r in answers:
            if version.major < 8:
                assert r.status_code == 422, (version, r.text)
                assert r.json()["error"]["reason"] == "invalid_value"
                assert "1480360995" in r.json()["error"]["message"]
            else:
                assert r.status_code == 200, (version, r.text)


@pytest.mark.parametrize(("body", "ctype", "status", "reason"), [
    (b"\x07abc", "application/avro", 422, "wrong_magic_byte"),
    (b"\x00\x00\x00\x27\x0f\x02", "application/avro", 422, "unknown_schema_id"),
    (b"", "application/avro", 422, "empty"),
    (b"{not json", "application/json", 422, "invalid_json"),
    (b'{"diaSourceId": 1}', "application/json", 422, "missing_field"),
    (b"[]", "application/json", 422, "validation_error"),
    (b"[1, 2]", "application/json", 422, "schema_mismatch"),
    (b"hello", "text/plain", 415, "unsupported_media_type"),
    (b"x" * 300_000, "application/avro", 413, "body_too_large"),
])
def test_bad_input_gets_a_precise_4xx(client, body, ctype, status, reason):
    r = client.post("/v1/classify", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["reason"] == reason and err["message"]


def test_list_errors_name_the_item_and_batches_are_capped(client):
    good = alert_json(1)
    r = js(client, [good, {"diaSourceId": 5}])
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("[1]")
    sample = json.loads(sample_paths(VERSION)[1].read_text())  # small: 51 stay under the body limit
    r = js(client, [sample] * 51)
    assert r.status_code == 413 and r.json()["error"]["reason"] == "too_many_alerts"


def test_bad_parameters_name_the_field(client):
    r = avro(client, packets(1)[0], schema="eleven")
    assert r.status_code == 422 and "schema" in r.json()["error"]["message"]
    r = avro(client, packets(1)[0], schema="99.9")
    assert r.status_code == 422 and "not a known Rubin schema" in r.json()["error"]["message"]
    r = client.get("/v1/classifications", params={"limit": 5000})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"


def test_store_needs_the_api_key(client):
    packet = packets(1)[0]
    assert avro(client, packet, store="true").status_code == 401
    r = client.post("/v1/classify", content=packet, params={"store": "true"},
                    headers={"content-type": "application/avro", "x-api-key": "wrong"})
    assert r.status_code == 403 and r.json()["error"]["reason"] == "forbidden"
    r = client.post("/v1/classify", content=packet, params={"store": "true"},
                    headers={"content-type": "application/avro", "x-api-key": "s3cret"})
    assert r.status_code == 200


def test_classify_uses_the_detections_stored_before(client, registry):
    obj = long_lived_object()
    decoder = Decoder()
    packets_ = [decoder.encode(alert_at(obj, i), VERSION) for i in range(len(obj.t))]
    last = decoder.decode(packets_[-1])
    on_all = registry.classify([LightCurve.from_arrays(obj.t, obj.flux, obj.flux_err, obj.band)])[0]
    on_alone = registry.classify([light_curve(last)])[0]
    assert avro(client, packets_[-1]).json()["results"] == [r.as_dict() for r in on_alone]
    for packet in packets_[:-1]:  # the earlier alerts, kept
        r = client.post("/v1/classify", content=packet, params={"store": "true"},
                        headers={"content-type": "application/avro", "x-api-key": "s3cret"})
        assert r.status_code == 200
    # now the last alert is judged on every detection, not only the year it carries
    assert avro(client, packets_[-1]).json()["results"] == [r.as_dict() for r in on_all]
    assert on_all != on_alone
    # the kept detections, in time order: every alert's but the last (classified without store=true)
    points = client.get(f"/v1/objects/{obj.dia_object_id}/lightcurve").json()["points"]
    assert [p["mjd"] for p in points] == obj.t[:-1].tolist()
    assert [p["band"] for p in points] == obj.band[:-1].tolist()
    assert [p["psfFlux"] for p in points] == obj.flux[:-1].astype(float).tolist()
    assert client.get("/v1/objects/1/lightcurve").status_code == 404
    # every kept detection, a page at a time (no silent cap): pages of 7 give the same points
    paged, cursor = [], None
    while True:
        page = client.get(f"/v1/objects/{obj.dia_object_id}/lightcurve",
                          params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        paged += page["points"]
        cursor = page["next_cursor"]
        assert (cursor is None) == (len(page["points"]) < 7)
        if cursor is None:
            break
    assert paged == points and len(paged) == len(obj.t) - 1
    assert client.get(f"/v1/objects/{obj.dia_object_id}/lightcurve?cursor=x").status_code == 422


# --- queries ------------------------------------------------------------------------------------

def _store_some(client, n: int = 30) -> list[dict]:
    out = []
    for packet in packets(n, history=30, seed=3):
        r = client.post("/v1/classify", content=packet, params={"store": "true"},
                        headers={"content-type": "application/avro", "x-api-key": "s3cret"})
        out.append(r.json())
    return out


def test_object_history_and_classification_queries(client):
    stored = _store_some(client)
    first = stored[0]
    r = client.get(f"/v1/objects/{first['diaObjectId']}")
    assert r.status_code == 200
    body = r.json()
    assert set(body["latest"]) == {"rrlyrae", "supernova"}
    assert body["latest"]["rrlyrae"]["diaSourceId"] == first["diaSourceId"]
    assert client.get("/v1/objects/1").status_code == 404

    page = client.get("/v1/classifications", params={"limit": 25}).json()
    assert len(page["items"]) == 25 and page["next_cursor"] is not None
    rest = client.get("/v1/classifications", params={"limit": 25, "cursor": page["next_cursor"]}).json()
    assert len(rest["items"]) == 25  # 30 alerts x 2 classifiers = 60 rows
    ids = [x["id"] for x in page["items"] + rest["items"]]
    assert ids == sorted(set(ids)), "pages are disjoint and ordered"

    sn = client.get("/v1/classifications", params={"classifier": "supernova", "limit": 1000}).json()["items"]
    assert len(sn) == 30 and all(x["classifier"] == "supernova" for x in sn)
    ia = client.get("/v1/classifications", params={"classId": 2222, "min_probability": 0.5}).json()["items"]
    for x in ia:
        assert next(c["probability"] for c in x["classifications"] if c["classId"] == 2222) >= 0.5


def test_cone_query_and_csv(client):
    stored = _store_some(client, 10)
    row = client.get("/v1/objects/{}".format(stored[0]["diaObjectId"])).json()["latest"]["rrlyrae"]
    r = client.get("/v1/classifications", params={"ra": row["ra"], "dec": row["dec"], "radius": 1})
    assert {x["diaSourceId"] for x in r.json()["items"]} == {row["diaSourceId"]}
    assert client.get("/v1/classifications", params={"ra": 1}).status_code == 422
    # a misspelt filter is refused, not ignored (which would return every row)
    r = client.get("/v1/classifications", params={"class_id": 2323})
    err = r.json()["error"]
    assert r.status_code == 422 and err["reason"] == "validation_error"
    assert "class_id" in err["message"] and "classId" in err["message"]
    assert client.post("/v1/classify?stor=true", content=b"{}",
                       headers={"content-type": "application/json"}).status_code == 422
    text = client.get("/v1/classifications", params={"format": "csv", "limit": 5}).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 5 and "top_probability" in table[0]


def test_parquet_and_votable_carry_the_same_rows_with_units(client):
    import pyarrow.parquet as pq
    from astropy.io.votable import parse_single_table

    stored = _store_some(client, 6)
    rows = client.get("/v1/classifications", params={"limit": 1000}).json()["items"]
    r = client.get("/v1/classifications", params={"format": "parquet", "limit": 1000})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column("diaSourceId").to_pylist() == [x["diaSourceId"] for x in rows]
    assert table.column("diaObjectId").to_pylist() == [x["diaObjectId"] for x in rows]  # 64-bit, exact
    assert table.column("topProbability").to_pylist() == [x["topProbability"] for x in rows]
    assert json.loads(table.column("classifications")[0].as_py()) == rows[0]["classifications"]
    assert table.schema.field("ra").metadata[b"unit"] == b"deg"
    assert table.schema.field("mjd").metadata[b"unit"] == b"d"

    r = client.get("/v1/classifications", params={"format": "votable", "limit": 1000})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-votable+xml"
    vot = parse_single_table(io.BytesIO(r.content)).to_table()
    assert [int(v) for v in vot["diaSourceId"]] == [x["diaSourceId"] for x in rows]
    assert [int(v) for v in vot["diaObjectId"]] == [x["diaObjectId"] for x in rows]
    assert str(vot["ra"].unit) == "deg" and str(vot["mjd"].unit) == "d"
    assert "MJD, TAI" in vot["mjd"].description
    assert [str(v) for v in vot["reason"].filled("")] == [x["reason"] or "" for x in rows]

    # the light curve too, flux in nJy
    obj = stored[0]["diaObjectId"]
    points = client.get(f"/v1/objects/{obj}/lightcurve").json()["points"]
    lc = pq.read_table(io.BytesIO(client.get(f"/v1/objects/{obj}/lightcurve",
                                             params={"format": "parquet"}).content))
    assert lc.column("psfFlux").to_pylist() == [p["psfFlux"] for p in points]
    assert lc.column("band").to_pylist() == [p["band"] for p in points]
    vlc = parse_single_table(io.BytesIO(client.get(f"/v1/objects/{obj}/lightcurve",
                                                   params={"format": "votable"}).content)).to_table()
    assert str(vlc["psfFlux"].unit) == "nJy" and list(vlc["mjd"]) == [p["mjd"] for p in points]
    assert [int(v) for v in vlc["diaSourceId"]] == [p["diaSourceId"] for p in points]


# --- models, health, metrics ---------------------------------------------------------------------

def test_models_endpoints(client):
    avro(client, packets(1)[0])
    models = client.get("/v1/models").json()
    assert {m["name"] for m in models} == {"rrlyrae", "supernova", "anomaly"}
    anomaly = client.get("/v1/models/anomaly").json()
    assert anomaly["class_ids"] == [] and anomaly["metrics"]["held_out"]["real"]["auroc"] > 0.5
    m = client.get("/v1/models/rrlyrae").json()
    assert len(m["sha256"]) == 64 and m["features"] and m["metrics"]["held_out_all"]["auc"] > 0.5
    assert m["ready"] and m["load_seconds"] > 0 and m["rows_scored"] >= 1
    assert m["inference_latency_ms"]["calls"] >= 1 and m["inference_shared_with"] == "anomaly"
    assert client.get("/v1/models/nope").status_code == 404


def test_health_and_metrics(client):
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["models"]["ok"]
    avro(client, packets(1)[0])
    text = client.get("/metrics").text
    assert 'alert_classifier_http_requests_total{method="POST",route="/v1/classify",status="200"}' in text
    assert "alert_classifier_model_inference_seconds_bucket" in text
    assert client.get("/").status_code == 200


# --- a real server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = serve({}, tmp_path_factory.mktemp("serve"))
    yield url
    proc.terminate()
    proc.wait(30)


def test_uvicorn_serves_the_same_answers(server, client):
    packet = packets(1, seed=21)[0]
    live = httpx.post(f"{server}/v1/classify", content=packet, headers={"content-type": "application/avro"})
    assert live.status_code == 200
    assert live.json() == avro(client, packet).json()
    assert httpx.get(f"{server}/readyz").status_code == 200
    bad = httpx.post(f"{server}/v1/classify", content=b"\x01", headers={"content-type": "application/avro"})
    assert bad.status_code == 422


def test_probes_answer_while_a_500_alert_classify_runs_and_more_work_is_turned_away(tmp_path):
    """The classify work runs off the event loop: /livez, /readyz and /metrics keep answering while
    a 500-alert request is worked on; a request beyond the concurrency bound gets 503 + Retry-After.
    Judged by behaviour, not by a clock: probes answered while the server itself says the request is
    in progress, and none held for a large part of it (a blocked loop holds them to its end)."""
    proc, url = serve({"ALERT_CLASSIFIER_MAX_CONCURRENT_CLASSIFY": "1",
                       "ALERT_CLASSIFIER_MAX_BODY_BYTES": "100000000"}, tmp_path)
    try:
        body = json.dumps([alert_json(seed=i, history=30) for i in range(500)])
        answer: dict = {}

        def classify_500() -> None:
            t0 = time.perf_counter()
            answer["r"] = httpx.post(f"{url}/v1/classify", content=body, timeout=300,
                                     headers={"content-type": "application/json"})
            answer["seconds"] = time.perf_counter() - t0

        worker = threading.Thread(target=classify_500)
        worker.start()
        wait = time.monotonic() + 30
        while "alert_classifier_classify_in_progress 1.0" not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < wait and worker.is_alive(), "the 500-alert request never started"
        busy = httpx.post(f"{url}/v1/classify", content=json.dumps(alert_json()),
                          headers={"content-type": "application/json"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["reason"] == "busy"

        latencies: dict[str, list[float]] = {"/livez": [], "/readyz": [], "/metrics": []}
        during = 0  # /metrics answers that show the request still in progress
        with httpx.Client(base_url=url, timeout=30) as probe:  # one connection, as a prober keeps
            while worker.is_alive():
                for path, seen in latencies.items():
                    t0 = time.perf_counter()
                    r = probe.get(path)
                    seen.append(time.perf_counter() - t0)
                    assert r.status_code == 200, (path, r.text)
                    during += path == "/metrics" and "alert_classifier_classify_in_progress 1.0" in r.text
                time.sleep(0.05)  # a prober asks now and then, not in a busy loop
        worker.join()
        assert answer["r"].status_code == 200 and len(answer["r"].json()) == 500
        print({p: (len(v), round(max(v) * 1000, 1)) for p, v in latencies.items()},
              f"request {answer['seconds']:.2f} s, {during} /metrics answers during it")
        assert during >= 3, f"only {during} /metrics answers came while the request was in progress"
        for path, seen in latencies.items():
            assert len(seen) >= 3, f"{path} was asked while the request ran"
            # Blocking would hold a probe until the request (or a chunk of it the size of the
            # whole) ends; the box's load stretches both alike, so compare them, not a clock.
            assert max(seen) < 0.25 * answer["seconds"], (path, max(seen), answer["seconds"])
    finally:
        proc.terminate()
        proc.wait(30)


def test_an_unexpected_error_is_logged_and_the_body_tells_nothing_of_the_internals(tmp_path, caplog):
    class Broken(Registry):
        def classify(self, curves):
            raise RuntimeError("secret internal state /etc/passwd")

    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings, registry=Broken()), raise_server_exceptions=False) as c:
        r = avro(c, packets(1)[0])
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["reason"] == "internal_error" and "secret" not in r.text and "RuntimeError" not in r.text
    incident = error["message"].split()[2].rstrip(":")
    logged = [rec for rec in caplog.records if incident in rec.getMessage()]
    assert logged and "secret internal state" in "".join(logging.Formatter().formatException(rec.exc_info)
                                                          for rec in logged)


def test_auth_errors_keep_their_headers(client):
    r = avro(client, packets(1)[0], store="true")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "ApiKey"
    assert "x-reason" not in r.headers


def test_api_only_readiness_does_not_depend_on_kafka(tmp_path, registry):
    """`serve` never uses Kafka: a configured but unreachable cluster does not make it unready."""
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:9")
    with TestClient(create_app(settings, registry=registry)) as c:
        ready = c.get("/readyz")
    assert ready.status_code == 200 and "broker" not in ready.json()["checks"]


def test_lone_surrogates_in_json_are_a_4xx_not_a_crash(client):
    """Found by schemathesis: a JSON string with a lone UTF-16 surrogate (legal JSON, not UTF-8)."""
    alert = alert_json(seed=5)
    alert["diaSource"]["band"] = "\udb93"
    for body in (json.dumps(alert), json.dumps([alert]), '{"!": "\\udb93\\udfdd\\udb93"}'):
        r = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text


@pytest.mark.parametrize("one_call_max", [0, classify_api.ONE_CALL_MAX_BYTES])
def test_json_bodies_parse_alike_in_one_call_and_element_by_element(monkeypatch, one_call_max):
    """orjson parses small bodies in one call, Python's parser large ones element by element: the
    same values either way; NaN (which only Python's parser reads) is refused naming the field."""
    monkeypatch.setattr(classify_api, "ONE_CALL_MAX_BYTES", one_call_max)
    alerts = [alert_json(seed=i) for i in range(3)]
    alerts[1]["diaSource"]["band"] = "ĝ ✓"  # non-ASCII text survives both parsers
    for body, many in ((json.dumps(alerts), True), (json.dumps(alerts[0]), False),
                       (" [ ] ", True), ('[{"a": 18446744073709551616}]', True)):  # > 64 bits: Python's
        parsed_many, items = classify_api.iter_json(body.encode())
        assert parsed_many is many
        assert list(items) == (json.loads(body) if many else [json.loads(body)])
    nan = json.dumps([alerts[0], {**alerts[2], "diaSource": {**alerts[2]["diaSource"], "ra": float("nan")}}])
    assert "NaN" in nan
    many, items = classify_api.iter_json(nan.encode())
    assert many and math.isnan(list(items)[1]["diaSource"]["ra"])


def test_nan_in_a_json_alert_is_a_422_naming_the_field(client):
    alert = alert_json(seed=3)
    alert["diaSource"]["ra"] = float("nan")
    r = client.post("/v1/classify", content=json.dumps([alert_json(seed=4), alert]),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["reason"] == "invalid_value"
    assert error["message"].startswith("[1]: ") and "diaSource.ra = nan" in error["message"]
