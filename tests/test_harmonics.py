"""The compiled 3-harmonic fits equal a plain least-squares fit at every candidate."""

from __future__ import annotations

import numpy as np
import pytest

from models import harmonics


def _curves(rng: np.random.Generator, lengths: list[int]):
    t = [np.sort(rng.uniform(0, 200, n)) + 60000 for n in lengths]
    f = [np.sin(2 * np.pi * x / 0.6) + rng.normal(0, 0.3, len(x)) for x in t]
    err = [rng.uniform(0.1, 0.5, len(x)) for x in t]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return np.concatenate(t), np.concatenate(f), np.concatenate(err), bounds


def _lstsq(t, f, err, freq):
    a = harmonics.design(t, err, freq)
    coef, *_ = np.linalg.lstsq(a, f / err, rcond=None)
    return coef, float(np.sum((f / err - a @ coef) ** 2))


def test_every_candidate_is_the_least_squares_fit_at_its_frequency():
    rng = np.random.default_rng(1)
    t, f, err, bounds = _curves(rng, [12, 31, 60])
    base = rng.uniform(0.3, 4.0, (3, 3))
    base[1, 2] = np.nan  # a curve with fewer peaks
    orders = np.arange(-2, 3)
    freqs, chi2, chi2_const, coef = harmonics.fit(t, f, err, bounds, base, np.full(3, 1.0027379), orders,
                                                  0.01, 1 / 0.18)
    for g in range(3):
        s = slice(bounds[g], bounds[g + 1])
        w = 1 / err[s]
        mean = np.sum(w * w * f[s]) / np.sum(w * w)
        assert chi2_const[g] == pytest.approx(np.sum(((f[s] - mean) * w) ** 2), rel=1e-9)
        for j in range(3):
            for m, k in enumerate(orders):
                c = j * len(orders) + m
                nu = base[g, j] + k * 1.0027379
                if not (np.isfinite(nu) and 0.01 < nu < 1 / 0.18):
                    assert np.isnan(freqs[g, c]) and chi2[g, c] == np.inf  # not a candidate
                    continue
                want_coef, want_chi2 = _lstsq(t[s], f[s], err[s], nu)
                assert freqs[g, c] == nu
                assert chi2[g, c] == pytest.approx(want_chi2, rel=1e-6, abs=1e-9)
                np.testing.assert_allclose(coef[g, c], want_coef, rtol=1e-6, atol=1e-8)
    assert np.isinf(chi2[1, 10:]).all()  # the missing peak's five aliases


def test_fewer_distinct_epochs_than_coefficients_give_the_least_norm_fit():
    """Nine points on three nights: the normal matrix is singular (the ridge aside)."""
    t = np.repeat([60000.0, 60001.0, 60003.0], 3)
    f = np.array([1.0, 1.1, 0.9, 2.0, 2.1, 1.9, 0.5, 0.4, 0.6])
    err = np.full(9, 0.1)
    _, chi2, _, coef = harmonics.fit(t, f, err, np.array([0, 9]), np.array([[0.7]]), np.ones(1),
                                     np.array([0]))
    assert np.isfinite(coef).all() and np.isfinite(chi2).all()
    want_coef, want_chi2 = _lstsq(t, f, err, 0.7)
    # three nights are fitted exactly, whatever coefficients do it: the residual is each night's scatter
    assert chi2[0, 0] == pytest.approx(want_chi2, rel=1e-3)
    assert np.linalg.norm(coef[0, 0]) <= np.linalg.norm(want_coef) * (1 + 1e-3)


def test_curves_without_points_or_candidates_are_left_unfitted():
    t, f, err, bounds = _curves(np.random.default_rng(2), [0, 20])
    freqs, chi2, chi2_const, _ = harmonics.fit(t, f, err, bounds, np.array([[1.0], [np.nan]]), np.ones(2),
                                               np.array([0]))
    assert np.isnan(chi2_const).all() and np.isinf(chi2).all() and np.isnan(freqs).all()
