"""Tests on the real datasets in ../shared/data: skipped with a reason where they are absent."""

from __future__ import annotations

import numpy as np
import pytest

from models.taxonomy import RESIDUAL, RR_LYRAE, SLSN, SN_IA, SN_IBC, SN_II, SUPERNOVA_CLASSES
from models.train import colours, datasets
from models.train.metrics import completeness_at_contamination, sn_metrics, type_metrics
from models.train.train import (
    class_bias,
    fit_temperature,
    make_views,
    soften,
    split_by_class,
    split_by_object,
    temper,
    type_bias,
)

pytestmark = pytest.mark.data


def test_real_sets_become_rubin_like_difference_curves(shared_data):
    sesar = datasets.load_sesar(shared_data)
    eros = datasets.load_eros(shared_data)
    assert len(sesar) == 483 and all(c.class_id == RR_LYRAE for c in sesar)
    assert len(eros) > 2500
    for c in sesar[:50] + eros[:50]:
        assert np.all(np.diff(c.t) >= 0)
        assert np.all(np.isfinite(c.flux)) and np.all(c.flux_err > 0)
        assert set(np.unique(c.band)) <= set(range(6))
        assert (c.flux > 0).any() and (c.flux < 0).any()  # difference fluxes around the median


def test_real_ztf_supernovae_become_difference_curves(shared_data, tmp_path):
    sne = datasets.load_ztf_sne(shared_data)
    assert len(sne) == 30
    assert {c.class_id for c in sne} <= set(SUPERNOVA_CLASSES)
    assert sum(c.class_id == SN_IA for c in sne) == 19
    for c in sne:
        assert np.all(np.diff(c.t) >= 0) and set(np.unique(c.band)) <= {1, 2}  # ZTF g and r
        assert np.all(c.flux_err > 0) and np.median(c.flux) > 0
    assert datasets.load_ztf_sne(tmp_path) == []  # absent: no external test, no error


def test_split_is_by_object_and_deterministic(shared_data):
    sesar = datasets.load_sesar(shared_data)
    a1, b1 = split_by_object(sesar, 7)
    _a2, b2 = split_by_object(sesar, 7)
    assert [c.object_id for c in b1] == [c.object_id for c in b2]
    assert not {c.object_id for c in a1} & {c.object_id for c in b1}
    views = make_views(b1, np.random.default_rng(0))
    assert {c.object_id for c in views.curves} <= {c.object_id for c in b1}
    # alert views hold at most a year; history views every detection, of objects seen for longer
    alerts = [c for c, k in zip(views.curves, views.kind, strict=True) if k != "history"]
    assert all(c.t[-1] - c.t[0] <= 365 for c in alerts)
    history = [c for c, k in zip(views.curves, views.kind, strict=True) if k == "history"]
    whole = {c.object_id: c for c in b1}
    assert history and all(c.t[-1] - c.t[0] > 365 for c in history)
    assert all(len(c.t) == whole[c.object_id].detected.sum() for c in history)


def test_colour_exercise_table(shared_data):
    table, sample = colours.run(shared_data, seed=0)
    assert len(table) == 9 and sample.rrlyrae.sum() > 3000
    assert ((table.compl_4 >= 0) & (table.compl_4 <= 1)).all()
    # the four colours carry real information: a decent classifier beats the base rate clearly
    assert table.set_index("classifier").loc["GradientBoosting", "contam_4"] < 0.2


def test_catalogue_period_and_shape_separate_rr_lyrae_from_other_pulsators(shared_data):
    table = colours.catalogue_ceiling(shared_data, seed=0).set_index("features")
    alone, shape = table.loc["period"], table.loc["period + amplitude + Fourier shape"]
    # the Fourier shape carries what the period alone leaves: fewer Cepheids/delta Scuti taken for RR Lyrae
    assert shape.auc > alone.auc and shape.contamination < alone.contamination
    assert shape.completeness > 0.95 and shape.contamination < 0.05


def test_light_curve_attributes_add_to_colours(shared_data):
    table = colours.beyond_colours(shared_data, seed=0).set_index("features")
    both, alone = table.loc["colours + light curve"], table.loc["colours"]
    assert both.contamination <= alone.contamination and both.completeness >= alone.completeness - 0.01


def test_completeness_at_contamination_picks_the_best_allowed_threshold():
    # ranked by probability: T T F T T F F; at most 1 false in 5 -> the first five (4 of 4 true)
    prob = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    truth = np.array([1, 1, 0, 1, 1, 0, 0], bool)
    assert completeness_at_contamination(prob, truth, 0.2) == {"completeness": 1.0, "threshold": 0.6}
    # no false positive allowed: only the first two
    assert completeness_at_contamination(prob, truth, 0.0) == {"completeness": 0.5, "threshold": 0.9}
    assert completeness_at_contamination(prob, np.zeros(7, bool), 0.05)["completeness"] is None


def test_sn_metrics_take_ia_vs_cc_apart_by_type():
    # p(Ia | SN): Ia 0.9 / 0.7, Ib/c 0.8 / 0.6 (interleaved with Ia), II 0.1 / 0.2, SLSN 0.3 (one object)
    p_ia = np.array([0.9, 0.7, 0.8, 0.6, 0.1, 0.2, 0.3])
    y = np.array([SN_IA, SN_IA, SN_IBC, SN_IBC, SN_II, SN_II, SLSN])
    proba = np.zeros((len(y), 5))  # columns: Ia, Ib/c, II, SLSN, Residual (SN_CLASSES)
    proba[:, 0], proba[:, 1] = p_ia, 1 - p_ia  # all mass on supernovae: p(Ia | SN) = p_ia
    objects = np.array(["a", "b", "c", "d", "e", "f", "g"])
    m = sn_metrics(proba, y, np.full(len(y), "ztf"), objects=objects)
    each = m["ia_vs_each_cc_type"]
    assert each["SN Ib/c"]["auc"] == 0.75  # 3 of 4 (Ia, Ib/c) pairs in order
    assert each["SN II"]["auc"] == 1.0 and each["SLSN"]["auc"] == 1.0
    assert m["ia_vs_cc_auc"] == round(9 / 10, 4)  # the Ib/c pair out of order is the only miss
    assert each["SN II"]["objects"] == 2 and "90ci" not in each["SN II"]  # too few objects to resample
    assert "90ci" not in each["SLSN"] and m["ia_vs_cc_auc_90ci"] is not None  # the whole has one


def test_eros_labels_in_doubt_are_the_luminosity_outliers(shared_data):
    eros = datasets.load_eros(shared_data)
    doubted = [c for c in eros if c.label_doubt]
    rrl = [c for c in doubted if c.source == "eros-rr_lyrae"]
    ceph = [c for c in doubted if c.source == "eros-cepheid"]
    # a minority of each class, and only the two classes with a luminosity to contradict
    assert 100 < len(rrl) < 0.15 * sum(c.source == "eros-rr_lyrae" for c in eros)
    assert 50 < len(ceph) < 0.2 * sum(c.source == "eros-cepheid" for c in eros)
    assert len(rrl) + len(ceph) == len(doubted)


def test_bts_real_supernovae_become_difference_curves_by_spectral_type(shared_data, tmp_path):
    bts = datasets.load_bts(shared_data)
    if not bts:
        pytest.skip(f"no ztf-bts-train folder under {shared_data}")
    counts = {k: sum(c.class_id == k for c in bts) for k in (SN_IA, SN_II, SN_IBC, SLSN)}
    # the folder's README: 1,098 Ia of all subtypes, 264 II of all kinds, 88 Ib/c, 22 SLSN
    assert counts == {SN_IA: 1098, SN_II: 264, SN_IBC: 88, SLSN: 22} and len(bts) == 1491
    for c in bts[:100]:
        assert np.all(np.diff(c.t) >= 0) and set(np.unique(c.band)) <= {1, 2}  # ZTF g, r -> g, r
        assert np.all(c.flux > 0) and np.all(c.flux_err > 0) and np.isfinite(c.redshift)
    assert datasets.load_bts(tmp_path) == []  # absent: trained without it, no error


def test_bts_types_map_to_the_classifiers_classes():
    assert datasets.bts_class("SN Ia-91T") == SN_IA and datasets.bts_class("SN Iax") == SN_IA
    assert datasets.bts_class("SN IIb") == SN_II and datasets.bts_class("SN IIn") == SN_II
    assert datasets.bts_class("SN Ic-BL") == SN_IBC and datasets.bts_class("SN Ibn") == SN_IBC
    assert datasets.bts_class("SLSN-II") == SLSN
    assert datasets.bts_class("TDE") not in SUPERNOVA_CLASSES
    assert datasets.bts_class("nova") not in SUPERNOVA_CLASSES


def test_split_by_class_holds_out_the_same_fraction_of_every_class():
    curves = [datasets.Curve(np.arange(3.0), np.ones(3), np.ones(3), np.ones(3, np.int8), cls, "bts",
                             f"{cls}-{i}", np.ones(3, bool)) for cls, n in ((SN_IA, 100), (SLSN, 10))
              for i in range(n)]
    train, test = split_by_class(curves, seed=3)
    assert sum(c.class_id == SLSN for c in test) == 3 and sum(c.class_id == SN_IA for c in test) == 30
    assert not {c.object_id for c in train} & {c.object_id for c in test}
    assert [c.object_id for c in split_by_class(curves, seed=3)[1]] == [c.object_id for c in test]


def test_type_metrics_count_the_type_among_true_supernovae():
    # columns: Ia, Ib/c, II, SLSN, Residual; the II is called Residual overall but II among SN types
    proba = np.array([[0.8, 0.1, 0.05, 0.05, 0.0],   # Ia -> Ia
                      [0.6, 0.3, 0.05, 0.05, 0.0],   # Ib/c -> Ia (wrong)
                      [0.05, 0.05, 0.3, 0.0, 0.6],   # II -> II among SN types
                      [0.1, 0.1, 0.1, 0.7, 0.0]])    # SLSN -> SLSN
    y = np.array([SN_IA, SN_IBC, SN_II, SLSN])
    m = type_metrics(proba, y, np.array(["a", "b", "c", "d"]))
    assert m["type_accuracy"] == 0.75 and m["n_supernova_views"] == 4
    per = m["type_per_class"]
    assert per["SN Ib/c"]["recall"] == 0.0 and per["SN Ia"]["precision"] == 0.5
    assert per["SN II"]["recall"] == 1.0
    assert m["type_macro_f1"] == round((2 / 3 + 0 + 1 + 1) / 4, 4)
    assert m["confusion"]["matrix"][2][4] == 1  # the II's overall argmax is Residual


def test_class_bias_undoes_a_prior_inflated_by_balanced_weights():
    """Probabilities q, true to the labels, seen through a model that inflated classes 2 and 3 by 3x
    (what balanced weights do to rare types): the fitted shifts take the inflation back out."""
    rng = np.random.default_rng(0)
    q = rng.dirichlet([4.0, 1.0, 1.0], size=4000)
    y = np.array([rng.choice(3, p=row) for row in q]) + 1  # class ids 1, 2, 3
    inflated = q * np.array([1.0, 3.0, 3.0])
    inflated /= inflated.sum(axis=1, keepdims=True)
    b = class_bias(inflated, y, [1, 2, 3])
    assert abs(b.sum()) < 1e-9
    assert b[0] - b[1] == pytest.approx(np.log(3), abs=0.15)
    assert b[0] - b[2] == pytest.approx(np.log(3), abs=0.15)


def test_type_bias_moves_the_types_not_how_often_an_alert_is_a_supernova():
    """Columns Residual, Ia, II (sorted ids): a model that inflated II 3x among supernovae; the
    shifts leave Residual's log-odds at 0 and the mean p(SN) where it was, and take II back down."""
    rng = np.random.default_rng(1)
    q = rng.dirichlet([1.0, 6.0, 2.0], size=4000)
    y = np.array([rng.choice([RESIDUAL, SN_IA, SN_II], p=row) for row in q])
    inflated = q * np.array([1.0, 1.0, 3.0])
    inflated /= inflated.sum(axis=1, keepdims=True)
    b = type_bias(inflated, y, [RESIDUAL, SN_IA, SN_II])
    assert b[0] == 0.0 and b[1] - b[2] == pytest.approx(np.log(3), abs=0.2)
    shifted = inflated * np.exp(b)
    shifted /= shifted.sum(axis=1, keepdims=True)
    assert shifted[:, 1:].sum(axis=1).mean() == pytest.approx(inflated[:, 1:].sum(axis=1).mean(), abs=1e-6)


def test_a_temperature_softens_an_overconfident_model_exactly_as_its_onnx_export_does(tmp_path):
    """Probabilities sharpened by t = 2 are recovered by the fitted temperature; `temper` divides a
    real model's logits, and its ONNX export gives the same probabilities."""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(2)
    q = rng.dirichlet([2.0, 2.0, 2.0], size=5000)
    y = np.array([rng.choice(3, p=row) for row in q])
    sharp = soften(q, 0.5)  # logits doubled: overconfident
    assert fit_temperature(sharp, y, [0, 1, 2]) == pytest.approx(2.0, rel=0.1)

    X = rng.normal(size=(300, 3)).astype(np.float32)
    labels = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, labels)
    before = model.predict_proba(X)
    temper(model, 2.0)
    after = model.predict_proba(X)
    np.testing.assert_allclose(after, soften(before, 2.0), atol=1e-9)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()
    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, 3]))],
                  target_opset={"": 17, "ai.onnx.ml": 3}, options={id(model): {"zipmap": False}})
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"features": X})[1], after, atol=1e-5)


def test_plasticc_wide_fast_deep_proxy_judges_the_held_out_supernovae(shared_data, capsys):
    """The science issue's simulated-Rubin row, measured on its nearest proxy: every held-out PLAsTiCC
    supernova in exactly one survey set, classified by the shipped model."""
    import json

    from models.train import plasticc_wfd

    assert plasticc_wfd.main(["--data-dir", str(shared_data)]) == 0
    report = json.loads(capsys.readouterr().out)
    wfd, ddf = report["wide_fast_deep"], report["deep_drilling"]
    # views: latest and whole history; a few objects have both
    assert report["objects"] <= wfd["views"] + wfd["declined"] + ddf["views"] + ddf["declined"]
    assert 0.6 < wfd["ia_vs_cc_auc"] < ddf["ia_vs_cc_auc"]  # the deep fields' long curves type better
    assert wfd["median_detections"] < ddf["median_detections"]
    assert report["wide_fast_deep_z_0.5_or_more"]["views"] < wfd["views"]
