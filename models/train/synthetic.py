"""Light curves of real pulsating stars rendered with Rubin's cadence.

The OGLE-III catalogue gives, for tens of thousands of RR Lyrae, Cepheids (classical, type II,
anomalous), delta Scuti and long-period variables, the period, the I-band amplitude and the Fourier
shape (R21, phi21, R31, phi31). Each star drawn here becomes a 3-harmonic light curve with that
period and shape, sampled at the epochs and bands of a PLAsTiCC object (Rubin's simulated cadence),
with Rubin-like photometric noise, and turned into difference fluxes like the real surveys
(`datasets.mag_to_difference_flux`). They teach the RR Lyrae model what separates RR Lyrae from
the pulsators whose periods overlap theirs, which no other training set here shows with Rubin's
cadence (PLAsTiCC has no Cepheids; EROS-1 only its own photographic cadence).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.taxonomy import NON_SN_OTHER, RR_LYRAE
from models.train.datasets import NJY_ZP, Curve, mag_to_difference_flux

# Stars drawn per OGLE-III type (all of a type when it has fewer).
PER_TYPE = {"RRLyr": 2500, "Cep": 1500, "T2Cep": 600, "aCep": 100, "DSCT": 800, "LPV": 800}
# Pulsation amplitude in u, g, r, i, z, y relative to I (a pulsating star's amplitude falls with
# wavelength: V/I ~1.6 for RR Lyrae and Cepheids).
BAND_AMPLITUDE = np.array([2.0, 1.6, 1.25, 1.0, 0.9, 0.85])
MEAN_MAG_RANGE = (16.5, 21.0)  # uniform: errors 0.005 (the floor) to 0.014 mag per point
SINGLE_VISIT_DEPTH = 24.0  # 5-sigma, Rubin's r band
SYSTEMATIC_MAG = 0.005  # calibration floor of each point


def fourier_shape(phase: np.ndarray, r21: float, phi21: float, r31: float, phi31: float,
                  phi1: float) -> np.ndarray:
    """A 3-harmonic light curve of unit first-harmonic amplitude at the given phases (cycles), with
    OGLE's Fourier parameters (phi_k1 = phi_k - k phi_1, cosine series)."""
    w = 2 * np.pi * phase
    return (np.cos(w + phi1) + r21 * np.cos(2 * w + phi21 + 2 * phi1)
            + r31 * np.cos(3 * w + phi31 + 3 * phi1))


def pulsator_curve(period: float, amplitude_i: float, shape: Sequence[float], t: np.ndarray,
                   band: np.ndarray, mean_mag: float, rng: np.random.Generator, class_id: int,
                   source: str, object_id: str) -> Curve | None:
    """One star's light curve at the given epochs and bands: `shape` = (R21, phi21, R31, phi31)
    (NaN: a pure sinusoid), `amplitude_i` the I-band peak-to-peak in magnitudes. None when Rubin
    would not see it change (see `mag_to_difference_flux`)."""
    r21, phi21, r31, phi31 = (0.0 if not np.isfinite(v) else float(v) for v in shape)
    phi1 = rng.uniform(0, 2 * np.pi)
    one_cycle = fourier_shape(np.linspace(0, 1, 256), r21, phi21, r31, phi31, phi1)
    scale = amplitude_i / (one_cycle.max() - one_cycle.min())
    mag = mean_mag + BAND_AMPLITUDE[band] * scale * fourier_shape((t - t[0]) / period, r21, phi21, r31,
                                                                  phi31, phi1)
    flux = 10 ** (-0.4 * (mag - NJY_ZP))
    sigma = np.hypot(10 ** (-0.4 * (SINGLE_VISIT_DEPTH - NJY_ZP)) / 5, SYSTEMATIC_MAG * flux)
    observed = flux + rng.normal(0.0, sigma)
    ok = observed > 0  # a negative total flux has no magnitude
    return mag_to_difference_flux(t[ok], NJY_ZP - 2.5 * np.log10(observed[ok]),
                                   2.5 / np.log(10) * sigma[ok] / observed[ok], band[ok], class_id,
                                   source, object_id)


def pulsator_curves(ogle: pd.DataFrame, cadences: Sequence[tuple[np.ndarray, np.ndarray]],
                    rng: np.random.Generator, per_type: dict[str, int] = PER_TYPE) -> list[Curve]:
    """Stars drawn from the OGLE-III table (`datasets.load_ogle3`), each with the cadence of a random
    entry of `cadences` ((times, bands) pairs). Sources: "ogle3-rr_lyrae" and "ogle3-other"."""
    curves = []
    for kind, n in per_type.items():
        stars = ogle[(ogle["Type"] == kind) & (ogle["P_1"] > 0) & (ogle["A_1"] > 0)]
        stars = stars.iloc[np.sort(rng.permutation(len(stars))[:n])]
        is_rrl = kind == "RRLyr"
        for star in stars.itertuples(index=False):
            t, band = cadences[rng.integers(len(cadences))]
            curve = pulsator_curve(star.P_1, star.A_1, (star.R21_1, star.phi21_1, star.R31_1, star.phi31_1),
                                   t, band, rng.uniform(*MEAN_MAG_RANGE), rng,
                                   RR_LYRAE if is_rrl else NON_SN_OTHER,
                                   "ogle3-rr_lyrae" if is_rrl else "ogle3-other", f"ogle3-{star.ID}")
            if curve is not None:
                curves.append(curve)
    return curves
