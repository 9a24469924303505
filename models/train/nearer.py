"""Training objects seen nearer: PLAsTiCC's extragalactic light curves moved to a lower redshift.

PLAsTiCC's training supernovae lie mostly at z ~ 0.1-0.5; the supernovae a survey sees well sampled
and types first are the bright, nearby ones (ZTF's at z ~ 0.02-0.1, Rubin's brightest). Observed
colours and durations change with redshift, so a type model that learnt them at z ~ 0.3 misreads
nearby supernovae: Ia vs core-collapse AUC 0.98 on well-sampled simulated curves, 0.61 on the
well-sampled real ZTF ones (models 1.5.0).

Light emitted at wavelength L arrives at L (1 + z). Seen from z' with (1 + z) / (1 + z') = s, where
s is the ratio of two neighbouring band centres, each band shows what the next redder band showed,
and the object's clock runs s times faster. So an object moves nearer by relabelling every band as
the next bluer one (r -> g, i -> r, ...; u is lost) and compressing its time axis by s about its
peak. One s per object: the mean of the ratios behind g and r (r/g 1.29, i/r 1.21), the bands
where supernovae are best sampled and the only ones ZTF has. Fluxes stay as they are: every feature
is scale-free, and a nearer object would only be brighter, so keeping the errors errs on the noisy
side. The redshift is the simulation's truth, used here only: Rubin's alerts carry none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from models.train.datasets import Curve

# Effective wavelengths of Rubin's u, g, r, i, z, y filters (Angstrom).
BAND_CENTRES = np.array([3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0])
# the geometric mean of r/g and i/r, which is sqrt(i/g): 1.25
STRETCH = float(np.sqrt(BAND_CENTRES[3] / BAND_CENTRES[1]))
MIN_REDSHIFT = 0.01  # nearer than this, one band's shift would move the object past us
SOURCE_SUFFIX = "-nearer"


def seen_nearer(curve: Curve, stretch: float = STRETCH) -> Curve | None:
    """`curve` seen from redshift (1 + z) / stretch - 1: each band shows what the next redder one
    showed and time runs `stretch` times faster about the brightest detection. None when the curve
    has no redshift, would land nearer than MIN_REDSHIFT, or keeps fewer than 2 detections."""
    z_near = (1 + curve.redshift) / stretch - 1
    if not np.isfinite(z_near) or z_near < MIN_REDSHIFT:
        return None
    near = curve.window(curve.band >= 1)
    if near.detected.sum() < 2:
        return None
    detected = near.detected
    t_peak = near.t[detected][np.argmax(near.flux[detected])]
    return replace(near, t=t_peak + (near.t - t_peak) / stretch, band=(near.band - 1).astype(np.int8),
                   source=curve.source + SOURCE_SUFFIX, object_id=curve.object_id + SOURCE_SUFFIX,
                   redshift=float(z_near))


def nearer_curves(curves: Iterable[Curve]) -> list[Curve]:
    """Every curve that can be seen nearer (see `seen_nearer`), seen nearer."""
    return [near for c in curves if (near := seen_nearer(c)) is not None]
