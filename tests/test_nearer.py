"""Objects seen nearer (models/train/nearer.py): no data files needed."""

from __future__ import annotations

import numpy as np
import pytest

from models.taxonomy import SN_IA
from models.train import nearer
from models.train.datasets import Curve


def supernova(redshift: float) -> Curve:
    """A rise and fall in u..y, peaking at MJD 60030 in every band, one epoch undetected."""
    t = np.repeat(np.arange(60000.0, 60100.0, 10.0), 6)
    band = np.tile(np.arange(6), 10).astype(np.int8)
    flux = 1000 * np.exp(-0.5 * ((t - 60030) / (8 + 3 * band)) ** 2) * (1 + 0.1 * band)
    detected = flux > 20
    return Curve(t, flux, np.full(len(t), 5.0), band, SN_IA, "plasticc", "plasticc-1", detected,
                 redshift=redshift)


def test_stretch_is_the_ratio_of_band_centres_behind_g_and_r():
    g, r, i = nearer.BAND_CENTRES[1:4]
    assert abs(nearer.STRETCH - 1.25) < 0.005
    assert i / r < nearer.STRETCH < r / g


def test_each_band_shows_the_next_redder_one_on_a_faster_clock_about_the_peak():
    far = supernova(0.4)
    near = nearer.seen_nearer(far)
    assert near is not None
    assert near.redshift == pytest.approx(1.4 / nearer.STRETCH - 1)
    assert near.class_id == SN_IA
    assert (near.source, near.object_id) == ("plasticc-nearer", "plasticc-1-nearer")
    # u is gone; what was r is now g, with the same fluxes, errors and detections
    assert set(np.unique(near.band)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(near.flux[near.band == 1], far.flux[far.band == 2])
    np.testing.assert_array_equal(near.detected[near.band == 1], far.detected[far.band == 2])
    # the peak stays where it was, every other time is 1/STRETCH as far from it
    np.testing.assert_allclose(near.t[near.band == 1] - 60030,
                               (far.t[far.band == 2] - 60030) / nearer.STRETCH)
    assert np.all(np.diff(near.t) >= 0)
    assert far.band.min() == 0 and far.t[0] == 60000.0  # the original is left as it was


def test_objects_too_near_or_without_redshift_stay_out():
    assert nearer.seen_nearer(supernova(0.2)) is None  # would land at z < 0
    assert nearer.seen_nearer(supernova(float("nan"))) is None  # real surveys: no redshift
    just_far_enough = nearer.STRETCH * (1 + nearer.MIN_REDSHIFT) - 1 + 1e-9
    assert nearer.seen_nearer(supernova(just_far_enough)) is not None
    curves = [supernova(0.5), supernova(0.1), supernova(float("nan"))]
    assert [c.redshift for c in nearer.nearer_curves(curves)] == [pytest.approx(1.5 / nearer.STRETCH - 1)]


def test_views_seen_nearer_share_plasticcs_weight_and_pulsators_weigh_as_set():
    from models.train.train import SN_SYNTHETIC_WEIGHT, sn_weights

    source = np.array(["plasticc"] * 40 + ["plasticc-nearer"] * 60 + ["eros-cepheid"] * 30
                      + ["ogle3-other"] * 90)
    y = np.array([SN_IA] * 20 + [200] * 20 + [SN_IA] * 50 + [200] * 10 + [200] * 120)
    w = sn_weights(y, source)
    plasticc = np.char.startswith(source.astype(str), "plasticc")
    ia, rest = w[plasticc & (y == SN_IA)].sum(), w[plasticc & (y == 200)].sum()
    assert np.isclose(ia, rest)  # 70 Ia views and 30 others of one survey: as balanced as before
    assert np.isclose(w[source == "eros-cepheid"].sum(), ia)
    assert np.isclose(w[source == "ogle3-other"].sum(), SN_SYNTHETIC_WEIGHT * ia)
