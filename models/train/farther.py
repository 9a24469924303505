"""Training objects seen farther: supernovae moved to a higher redshift, as Rubin will mostly see them.

The other way from nearer.py. Seen from z' with (1 + z') / (1 + z) = s, where s is the ratio of two
neighbouring band centres, each band shows what the next bluer band showed (g -> r, r -> i, ...;
y is lost), the object's clock runs s times slower, and its flux density falls by
s (d_L(z) / d_L(z'))^2. Real ZTF BTS supernovae (g and R, z ~ 0.01-0.15) become real light curves
in Rubin's r and i at z ~ 0.27-0.45, with Rubin's single-visit noise added; PLAsTiCC's simulated
ones move from its training set's bright, near end toward its fainter, farther stream, with their
own cadence and errors (the noise they lose by the scaling is added back). A point is detected when
its flux is 5 sigma from 0, as difference imaging decides. The redshift (BTS catalogue, PLAsTiCC
truth) is used here only: Rubin's alerts carry none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from models.train.datasets import NJY_ZP, Curve
from models.train.nearer import STRETCH

SOURCE_SUFFIX = "-farther"
MIN_REDSHIFT = 0.005  # galactic objects (z = 0) have no distance to scale
DETECTION_SNR = 5.0
# Rubin's single-visit 5-sigma point-source depths, u g r i z y (AB; LSST Science Book / SMTN-002)
SINGLE_VISIT_DEPTH = np.array([23.9, 25.0, 24.7, 24.0, 23.3, 22.1])
# one sigma of a single visit in nJy (the unit of the BTS curves), per Rubin band
_VISIT_SIGMA_NJY = 10 ** (-0.4 * (SINGLE_VISIT_DEPTH - NJY_ZP)) / DETECTION_SNR


def luminosity_distance(z: np.ndarray) -> np.ndarray:
    """In Mpc, Planck 2018 (astropy)."""
    from astropy.cosmology import Planck18

    return np.asarray(Planck18.luminosity_distance(z).value, dtype=np.float64)


def seen_farther(curve: Curve, rng: np.random.Generator, stretch: float = STRETCH) -> Curve | None:
    """`curve` seen from redshift (1 + z) * stretch - 1 (see the module's docstring). None without a
    redshift, or with fewer than 2 detections left."""
    z = curve.redshift
    if not np.isfinite(z) or z < MIN_REDSHIFT:
        return None
    z_far = (1 + z) * stretch - 1
    scale = stretch * float((luminosity_distance(z) / luminosity_distance(z_far)) ** 2)
    far = curve.window(curve.band <= 4)  # y has no redder neighbour
    if not curve.detected.any() or not len(far.t):
        return None
    band = (far.band + 1).astype(np.int8)
    if curve.source == "bts":  # ZTF's errors at these fluxes are far below Rubin's sky noise
        sigma = _VISIT_SIGMA_NJY[band]
        flux = far.flux * scale + rng.normal(0.0, sigma)
        err = np.hypot(far.flux_err * scale, sigma)
    else:  # the survey's own errors: add back the noise the scaling took away
        err = far.flux_err
        flux = far.flux * scale + rng.normal(0.0, err * np.sqrt(1 - scale ** 2))
    detected = np.abs(flux) >= DETECTION_SNR * err
    if detected.sum() < 2:
        return None
    t_peak = curve.t[curve.detected][np.argmax(curve.flux[curve.detected])]
    return replace(far, t=t_peak + (far.t - t_peak) * stretch, flux=flux, flux_err=err, band=band,
                   detected=detected, source=curve.source + SOURCE_SUFFIX,
                   object_id=curve.object_id + SOURCE_SUFFIX, redshift=float(z_far))


def farther_curves(curves: Iterable[Curve], rng: np.random.Generator) -> list[Curve]:
    """Every curve that can be seen farther (see `seen_farther`), seen farther."""
    return [far for c in curves if (far := seen_farther(c, rng)) is not None]
