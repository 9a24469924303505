"""Training data shaping, no data files needed: old surveys' magnitudes become Rubin-like difference
fluxes and detections; light curves become the views alerts carry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.taxonomy import RR_LYRAE
from models.train import datasets
from models.train.train import make_views


def test_detections_are_the_changes_rubin_would_see_not_the_old_surveys_noise():
    # A 19th-magnitude star measured with photographic errors (0.2 mag): epochs 0.1 mag from its
    # median are within that noise but are changes Rubin detects (> 2.5%); 0.01 mag is not.
    t = np.arange(9.0)
    mag = np.array([19.0, 19.0, 19.0, 19.1, 18.9, 19.01, 18.99, 19.0, 19.0])
    curve = datasets.mag_to_difference_flux(t, mag, np.full(9, 0.2), np.ones(9, int), RR_LYRAE,
                                             "test", "star")
    assert curve is not None
    assert curve.detected.tolist() == [False, False, False, True, True, False, False, False, False]
    # difference fluxes against the median, signs kept: fainter is negative
    assert curve.flux[3] < 0 < curve.flux[4] and np.allclose(curve.flux[[0, 1, 2, 7, 8]], 0)


def test_another_detection_rule_decides_which_epochs_are_detections():
    # models.train.detection_rules judges the model on views built this way
    t = np.arange(9.0)
    mag = np.array([19.0, 19.0, 19.0, 19.1, 18.9, 19.01, 18.99, 19.0, 19.0])
    every = datasets.mag_to_difference_flux(t, mag, np.full(9, 0.2), np.ones(9, int), RR_LYRAE, "test",
                                            "star", lambda diff, _level, _err: np.ones(len(diff), bool))
    assert every is not None and every.detected.all()
    above_its_noise = datasets.mag_to_difference_flux(  # 0.1 mag is within 0.2 mag errors: none left
        t, mag, np.full(9, 0.2), np.ones(9, int), RR_LYRAE, "test", "star",
        lambda diff, _level, err: np.abs(diff) > err)
    assert above_its_noise is None
    # against another level (a template's: the mean of every epoch), the differences sum to zero
    against_mean = datasets.mag_to_difference_flux(
        t, mag, np.full(9, 0.2), np.ones(9, int), RR_LYRAE, "test", "star",
        lambda diff, _level, _err: np.ones(len(diff), bool), np.mean)
    assert against_mean is not None and abs(against_mean.flux.sum()) < 1e-6 * np.abs(against_mean.flux).sum()


def test_a_star_is_seen_again_against_a_template_level_with_its_detections_redrawn():
    # Rubin measures a star against a template (a coadd of some epochs), not its median: the rrlyrae
    # model's training views also come at such levels (train.views_at_levels)
    t = np.arange(10.0)
    band = np.array([1, 3] * 5)
    mag = np.array([19.0, 18.0, 19.3, 18.0, 19.0, 18.3, 19.0, 18.0, 19.0, 18.0])
    curve = datasets.mag_to_difference_flux(t, mag, np.full(10, 0.05), band, RR_LYRAE, "test", "star")
    assert curve is not None and curve.level is not None
    same = datasets.relevel(curve, np.median)
    assert same is not None and np.allclose(same.flux, curve.flux) and (same.detected == curve.detected).all()
    against_mean = datasets.relevel(curve, np.mean)
    assert against_mean is not None
    for b in (1, 3):  # each band's differences now sum to zero; the star's total flux is unchanged
        m = band == b
        assert abs(against_mean.flux[m].sum()) < 1e-6 * np.abs(against_mean.flux[m]).sum()
    assert np.allclose(against_mean.flux + against_mean.level, curve.flux + curve.level)
    # epochs at the median were no detections; against the mean they differ by > 2.5%: detections
    assert not curve.detected[0] and against_mean.detected[0]
    window = against_mean.window(t < 5)
    assert window.level is not None and len(window.level) == 5
    simulated = datasets.Curve(t, curve.flux, curve.flux_err, band, RR_LYRAE, "plasticc", "sim",
                               curve.detected)
    with pytest.raises(ValueError, match="no level"):  # only stars made from magnitudes have one
        datasets.relevel(simulated, np.mean)


def test_a_star_rubin_would_not_see_change_gives_no_curve():
    t = np.arange(6.0)
    curve = datasets.mag_to_difference_flux(t, np.full(6, 19.0) + 0.001 * np.arange(6), np.full(6, 0.05),
                                             np.ones(6, int), RR_LYRAE, "test", "flat")
    assert curve is None


def _six_band_curve(object_id: str, rng: np.random.Generator) -> datasets.Curve:
    t = np.sort(rng.uniform(60000, 60700, 120))
    band = rng.integers(0, 6, 120).astype(np.int8)
    return datasets.Curve(t, rng.normal(0, 100, 120), np.full(120, 5.0), band, RR_LYRAE, "test", object_id,
                          np.ones(120, bool))


def test_band_subset_views_keep_two_bands_of_a_real_view_and_only_when_asked():
    rng = np.random.default_rng(3)
    curves = [_six_band_curve(f"o{i}", rng) for i in range(40)]
    plain = make_views(curves, np.random.default_rng(0))
    assert "bands" not in set(plain.kind)
    views = make_views(curves, np.random.default_rng(0), band_subsets=True)
    subsets = [i for i, k in enumerate(views.kind) if k == "bands"]
    assert 0.15 * len(plain.curves) < len(subsets) < 0.45 * len(plain.curves)  # ~30% of views
    for i in subsets:
        cut, parent = views.curves[i], views.curves[i - 1]  # each follows the view it was cut from
        assert len(np.unique(cut.band)) == 2 and set(cut.t) <= set(parent.t)
        kept = np.isin(parent.band, np.unique(cut.band))
        np.testing.assert_array_equal(cut.flux, parent.flux[kept])  # every point of those bands


def test_lmc_labels_that_contradict_the_stars_luminosity_are_doubted():
    # Every EROS-1 star is at the LMC's distance: the RR Lyrae set the horizontal branch (median
    # 18.8 here); an "RR Lyrae" 2.5 mag brighter, or a "Cepheid" at the branch, cannot be what it says.
    kind = pd.Series(["rr_lyrae"] * 5 + ["rr_lyrae", "cepheid", "cepheid", "binary", "mira"])
    mag = pd.Series([18.6, 18.7, 18.8, 18.9, 19.0, 16.3, 19.1, 16.0, 19.2, 15.5])
    doubt = datasets.lmc_label_doubts(kind, mag)
    assert doubt.tolist()[:5] == [""] * 5
    assert doubt[5].startswith("rr_lyrae brighter") and doubt[6].startswith("cepheid fainter")
    assert doubt[7] == doubt[8] == doubt[9] == ""  # a bright Cepheid; binaries and Miras: any luminosity
    # just inside the cuts stays trusted
    edge = datasets.lmc_label_doubts(pd.Series(["rr_lyrae"] * 5 + ["rr_lyrae", "cepheid"]),
                                     pd.Series([18.8] * 5 + [16.81, 18.29]))
    assert edge.tolist() == [""] * 7


def test_views_keep_the_label_doubt():
    t = np.arange(0.0, 400.0, 5.0)
    curve = datasets.Curve(t, np.sin(t), np.full(len(t), 0.1), np.ones(len(t), np.int8), RR_LYRAE,
                           "eros-rr_lyrae", "eros-x", np.ones(len(t), bool), "rr_lyrae brighter ...")
    views = make_views([curve], np.random.default_rng(0))
    assert len(views.curves) > 1 and views.doubted.all()
