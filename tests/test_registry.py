"""Registry and export: real onnxruntime sessions on the shipped artefacts; parity; refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import fastavro
import numpy as np
import pytest

from models.errors import ModelError
from models.features import FEATURE_NAMES
from models.registry import ARTIFACTS, Registry, load_model
from models.taxonomy import NOT_CLASSIFIED, RR_LYRAE
from models.train.train import VALIDATION_DIR
from streaming.decode import sample_paths, shipped_versions
from streaming.lightcurve import LightCurve
from streaming.simulate import simulate_object


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def test_shipped_models_load_and_match_the_extractor(registry):
    assert list(registry.models) == ["rrlyrae", "supernova", "anomaly"]  # classifiers first
    for model in registry.models.values():
        assert model.card["feature_names"] == list(FEATURE_NAMES)
    for name in ("rrlyrae", "supernova"):
        assert registry.models[name].card["parity"]["max_abs_diff"] < 1e-4
    assert registry.models["anomaly"].card["parity"]["max_percentile_diff"] < 0.005
    assert registry.models["rrlyrae"].class_ids == [200, RR_LYRAE]
    assert registry.models["supernova"].class_ids == [200, 2222, 2223, 2224, 2242]


def test_the_shipped_supernova_model_carries_the_figures_of_its_validation_fit(registry):
    # The shipped supernova model is refitted on every BTS object after its recipe was judged on a
    # fit that never saw the held-out ones (train.FINAL_FIT_ON_EVERY_BTS_OBJECT): that fit ships
    # beside it, is not served, and the figures both cards report are the validation fit's.
    shipped = registry.models["supernova"]
    folder = ARTIFACTS / VALIDATION_DIR / "supernova" / shipped.version
    validation = load_model(folder)
    assert validation.card["sha256"] != shipped.card["sha256"]
    assert validation.folder not in {m.folder for m in registry.models.values()}
    figures = dict(shipped.card["metrics"])
    assert figures.pop("final_fit")["bts_objects"] > 0
    assert figures == validation.card["metrics"]
    assert (shipped.card["training_data"]["train_views_by_source"]["bts"]
            > validation.card["training_data"]["train_views_by_source"]["bts"])
    # the anomaly model embeds the shipped classifiers, and was chosen and judged with the validation fit
    anomaly = registry.models["anomaly"].card
    assert anomaly["classifier_view"]["classifiers"]["supernova"]["sha256"] == shipped.card["sha256"]
    judged_with = anomaly["metrics"]["shipped_fit"]["judged_with"]
    assert judged_with["supernova"]["sha256"] == validation.card["sha256"]


def test_cards_say_which_labels_were_doubted_and_report_both(registry):
    card = registry.models["rrlyrae"].card
    doubted = card["training_data"]["label_audit"]["objects_in_doubt"]
    assert sum(doubted.values()) > 0
    for kind in ("held_out_real", "held_out_real_history_alerts"):
        raw, audited = card["metrics"][kind], card["metrics"][f"{kind}_audited_labels"]
        assert audited["n"] < raw["n"]  # the doubted views are left out, the rest is the same set


def test_probabilities_sum_to_one_and_short_curves_decline(registry):
    rng = np.random.default_rng(0)
    curves = []
    for kind in ("rrlyrae", "supernova", "agn"):
        o = simulate_object(rng, 40, kind)
        curves.append(LightCurve.from_arrays(o.t, o.flux, o.flux_err, o.band))
    curves.append(LightCurve.from_arrays([60000.0], [50.0], [5.0], ["g"]))
    results = registry.classify(curves)
    assert len(results) == 4
    for per_alert in results[:3]:
        *classifiers, anomaly = per_alert
        for r in classifiers:
            assert r.reason is None
            assert sum(c["probability"] for c in r.classifications) == pytest.approx(1, abs=1e-5)
        assert anomaly.reason is None and 0 <= anomaly.score <= 1
    *classifiers, anomaly = results[3]
    for r in classifiers:
        assert r.classifications == [{"classId": NOT_CLASSIFIED, "probability": 1.0}]
        assert "too few points" in r.reason
    assert anomaly.score is None and "too few points" in anomaly.reason


def test_onnx_agrees_with_sklearn_on_a_fresh_export(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from models.train.export import export_model

    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan  # NaN must follow the same branches in both
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 5]) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    card = export_model(model, name="toy", version="0.0.1", out_dir=tmp_path, class_ids=[200, RR_LYRAE],
                        X_check=X, metrics={}, min_points=1, description="test", training_data={})
    loaded = load_model(tmp_path / "toy" / "0.0.1")
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-5)
    assert card["sha256"] == loaded.card["sha256"]


def _copy(tmp_path):
    version = Registry().models["rrlyrae"].version  # the shipped one, whatever its number
    dst = tmp_path / "rrlyrae" / version
    shutil.copytree(ARTIFACTS / "rrlyrae" / version, dst)
    return dst


def test_refuses_a_card_whose_features_disagree(tmp_path):
    folder = _copy(tmp_path)
    card = json.loads((folder / "card.json").read_text())
    card["feature_names"][0], card["feature_names"][1] = card["feature_names"][1], card["feature_names"][0]
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="first differences"):
        load_model(folder)


def test_a_retrain_of_an_older_feature_set_is_skipped_and_the_shipped_model_serves(tmp_path, caplog):
    """`alert-classifier anomaly retrain` output from before a feature change (under the data
    directory) must not stop the service: it is skipped with a warning saying what to do."""
    shipped = Registry(names=["anomaly"]).models["anomaly"]
    old = tmp_path / "anomaly" / "9.9.9.1"
    shutil.copytree(shipped.folder, old)
    card = json.loads((old / "card.json").read_text())
    card["version"], card["feature_names"] = "9.9.9.1", card["feature_names"][:-1]
    (old / "card.json").write_text(json.dumps(card))
    registry = Registry(names=["anomaly"], extra=tmp_path)
    assert registry.models["anomaly"].version == shipped.version
    assert "anomaly retrain` again" in caplog.text and "9.9.9.1" in caplog.text
    with pytest.raises(ModelError):  # a shipped artefact that disagrees still refuses to start
        Registry(root=tmp_path)


def test_refuses_a_tampered_onnx_file(tmp_path):
    folder = _copy(tmp_path)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_model(folder)


def test_refuses_an_onnx_input_of_the_wrong_width(tmp_path):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import HistGradientBoostingClassifier

    folder = _copy(tmp_path)
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    model = HistGradientBoostingClassifier(max_iter=3).fit(X, (X[:, 0] > 0).astype(int))
    blob = to_onnx(model, initial_types=[("features", FloatTensorType([None, 3]))],
                   options={id(model): {"zipmap": False}}).SerializeToString()
    (folder / "model.onnx").write_bytes(blob)
    card = json.loads((folder / "card.json").read_text())
    import hashlib

    card["sha256"] = hashlib.sha256(blob).hexdigest()
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="input shape"):
        load_model(folder)


def test_classify_command_on_the_package_samples():
    """`alert-classifier classify` on every shipped sample: one JSON line per alert, both models;
    the fake samples of schemas before 8.0 carry Unix seconds as MJD: an invalid_value line each."""
    versions = [v for v in shipped_versions() for _ in sample_paths(v)]
    paths = [str(p) for v in shipped_versions() for p in sample_paths(v)]
    out = subprocess.run([sys.executable, "-m", "service.cli", "classify", *paths],
                         capture_output=True, text=True, timeout=120)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == len(paths)
    assert out.returncode == 1, "some files are bad"
    for version, line in zip(versions, lines, strict=True):
        if version.major < 8:
            assert line["error"]["reason"] == "invalid_value", line
            assert "1480360995" in line["error"]["message"]
            continue
        assert "error" not in line, line
        assert [r["classifier"] for r in line["results"]] == ["rrlyrae", "supernova", "anomaly"]
        assert line["diaSourceId"] > 0


def test_classify_names_the_schema_of_another_survey_s_container(tmp_path):
    # e.g. a ZTF alert file: a readable Avro container, but not of Rubin alerts
    path = tmp_path / "ztf.avro"
    schema = {"type": "record", "name": "alert", "namespace": "ztf",
              "fields": [{"name": "objectId", "type": "string"}]}
    with path.open("wb") as fh:
        fastavro.writer(fh, schema, [{"objectId": "ZTF18aaaaaaa"}])
    out = subprocess.run([sys.executable, "-m", "service.cli", "classify", str(path)],
                         capture_output=True, text=True, timeout=120)
    [line] = [json.loads(x) for x in out.stdout.splitlines()]
    assert out.returncode == 1
    assert line["error"]["reason"] == "unknown_schema_id"
    assert "'ztf.alert'" in line["error"]["message"] and "Rubin alerts only" in line["error"]["message"]


def test_classify_reports_a_bad_file_and_goes_on(tmp_path):
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"\x00\x00\x00\x27\x0fgarbage")
    good = sample_paths(shipped_versions()[-1])[0]
    out = subprocess.run([sys.executable, "-m", "service.cli", "classify", str(bad), str(good)],
                         capture_output=True, text=True, timeout=120)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert out.returncode == 1
    assert lines[0]["error"]["reason"] == "unknown_schema_id"
    assert lines[1]["results"]
