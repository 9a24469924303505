"""The compiled feature groups keep numpy's semantics where the features depend on them."""

import numpy as np

from models import feature_groups as fg


def test_interpolation_is_numpys_inside_the_span_and_nan_outside():
    """np.interp's numbers to the bit, repeated times (its special cases) and the ends included."""
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 17, 60):
        for _ in range(40):
            t = np.sort(np.round(rng.uniform(0, 50, n), 1))  # rounded: repeated times happen
            f = rng.normal(size=n)
            when = np.concatenate([rng.uniform(-5, 55, 30), t, [t[0], t[-1]]])
            inside = (when >= t[0]) & (when <= t[-1])
            got = np.array([fg._interp(w, t, f) for w in when])
            assert np.array_equal(got[inside], np.interp(when[inside], t, f))
            assert np.isnan(got[~inside]).all()


def test_argmax_and_max_follow_numpy_with_ties_and_nan():
    cases = [np.array([1.0, 3.0, 3.0, 2.0]), np.array([np.nan, 1.0]), np.array([1.0, np.nan, 5.0, np.nan]),
             np.array([-np.inf, -np.inf]), np.array([2.0])]
    for x in cases:
        assert fg._argmax(x) == np.argmax(x)
        assert np.array_equal(fg._max(x), np.max(x), equal_nan=True)


def test_colour_pairs_take_the_nearer_point_of_the_other_band_within_the_tolerance():
    ta, fa = np.array([10.0, 20.0, 30.0]), np.array([2.0, 2.0, -1.0])
    tb, fb = np.array([9.0, 11.5, 23.0, 30.5]), np.array([1.0, 4.0, 2.0, 1.0])
    pairs = fg._colour_pairs(ta, fa, tb, fb)
    # 10 pairs with 9 (nearer than 11.5); 20 has nothing within 2 d; 30's own flux is negative
    np.testing.assert_allclose(pairs, [[9.5, -2.5 * np.log10(2.0)]])
    assert fg._colour_pairs(ta, fa, tb[:0], fb[:0]).shape == (0, 2)
