"""The anomaly model: its score is a population percentile, every path returns it, the store ranks
it, experts' feedback is kept, and a retrain on that feedback ranks the labelled anomalies higher."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models import features
from models.registry import ARTIFACTS, Registry, _version_key
from models.train.anomaly import ANOMALY_FEATURES, candidates, load_reference, next_version
from models.train.anomaly_view import EPS, load_view
from service.app import create_app
from service.cli import main
from service.settings import Settings
from streaming.decode import Decoder, latest_version
from streaming.lightcurve import light_curve
from streaming.pipeline import classify_alerts, records_for
from streaming.records import ClassificationRecord
from streaming.simulate import simulate_alerts

VERSION = latest_version()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def score_record(source_id: int, object_id: int, score: float | None, mjd: float = 60000.0,
                 reason: str | None = None) -> ClassificationRecord:
    return ClassificationRecord(source_id, object_id, source_id, "anomaly", "1.0.0", 10.0, -5.0, mjd, [],
                                reason, "t", 0, source_id, 1_700_000_000_000, 1_700_000_000_500, score)


# --- the model -----------------------------------------------------------------------------------

def test_the_score_is_the_fraction_of_the_population_that_looks_less_unusual(registry):
    """On the reference rows shipped with the model (a sample of its training population), scores
    spread evenly over [0, 1]: 1% of them at or above 0.99, half above 0.5."""
    model = registry.models["anomaly"]
    scores = model.percentiles(load_reference(model.folder))
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.mean(scores >= 0.99) == pytest.approx(0.01, abs=0.006)
    assert np.median(scores) == pytest.approx(0.5, abs=0.03)
    # beyond anything in the population (g - r of -6 mag; the population spans -3.5 to 2.1): in the
    # top 3% whatever the rest of the curve, mostly the top 0.2% (what the classifiers make of the
    # rest moves it: the score adds their view to the features'; anomaly 1.5.2: 96% of these rows in
    # the top 1%, median 0.9996, least 0.984; 1.5.1: 96%, 0.9995, 0.986; 1.5.0: 91%, 0.9985, 0.975;
    # 1.4.0 had them all)
    names = list(features.FEATURE_NAMES)
    odd = load_reference(model.folder)[:300].copy()
    odd[:, names.index("colour_gr_latest")] = -6.0
    scores = model.percentiles(odd)
    assert scores.min() > 0.97 and np.mean(scores > 0.99) > 0.85 and np.median(scores) > 0.998


def test_every_alert_gets_an_anomaly_result_beside_the_classifiers(registry):
    decoder = Decoder()
    alerts = [decoder.decode(decoder.encode(r, VERSION)) for r in simulate_alerts(20, history=25, seed=3)]
    short = [decoder.decode(decoder.encode(r, VERSION)) for r in simulate_alerts(1, history=0, seed=4)]
    results = classify_alerts(alerts + short, registry)
    for obj in results[:-1]:
        names = [r["classifier"] for r in obj["results"]]
        assert names == ["rrlyrae", "supernova", "anomaly"]  # classifiers first
        anomaly = obj["results"][-1]
        assert set(anomaly) == {"classifier", "version", "score", "reason"}
        assert 0 <= anomaly["score"] <= 1 and anomaly["reason"] is None
    declined = results[-1]["results"][-1]
    assert declined["score"] is None and declined["reason"].startswith("too few points")
    # the store rows and the output records carry the same score
    records = records_for(alerts[0], registry.classify([light_curve(alerts[0])])[0])
    assert records[-1].is_anomaly and records[-1].score == results[0]["results"][-1]["score"]


def test_the_card_compares_the_detectors_and_reports_on_objects_no_choice_saw(registry):
    card = registry.models["anomaly"].card
    metrics = card["metrics"]
    view = load_view(ARTIFACTS, registry.models["supernova"].version)
    assert set(metrics["compared"]) == set(candidates(42, view))
    chosen = metrics["chosen"]
    assert card["estimator"] == chosen
    # chosen on the selection half; the held-out figures are the other half's
    assert metrics["held_out"] == metrics["compared"][chosen]["report_half"]
    for name in ("real", "simulated"):
        assert 0 < metrics["held_out"][name]["auroc"] <= 1 and metrics["held_out"][name]["rare"] > 0
    assert card["used_features"] == list(ANOMALY_FEATURES)
    real = metrics["feedback"]["real"]
    assert real["found_with_feedback"] >= real["found_static_forest"]


def test_the_anomaly_model_reads_what_the_shipped_classifiers_say(registry):
    """The classifier view inside the anomaly model is the shipped classifiers' graphs: its `view`
    output equals their probabilities turned into log-odds, entropy and top probability, the
    supernova model's taken before its temperature."""
    model = registry.models["anomaly"]
    for name, embedded in model.card["classifier_view"]["classifiers"].items():
        shipped = registry.models[name]
        assert embedded == {"version": shipped.version, "sha256": shipped.card["sha256"]}
    decoder = Decoder()
    alerts = [decoder.decode(decoder.encode(r, VERSION)) for r in simulate_alerts(40, history=20, seed=21)]
    X = features.extract([light_curve(a) for a in alerts])
    view = model.session.run(["view"], {"features": X.astype(np.float32)})[0]
    supernova = registry.models["supernova"]
    temperature = supernova.card["calibration"]["temperature"]
    assert temperature > 1  # 2.6.1: else this test would not tell the two apart
    z = temperature * np.log(supernova.predict_proba(X).astype(np.float64) + 1e-12)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rrl = registry.models["rrlyrae"]
    q = rrl.predict_proba(X)[:, rrl.class_ids.index(2323)].astype(np.float64)

    def logit(v):
        v = np.clip(v, EPS, 1 - EPS)
        return np.log(v) - np.log(1 - v)

    want = np.c_[logit(p), logit(q), -(p * np.log(p + 1e-12)).sum(axis=1), p.max(axis=1)]
    np.testing.assert_allclose(view, want, rtol=1e-4, atol=1e-4)
    assert len(model.card["classifier_view"]["names"]) == view.shape[1] == p.shape[1] + 3


def test_the_anomaly_graph_cut_at_its_supernova_model_scores_as_the_whole_graph(registry):
    """models/train/anomaly_oof feeds other supernova probabilities to the shipped anomaly graph cut
    at its embedded supernova model's output: fed that model's own, it scores as the whole graph;
    fed other probabilities, the scores move."""
    from models.train.anomaly_oof import SN_INSIDE, score_with_supernova_probabilities

    model = registry.models["anomaly"]
    cut = score_with_supernova_probabilities(ARTIFACTS / "anomaly" / model.version / "model.onnx")
    decoder = Decoder()
    alerts = [decoder.decode(decoder.encode(r, VERSION)) for r in simulate_alerts(40, history=20, seed=22)]
    X = features.extract([light_curve(a) for a in alerts]).astype(np.float32)
    score, p = model.session.run(["score", "supernova_probabilities"], {"features": X})
    np.testing.assert_array_equal(cut.run(["score"], {"features": X, SN_INSIDE: p})[0], score)
    uniform = np.full_like(p, 1 / p.shape[1])
    assert not np.allclose(cut.run(["score"], {"features": X, SN_INSIDE: uniform})[0], score)


def test_one_onnx_call_scores_the_anomaly_model_and_the_classifiers_it_embeds():
    """The anomaly model passes on the probabilities of the classifier graphs it embeds; when those
    are the very classifiers loaded (same sha256), the registry takes them from its call instead of
    running the classifiers again, with the same results."""
    shared, alone = Registry(), Registry(share_calls=False)
    assert shared.shared == {"supernova": "supernova_probabilities", "rrlyrae": "rrlyrae_probabilities"}
    decoder = Decoder()
    alerts = [decoder.decode(decoder.encode(r, VERSION)) for r in simulate_alerts(30, history=12, seed=8)]
    short = [decoder.decode(decoder.encode(r, VERSION)) for r in simulate_alerts(2, history=0, seed=9)]
    curves = [light_curve(a) for a in alerts + short]
    got, want = shared.classify(curves), alone.classify(curves)
    assert [[r.as_dict() for r in rs] for rs in got] == [[r.as_dict() for r in rs] for rs in want]
    # one call, counted for the classifiers too (their latency is that call's)
    assert len(shared.models["anomaly"].calls) == 1
    assert shared.models["supernova"].calls == shared.models["anomaly"].calls
    assert shared.models["supernova"].shared_with == "anomaly"
    assert alone.models["supernova"].shared_with is None
    assert shared.models["supernova"].rows_scored == alone.models["supernova"].rows_scored
    assert shared.models["rrlyrae"].declined == alone.models["rrlyrae"].declined > 0
    # a classifier retrained since (another graph than the one embedded) is called on its own
    shared.models["supernova"].card = {**shared.models["supernova"].card, "sha256": "0" * 64}
    assert shared._shared_outputs() == {"rrlyrae": "rrlyrae_probabilities"}


def test_a_coniferest_forest_rewritten_for_ai_onnx_ml_3_scores_as_coniferest_does():
    """The feedback forest is exported by coniferest (ai.onnx.ml 5) and rewritten as a
    TreeEnsembleRegressor (ai.onnx.ml 3, beside the classifiers' TreeEnsembleClassifier)."""
    import onnxruntime as ort
    from coniferest.aadforest import AADForest
    from coniferest.label import Label
    from coniferest.onnx import to_onnx as coniferest_to_onnx
    from onnxconverter_common.data_types import FloatTensorType

    from models.train.anomaly import _as_tree_ensemble_regressor

    rng = np.random.default_rng(5)
    X = rng.normal(size=(2000, 6)).astype(np.float32)
    forest = AADForest(n_trees=50, n_subsamples=128, random_seed=3, n_jobs=1)
    forest.fit_known(X, X[:20], np.where(np.arange(20) < 10, Label.ANOMALY, Label.REGULAR))
    exported = coniferest_to_onnx(forest, target_opset=15, initial_types=[("x", FloatTensorType([None, 6]))])
    model = _as_tree_ensemble_regressor(exported)
    assert [(o.domain, o.version) for o in model.opset_import] == [("ai.onnx.ml", 3)]
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": X})[0].reshape(-1)
    np.testing.assert_allclose(got, forest.score_samples(X), rtol=1e-5, atol=1e-6)


def test_a_seed_averaged_mixture_is_the_mean_density_of_its_fits_and_exports_as_one():
    """SeedAveragedMixture: its score is log of the mean of each seed's mixture density, and its ONNX
    export (one GaussianMixture of all components) gives the same scores in float32."""
    from scipy.special import logsumexp
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import Pipeline

    from models.train.anomaly import SeedAveragedMixture, onnx_unusualness, to_onnx_bytes, unusualness

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (300, len(features.FEATURE_NAMES))),
                   rng.normal(3, 0.5, (200, len(features.FEATURE_NAMES)))]).astype(np.float32)
    averaged = SeedAveragedMixture(3, seeds=(1, 2, 3)).fit(X)
    alone = [GaussianMixture(3, covariance_type="full", reg_covar=1e-3, random_state=s).fit(X)
             for s in (1, 2, 3)]
    want = logsumexp([g.score_samples(X) for g in alone], axis=0) - np.log(3)
    np.testing.assert_allclose(averaged.score_samples(X), want, rtol=1e-6)  # float32 input
    assert averaged.mixture_.n_components == 9 and averaged.mixture_.weights_.sum() == pytest.approx(1.0)
    pipeline = Pipeline([("model", averaged)])
    blob = to_onnx_bytes(pipeline)
    raw = {"output": "score_samples", "sign": -1, "reduce": "none"}
    np.testing.assert_allclose(onnx_unusualness(blob, raw, X), unusualness(pipeline, X), rtol=1e-3)


def test_versions_of_retrains_sort_after_what_they_learnt_from():
    assert next_version("1.0.0") == "1.0.0.1" and next_version("1.0.0.1") == "1.0.0.2"
    assert _version_key("1.0.0") < _version_key("1.0.0.1") < _version_key("1.0.0.2") < _version_key("1.0.1")


# --- the store -------------------------------------------------------------------------------------

def test_scores_are_ranked_per_object_in_a_window_with_a_cursor(store):
    rows = [score_record(i, 100 + i % 7, score=round(i / 50, 3), mjd=60000 + i / 100) for i in range(1, 50)]
    rows.append(score_record(99, 5, None, reason="too few points: 1 < 3"))  # declined: never ranked
    store.upsert(rows)
    store.upsert(rows[:5])  # a replay changes nothing
    ranked = store.top_anomalies(60000, 60001, limit=3)
    # each object ranked by its highest score; object 100 + 49 % 7 = 100 has 0.98
    assert [(r.dia_object_id, r.score) for r in ranked] == [(100, 0.98), (106, pytest.approx(0.96)),
                                                            (105, pytest.approx(0.94))]
    rest = store.top_anomalies(60000, 60001, limit=10, after=(ranked[-1].score, ranked[-1].dia_object_id))
    assert [r.dia_object_id for r in rest] == [104, 103, 102, 101]
    # a window: alerts observed from 60000.10 to 60000.20 only
    assert store.top_anomalies(60000.10, 60000.20, limit=10)[0].score == pytest.approx(0.4)
    assert len(store.object_scores(5)) == 1 and store.object_scores(5)[0]["score"] is None
    assert store._count("classifications") == 0 and store.count() == 50  # scores have their own table
    assert sum(store.prune_results(60000.30)) == 30  # 29 scored and the declined one


@pytest.mark.parametrize("by", ["highest", "latest"])
@pytest.mark.parametrize("walk", [False, True])
def test_ranking_a_large_window_walks_the_score_index_and_pages_the_same(store, monkeypatch, walk, by):
    """Both plans (a small window read and sorted; a large one walked down the score index in
    chunks) page through every object once, by its highest score in the window or its latest
    scored alert's, ties included."""
    import service.anomaly_store as anomaly_store

    rng = np.random.default_rng(5)
    alerts = [(i + 1, int(rng.integers(1, 60)), round(float(rng.choice(np.arange(0, 1, 0.01))), 2),
               60000 + i / 300) for i in range(300)]  # many ties, objects' alerts interleaved
    store.upsert([score_record(sid, oid, score, mjd=mjd) for sid, oid, score, mjd in alerts])
    if walk:
        monkeypatch.setattr(anomaly_store, "WALK_FROM", 1)
        monkeypatch.setattr(anomaly_store, "RANK_CHUNK", 7)
    pages, after = [], None
    while page := store.top_anomalies(60000.1, 60000.9, 9, after, by=by):
        pages += page
        after = (page[-1].score, page[-1].dia_object_id)
    best: dict[int, float] = {}
    for _, oid, score, mjd in alerts:  # in time order
        if 60000.1 <= mjd <= 60000.9:
            best[oid] = max(best.get(oid, -1.0), score) if by == "highest" else score
    expected = sorted(best.items(), key=lambda item: (-item[1], -item[0]))
    assert [p.dia_object_id for p in pages] == [o for o, _ in expected]
    assert [p.score for p in pages] == pytest.approx([s for _, s in expected])


def test_an_object_is_ranked_by_its_latest_scored_alert_or_its_highest(store):
    """An object unusual at its first detections and ordinary once more of its light curve is seen
    drops under `latest`; a declined alert (no score) does not hide the scored one before it."""
    store.upsert([score_record(1, 10, 0.99, mjd=60000.1), score_record(2, 10, 0.40, mjd=60000.5),
                  score_record(3, 20, 0.80, mjd=60000.2), score_record(4, 20, None, mjd=60000.6,
                                                                       reason="too few points: 2 < 3")])
    latest = store.top_anomalies(60000, 60001, 10, by="latest")
    assert [(r.dia_object_id, r.score, r.mjd) for r in latest] == [(20, pytest.approx(0.8), 60000.2),
                                                                   (10, pytest.approx(0.4), 60000.5)]
    highest = store.top_anomalies(60000, 60001, 10, by="highest")
    assert [(r.dia_object_id, r.mjd) for r in highest] == [(10, 60000.1), (20, 60000.2)]
    # a window that ends before the object's later alert: that one is not its latest there
    assert store.top_anomalies(60000, 60000.3, 10, by="latest")[0].dia_object_id == 10
    with pytest.raises(ValueError, match="by must be one of"):
        store.top_anomalies(60000, 60001, 10, by="newest")


def test_feedback_keeps_the_latest_label_per_object(store):
    store.upsert([score_record(1, 11, 0.5)])
    assert store.knows_object(11) and not store.knows_object(12)
    store.add_feedback(11, "normal")
    store.add_feedback(11, "anomaly")
    assert store.feedback() == {11: "anomaly"}
    with pytest.raises(ValueError, match="label must be one of"):
        store.add_feedback(11, "weird")


# --- HTTP, and the retrain loop ---------------------------------------------------------------------

@pytest.fixture
def client(tmp_path, registry):
    settings = Settings(data_dir=tmp_path, api_key="s3cret")
    with TestClient(create_app(settings, registry=registry)) as c:
        yield c


def _post(client, records, **params):
    decoder = Decoder()
    body = json.dumps([decoder.decode(decoder.encode(r, VERSION)).record for r in records])
    return client.post("/v1/classify", content=body, params=params,
                       headers={"content-type": "application/json", "x-api-key": "s3cret"})


def test_anomalies_endpoint_ranks_stored_objects_and_takes_feedback(client):
    answer = _post(client, simulate_alerts(30, history=25, seed=8), store="true")
    assert answer.status_code == 200
    scores = {}
    for obj in answer.json():
        [anomaly] = [r for r in obj["results"] if r["classifier"] == "anomaly"]
        scores[obj["diaObjectId"]] = max(scores.get(obj["diaObjectId"], 0), anomaly["score"])
    everything = {"since": 0, "until": 1e6, "limit": 5, "rank": "highest"}
    page = client.get("/v1/anomalies", params=everything).json()
    assert page["rank"] == "highest"
    assert [i["diaObjectId"] for i in page["items"]] == sorted(scores, key=lambda o: (-scores[o], -o))[:5]
    if len(scores) == len(answer.json()):  # one alert per object: its latest is its highest
        by_latest = client.get("/v1/anomalies", params={**everything, "rank": "latest"}).json()
        assert by_latest["items"] == page["items"] and by_latest["rank"] == "latest"
    assert client.get("/v1/anomalies", params={"rank": "newest"}).status_code == 422
    assert page["items"][0]["score"] == pytest.approx(max(scores.values()), abs=1e-6)
    assert set(page["items"][0]["latest"]) == {"rrlyrae", "supernova"}
    # by default, the day of observations up to the newest scored alert
    night = client.get("/v1/anomalies").json()
    assert night["rank"] == "latest"  # the default
    newest = max(o["mjd"] for o in night["items"])
    assert night["until"] == pytest.approx(newest) and night["until"] - night["since"] == pytest.approx(1.0)
    following = client.get("/v1/anomalies", params={**everything, "cursor": page["next_cursor"]}).json()
    assert not {i["diaObjectId"] for i in following["items"]} & {i["diaObjectId"] for i in page["items"]}
    assert client.get("/v1/anomalies", params={"cursor": "x"}).status_code == 422
    assert client.get("/v1/anomalies", params={"since": 2, "until": 1}).status_code == 422

    top = page["items"][0]["diaObjectId"]
    url = f"/v1/anomalies/{top}/feedback"
    assert client.post(url, json={"label": "anomaly"}).status_code == 401
    ok = client.post(url, json={"label": "anomaly"}, headers={"x-api-key": "s3cret"})
    assert ok.status_code == 200
    assert ok.json() == {"diaObjectId": top, "label": "anomaly", "labelled_objects": 1}
    bad = client.post(url, json={"label": "interesting"}, headers={"x-api-key": "s3cret"})
    assert bad.status_code == 422 and "label" in bad.text
    unknown = client.post("/v1/anomalies/1/feedback", json={"label": "normal"},
                          headers={"x-api-key": "s3cret"})
    assert unknown.status_code == 404 and "nothing stored" in unknown.json()["error"]["message"]


def test_feedback_then_retrain_gives_a_new_version_that_ranks_the_labelled_anomalies_higher(
        tmp_path, monkeypatch, capsys, registry):
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings, registry=registry)) as c:
        records = list(simulate_alerts(60, history=30, seed=12))
        objects = _post(c, records, store="true").json()
        before = {o["diaObjectId"]: o["results"][-1]["score"] for o in objects}
        ranked = sorted(before, key=before.get)
        # the expert calls three ordinary-looking objects anomalies, and the three top ones normal
        anomalies, normals = ranked[10:13], ranked[-3:]
        for oid, label in [*((o, "anomaly") for o in anomalies), *((o, "normal") for o in normals)]:
            assert c.post(f"/v1/anomalies/{oid}/feedback", json={"label": label}).status_code == 200
    monkeypatch.setenv("ALERT_CLASSIFIER_DATA_DIR", str(tmp_path))
    assert main(["anomaly", "retrain"]) == 0
    new_version = next_version(registry.models["anomaly"].version)  # 1.2.0 -> 1.2.0.1
    assert f"anomaly {new_version}" in capsys.readouterr().out
    retrained = Registry(extra=settings.retrained_models_dir)
    assert retrained.models["anomaly"].version == new_version
    with TestClient(create_app(settings, registry=retrained)) as c:
        answer = _post(c, records)
        assert answer.status_code == 200, answer.text
        after = {o["diaObjectId"]: o["results"][-1]["score"] for o in answer.json()}
        assert all(o["results"][-1]["version"] == new_version for o in _post(c, records[:2]).json())
    # Three labels each way move the ranking without always overturning the static score: anomaly
    # 1.5.2 lifts the three from ranks 10-12 of 60 to 56-58 and the three top ones fall to 1, 2 and
    # 15 (1.5.1: 43-45 and 8, 15, 42; 1.5.0: 42-44 and 49-53; 1.4.0 separated the two groups
    # entirely); the labelled anomalies must climb past half the objects.
    rank_before, rank_after = (sorted(s, key=s.get) for s in (before, after))
    for o in anomalies:
        assert rank_after.index(o) >= rank_before.index(o) + len(records) // 2
    assert all(rank_after.index(o) < rank_before.index(o) for o in normals)
    assert np.mean([after[o] for o in anomalies]) > np.mean([before[o] for o in anomalies])


def test_retrain_without_feedback_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALERT_CLASSIFIER_DATA_DIR", str(tmp_path))
    assert main(["anomaly", "retrain"]) == 2
    assert "POST /v1/anomalies/{diaObjectId}/feedback" in capsys.readouterr().err


def test_the_metrics_count_scores_by_bucket():
    from prometheus_client import generate_latest

    from service.metrics import Metrics
    from streaming.records import BatchOutcome

    metrics = Metrics()
    outcome = BatchOutcome(records=[score_record(1, 1, 0.995), score_record(2, 2, 0.3),
                                    score_record(3, 3, None, reason="too few points: 1 < 3")])
    metrics.observe_batch(outcome, [], 0.01)
    text = generate_latest(metrics.registry).decode()
    assert 'alert_classifier_anomaly_score_bucket{classifier="anomaly",le="0.99"} 1.0' in text
    assert 'alert_classifier_anomaly_score_count{classifier="anomaly"} 2.0' in text  # the declined one: none


def test_the_supervised_bound_tells_informative_features_from_noise():
    """models/train/anomaly_bound.py: out-of-fold AUROC of a classifier given the rare labels. Near 1
    when a feature carries the label, near 0.5 when none does; NaN columns (undefined features) allowed."""
    from models.train.anomaly_bound import supervised_bound

    rng = np.random.default_rng(0)
    rare = rng.random(600) < 0.2
    noise = rng.normal(size=(600, 4))
    noise[rng.random(noise.shape) < 0.2] = np.nan
    informative = noise.copy()
    informative[:, 0] = rare + rng.normal(0, 0.3, 600)
    assert supervised_bound(informative, rare, seed=0, folds=5) > 0.9
    assert 0.35 < supervised_bound(noise, rare, seed=0, folds=5) < 0.65


def test_an_object_is_replayed_as_the_alerts_its_detections_send():
    """models/train/anomaly_alerts.py: one alert per detection (at most max_alerts, the last always),
    each with every detection so far and no forced-only epoch."""
    from models.train.anomaly_alerts import alert_curves
    from models.train.datasets import Curve

    t = np.arange(10.0)
    detected = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=bool)  # 7 detections
    c = Curve(t, t + 1.0, np.ones(10), np.full(10, 2), 2222, "bts", "x", detected)
    alerts = alert_curves(c, max_alerts=50)
    assert [len(a.t) for a in alerts] == list(range(1, 8))
    assert all(np.isin(a.t, t[detected]).all() for a in alerts)
    few = alert_curves(c, max_alerts=3)
    assert [len(a.t) for a in few] == [1, 4, 7]  # evenly over the detections, the last included
