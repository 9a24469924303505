"""Synthetic pulsators (models/train/synthetic.py): no data files needed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models import features
from models.taxonomy import NON_SN_OTHER, RR_LYRAE
from models.train import synthetic

# A typical RRab (OGLE-III LMC: P 0.58 d, I amplitude 0.5 mag, R21 0.48, phi21 4.1, R31 0.32, phi31 2.1)
RRAB = dict(period=0.58, amplitude_i=0.5, shape=(0.48, 4.1, 0.32, 2.1))


def cadence(n_nights: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.sort(60000.0 + rng.choice(3 * 365, n_nights, replace=False) + rng.uniform(0, 0.3, n_nights))
    return t, rng.choice([1, 2, 3], n_nights).astype(np.int8)  # g, r, i


def test_a_rendered_rr_lyrae_keeps_its_period_shape_and_band_amplitudes():
    t, band = cadence()
    curve = synthetic.pulsator_curve(**RRAB, t=t, band=band, mean_mag=18.0, rng=np.random.default_rng(1),
                                     class_id=RR_LYRAE, source="ogle3-rr_lyrae", object_id="x")
    assert curve is not None and curve.class_id == RR_LYRAE and curve.source == "ogle3-rr_lyrae"
    assert curve.detected.mean() > 0.8  # a 0.5 mag pulsation: Rubin sees almost every epoch change
    row = features.extract([curve])[0]
    best = 10 ** row[features.FEATURE_NAMES.index("log_period_best")]
    assert abs(best - 0.58) < 0.005
    # the amplitude falls with wavelength as in BAND_AMPLITUDE: g's 1.6 times i's
    ratio = np.ptp(curve.flux[curve.band == 1]) / np.ptp(curve.flux[curve.band == 3])
    assert 1.4 < ratio < 1.9
    # a sawtooth, not a sine: the fitted second harmonic is near the catalogue's R21
    assert abs(row[features.FEATURE_NAMES.index("fourier_r21")] - 0.48) < 0.12


def test_the_same_generator_state_renders_the_same_star():
    t, band = cadence()
    a, b = (synthetic.pulsator_curve(**RRAB, t=t, band=band, mean_mag=19.0, rng=np.random.default_rng(5),
                                     class_id=RR_LYRAE, source="s", object_id="x") for _ in range(2))
    assert np.array_equal(a.flux, b.flux) and np.array_equal(a.detected, b.detected)


def test_stars_are_drawn_per_type_with_their_labels():
    table = pd.DataFrame({
        "ID": [f"OGLE-{k}" for k in range(7)],
        "Type": ["RRLyr", "RRLyr", "RRLyr", "Cep", "DSCT", "LPV", "RCB"],
        "P_1": [0.55, 0.31, 0.62, 3.2, 0.09, 40.0, 50.0],
        "A_1": [0.6, 0.3, 0.5, 0.4, 0.2, 0.3, 2.0],
        "R21_1": [0.5, 0.1, 0.45, 0.4, np.nan, np.nan, np.nan],
        "phi21_1": [4.0, 4.5, 4.1, 4.3, np.nan, np.nan, np.nan],
        "R31_1": [0.3, 0.05, 0.3, 0.2, np.nan, np.nan, np.nan],
        "phi31_1": [2.0, 3.0, 2.1, 2.5, np.nan, np.nan, np.nan],
    })
    curves = synthetic.pulsator_curves(table, [cadence(seed=s) for s in range(3)], np.random.default_rng(0),
                                       per_type={"RRLyr": 2, "Cep": 5, "DSCT": 1, "LPV": 1})
    by_id = {c.object_id: c for c in curves}
    assert sum(k.startswith("ogle3-OGLE-") for k in by_id) == len(curves) == 5  # 2 of 3 RRLyr; no RCB
    assert {c.class_id for c in curves if c.source == "ogle3-rr_lyrae"} == {RR_LYRAE}
    assert {c.class_id for c in curves if c.source == "ogle3-other"} == {NON_SN_OTHER}
    assert "ogle3-OGLE-6" not in by_id


def test_synthetic_groups_weigh_a_fraction_of_a_real_surveys_class():
    from models.train.train import SYNTHETIC_WEIGHT, rrl_weights

    source = np.array(["eros-rr_lyrae"] * 10 + ["eros-cepheid"] * 30 + ["ogle3-rr_lyrae"] * 50
                      + ["ogle3-other"] * 200)
    y = np.char.endswith(source.astype(str), "rr_lyrae")
    w = rrl_weights(y, source)
    totals = {s: w[source == s].sum() for s in np.unique(source)}
    assert np.isclose(totals["eros-rr_lyrae"], totals["eros-cepheid"])  # real groups balanced
    for s in ("ogle3-rr_lyrae", "ogle3-other"):
        assert np.isclose(totals[s], SYNTHETIC_WEIGHT * totals["eros-rr_lyrae"])
