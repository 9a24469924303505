"""Old surveys' magnitudes become Rubin-like difference fluxes and detections (no data files needed)."""

from __future__ import annotations

import numpy as np

from models.taxonomy import RR_LYRAE
from models.train import datasets


def test_detections_are_the_changes_rubin_would_see_not_the_old_surveys_noise():
    # A 19th-magnitude star measured with photographic errors (0.2 mag): epochs 0.1 mag from its
    # median are within that noise but are changes Rubin detects (> 2.5%); 0.01 mag is not.
    t = np.arange(9.0)
    mag = np.array([19.0, 19.0, 19.0, 19.1, 18.9, 19.01, 18.99, 19.0, 19.0])
    curve = datasets._mag_to_difference_flux(t, mag, np.full(9, 0.2), np.ones(9, int), RR_LYRAE,
                                             "test", "star")
    assert curve is not None
    assert curve.detected.tolist() == [False, False, False, True, True, False, False, False, False]
    # difference fluxes against the median, signs kept: fainter is negative
    assert curve.flux[3] < 0 < curve.flux[4] and np.allclose(curve.flux[[0, 1, 2, 7, 8]], 0)


def test_a_star_rubin_would_not_see_change_gives_no_curve():
    t = np.arange(6.0)
    curve = datasets._mag_to_difference_flux(t, np.full(6, 19.0) + 0.001 * np.arange(6), np.full(6, 0.05),
                                             np.ones(6, int), RR_LYRAE, "test", "flat")
    assert curve is None
