"""Objects seen farther (models/train/farther.py): no data files needed."""

from __future__ import annotations

import numpy as np
import pytest

from models.taxonomy import SN_IA
from models.train import farther, nearer
from models.train.datasets import Curve


def bts_supernova(redshift: float, peak_njy: float = 150_000.0) -> Curve:
    """A ZTF-like rise and fall in g and r (bands 1, 2), every point a detection, peaking at MJD 60030."""
    t = np.repeat(np.arange(60000.0, 60100.0, 2.0), 2)
    band = np.tile([1, 2], 50).astype(np.int8)
    flux = peak_njy * np.exp(-0.5 * ((t - 60030) / 12) ** 2) + 1.0
    return Curve(t, flux, 0.03 * flux, band, SN_IA, "bts", "bts-ZTF1", np.ones(len(t), bool),
                 redshift=redshift, subtype="SN Ia")


def plasticc_supernova(redshift: float) -> Curve:
    t = np.repeat(np.arange(60000.0, 60100.0, 5.0), 6)
    band = np.tile(np.arange(6), 20).astype(np.int8)
    flux = 800 * np.exp(-0.5 * ((t - 60030) / 15) ** 2)
    return Curve(t, flux, np.full(len(t), 5.0), band, SN_IA, "plasticc", "plasticc-7", flux > 25,
                 redshift=redshift)


def test_each_band_shows_the_next_bluer_one_fainter_on_a_slower_clock():
    near = bts_supernova(0.05)
    far = farther.seen_farther(near, np.random.default_rng(0))
    assert far is not None
    s = nearer.STRETCH
    assert far.redshift == pytest.approx(1.05 * s - 1)
    assert (far.source, far.object_id) == ("bts-farther", "bts-ZTF1-farther")
    assert (far.class_id, far.subtype) == (SN_IA, "SN Ia")
    assert set(np.unique(far.band)) == {2, 3}  # g -> r, r -> i
    # the peak stays put, every other time is STRETCH times as far from it
    np.testing.assert_allclose(far.t - 60030, (near.t - 60030) * s)
    # fainter by the distances (d_L(0.05) ~ 230 Mpc, d_L(0.31) ~ 1,700 Mpc), with Rubin's noise
    dl = farther.luminosity_distance(np.array([0.05, far.redshift]))
    expected = near.flux * s * (dl[0] / dl[1]) ** 2
    peak = np.argmax(near.flux)
    assert 3.5 < -2.5 * np.log10(expected[peak] / near.flux[peak]) < 5.0
    assert np.all(np.abs(far.flux - expected) < 6 * far.flux_err)
    assert np.all(far.flux_err > 0.03 * expected)  # Rubin's sky noise on top of the scaled errors
    # detections are the points 5 sigma from zero: the peak, not the faint wings
    np.testing.assert_array_equal(far.detected, np.abs(far.flux) >= 5 * far.flux_err)
    assert far.detected[peak] and not far.detected[0]
    assert near.band.min() == 1 and near.t[0] == 60000.0  # the original is left as it was


def test_a_simulated_object_keeps_its_errors_and_loses_y():
    near = plasticc_supernova(0.3)
    far = farther.seen_farther(near, np.random.default_rng(1))
    assert far is not None
    assert set(np.unique(far.band)) == {1, 2, 3, 4, 5}  # u -> g ... z -> y; y had no redder band
    np.testing.assert_array_equal(far.flux_err, near.flux_err[near.band <= 4])
    assert far.detected.sum() < near.detected.sum()


def test_objects_without_distance_or_left_undetected_stay_out():
    rng = np.random.default_rng(2)
    assert farther.seen_farther(bts_supernova(float("nan")), rng) is None  # no catalogue redshift
    assert farther.seen_farther(plasticc_supernova(0.0), rng) is None  # galactic
    assert farther.seen_farther(bts_supernova(0.05, peak_njy=300.0), rng) is None  # lost in the noise
    curves = [bts_supernova(0.05), bts_supernova(float("nan")), plasticc_supernova(0.3)]
    far = farther.farther_curves(curves, rng)
    assert [c.source for c in far] == ["bts-farther", "plasticc-farther"]
