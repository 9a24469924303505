"""The few-detection calibration of the supernova type: its fit, its numbers, and its ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest

from models.features import FEATURE_NAMES
from models.registry import load_model
from models.taxonomy import RESIDUAL, SLSN, SN_IA, SN_IBC, SN_II
from models.train import few_points
from models.train.few_points import FewPointCalibration, WithFewPoints

CLASSES = sorted([RESIDUAL, SN_IA, SN_IBC, SN_II, SLSN])
LOG_N = FEATURE_NAMES.index("log_n_points")


def _type_given_sn(p: np.ndarray) -> np.ndarray:
    sn = np.isin(CLASSES, [SN_IA, SN_IBC, SN_II, SLSN])
    return p[:, sn] / p[:, sn].sum(axis=1, keepdims=True)


def test_the_fit_recovers_an_overconfidence_and_a_tilt_of_the_types():
    """Types drawn from q, the model reporting q sharpened (logits x 2) and tilted away from Ia:
    the fit finds the scale 1/2 and the shift that undoes the tilt, and leaves Residual alone."""
    rng = np.random.default_rng(3)
    q = rng.dirichlet([3.0, 2.0, 1.0, 1.0], size=20000)  # Ia, Ib/c, II, SLSN among supernovae
    types = [SN_IA, SN_IBC, SN_II, SLSN]
    y = np.array([types[rng.choice(4, p=row)] for row in q])
    tilt = np.array([-0.5, 0.0, 0.3, 0.2])
    reported = np.exp(2 * np.log(q) + tilt)
    reported /= reported.sum(axis=1, keepdims=True)
    p = np.zeros((len(y), len(CLASSES)))
    p[:, [CLASSES.index(c) for c in types]] = 0.9 * reported
    p[:, CLASSES.index(RESIDUAL)] = 0.1
    cal = few_points.fit(p, y, CLASSES)
    assert cal.scale == pytest.approx(0.5, rel=0.05)
    shift = dict(zip(CLASSES, cal.shift, strict=True))
    assert shift[RESIDUAL] == 0.0
    undo = {c: -t / 2 for c, t in zip(types, tilt, strict=True)}  # what takes the tilt out at scale 1/2
    for c in types[1:]:
        assert shift[c] - shift[SN_IA] == pytest.approx(undo[c] - undo[SN_IA], abs=0.06)


def test_only_curves_of_few_detections_change_and_p_sn_and_residual_never_do():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(len(CLASSES)), size=200)
    X = np.zeros((200, len(FEATURE_NAMES)), np.float32)
    n = rng.integers(2, 40, size=200)
    X[:, LOG_N] = np.log10(n)
    cal = FewPointCalibration(tuple(CLASSES), 0.7, (0.0, 0.3, -1.0, 0.5, -0.4))  # Residual first
    out = cal.apply(p, X)
    few = n <= few_points.MAX_POINTS
    assert few.any() and (~few).any()
    np.testing.assert_array_equal(out[~few], p[~few])
    assert not np.allclose(out[few], p[few])
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    residual = CLASSES.index(RESIDUAL)
    np.testing.assert_allclose(out[:, residual], p[:, residual], atol=1e-15)
    # within the supernovae: softmax(scale * log p + shift)
    z = 0.7 * np.log(_type_given_sn(p[few])) + np.delete(np.array(cal.shift), residual)
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_type_given_sn(out[few]), expected, atol=1e-12)


def test_the_exported_graph_gives_the_calibrated_numbers_and_label(tmp_path):
    """A real classifier exported with its calibration: onnxruntime equals `predict_proba` of the
    wrapper for curves of 2 to 30 detections (8 recalibrated, 9 not), NaN features included, and
    the label is the argmax of the new probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from models.train.export import export_model

    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, len(FEATURE_NAMES))).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    X[:, LOG_N] = np.log10(rng.integers(2, 31, size=len(X)))
    y = np.array(CLASSES)[(np.nan_to_num(X[:, 0]) > 0) + 2 * (np.nan_to_num(X[:, 3]) > 0.5)
                          + (np.nan_to_num(X[:, 7]) > 1)]
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    cal = FewPointCalibration(tuple(int(c) for c in model.classes_), 0.6,
                              tuple(0.0 if c == RESIDUAL else 0.4 * i for i, c in enumerate(model.classes_)))
    wrapped = WithFewPoints(model, cal)
    export_model(wrapped, name="toy", version="0.0.1", out_dir=tmp_path, class_ids=list(model.classes_),
                 X_check=X, metrics={}, min_points=1, description="test", training_data={})
    loaded = load_model(tmp_path / "toy" / "0.0.1")
    got = loaded.predict_proba(X)
    np.testing.assert_allclose(got, wrapped.predict_proba(X), atol=1e-5)
    n = np.rint(10 ** X[:, LOG_N]).astype(int)
    assert not np.allclose(got[n == 8], model.predict_proba(X[n == 8]), atol=1e-3)
    np.testing.assert_allclose(got[n == 9], model.predict_proba(X[n == 9]), atol=1e-5)
    label = loaded.session.run(["label"], {loaded.input_name: X})[0]
    np.testing.assert_array_equal(label, np.array(model.classes_)[got.argmax(axis=1)])


def test_the_temperature_is_chosen_on_the_numbers_shipped_after_the_few_detection_step():
    """Full curves reported overconfident (logits x 2), early views reported calibrated. The
    temperature fitted on full curves mends the former and softens the latter, which the
    few-detection step then undoes: judged after that step, as the model ships, it is the choice,
    and the early error reported is the shipped one (read before the step it would have lost)."""
    from models.train.metrics import top_label_ece
    from models.train.train import choose_temperature, soften

    rng = np.random.default_rng(5)
    types = [SN_IA, SN_IBC, SN_II, SLSN]
    n = 6000
    q = rng.dirichlet([3.0, 2.0, 1.0, 1.0], size=2 * n)
    y = np.array([types[rng.choice(4, p=row)] for row in q])
    early = np.arange(2 * n) >= n
    sharpen = np.where(early, 1.0, 2.0)[:, None]
    reported = np.exp(sharpen * np.log(q))
    reported /= reported.sum(axis=1, keepdims=True)
    p = np.zeros((2 * n, len(CLASSES)))
    p[:, [CLASSES.index(c) for c in types]] = 0.97 * reported
    p[:, CLASSES.index(RESIDUAL)] = 0.03
    X = np.zeros((2 * n, len(FEATURE_NAMES)), np.float32)
    X[:, LOG_N] = np.log10(np.where(early, 5, 30))
    chosen = choose_temperature(p, y, early, X, CLASSES)
    scores = chosen["out_of_fold"]
    assert chosen["chosen"] == "full_curves" and chosen["temperature"] > 1.5
    full_curves = scores["full_curves"]
    assert full_curves["top_class_calibration_error_early_before_few_points"] > 0.05  # softened
    tempered = soften(p, chosen["temperature"])
    few = few_points.few(X)
    shipped = few_points.fit(tempered[few], y[few], CLASSES).apply(tempered, X)
    assert full_curves["top_class_calibration_error_early"] == pytest.approx(
        top_label_ece(shipped[early], y[early], CLASSES), abs=1e-4)
    assert full_curves["top_class_calibration_error_early"] < 0.05
    worst = {k: max(v["top_class_calibration_error_full"], v["top_class_calibration_error_early"])
             for k, v in scores.items()}
    assert worst["full_curves"] < min(worst["none"], worst["every_view"]), scores
