"""Supernova light-curve templates and how well a curve fits each (PSNID-like features).

A template is the median g and r light curve of one type of real supernova (ZTF BTS training
objects, spectroscopically typed: Ia, II, Ib/c), in units of the r-band peak flux, on a grid of days
from that peak. A curve is fitted by each template shifted in time and stretched, with a free
amplitude (so the fit is free of distance and zero point); what it leaves unexplained, as a fraction
of the curve's weighted flux, says how much it looks like that type. Only g and r points are used:
the bands the templates were made from.

`build` is run by training (models/train/train.py) on the training objects only and written beside
the models it trains (`<out>/sn_templates.json`; the shipped ones are TEMPLATES_PATH, which the
feature extractor loads): the service needs no training data.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy as np

TEMPLATES_PATH = Path(__file__).resolve().parent / "artifacts" / "sn_templates.json"
PHASES_D = np.arange(-30.0, 151.0, 1.0)  # days from the r-band peak
TEMPLATE_BANDS = (1, 2)  # g, r
MIN_PEAK_BAND_POINTS = 5  # r points an object needs to give a template its peak
# The fits try the observed peak moved by these days and these stretches of the template's clock
SHIFTS_D = np.arange(-25.0, 16.0, 1.0)
STRETCHES = np.array([0.7, 0.85, 1.0, 1.2, 1.45])
MIN_POINTS = 3


def build(curves: Sequence, class_ids: dict[str, int]) -> dict:
    """{type name: {"g": [...], "r": [...]}} plus the phase grid: per type, the median over its
    objects of g and r flux / r peak flux, interpolated on PHASES_D inside each object's observed
    span (never extrapolated); a phase no object covers is 0 (no light expected)."""
    out: dict = {"phases_d": PHASES_D.tolist()}
    for name, class_id in class_ids.items():
        rows = []
        for c in curves:
            if c.class_id != class_id:
                continue
            r = c.band == 2
            if r.sum() < MIN_PEAK_BAND_POINTS or not c.flux[r].max() > 0:
                continue
            i = int(c.flux[r].argmax())
            t_peak, f_peak = c.t[r][i], c.flux[r][i]
            row = []
            for b in TEMPLATE_BANDS:
                m = c.band == b
                values = np.full(len(PHASES_D), np.nan)
                if m.sum() >= 2:
                    phase, flux = c.t[m] - t_peak, c.flux[m] / f_peak
                    inside = (phase.min() <= PHASES_D) & (phase.max() >= PHASES_D)
                    values[inside] = np.interp(PHASES_D[inside], phase, flux)
                row.append(values)
            rows.append(np.concatenate(row))
        with warnings.catch_warnings():  # a phase no object covers: NaN, then 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(np.array(rows), axis=0) if rows else np.zeros(2 * len(PHASES_D))
        median = np.where(np.isfinite(median), median, 0.0)
        out[name] = {"objects": len(rows), "g": np.round(median[:len(PHASES_D)], 6).tolist(),
                     "r": np.round(median[len(PHASES_D):], 6).tolist()}
    return out


def save(templates: dict, path: Path = TEMPLATES_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(templates, indent=1) + "\n")


_active: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None
# [type, band, 0 + phases + 0]: the table with a 0 before the first day and after the last, and its
# rise from each day to the next (0 from the last day on), so that `_interpolate` needs no masks
_padded: np.ndarray | None = None
_padded_slopes: np.ndarray | None = None


def activate(templates: dict) -> None:
    """Make these templates the ones the features use in this process (training, before it extracts
    features); otherwise the shipped TEMPLATES_PATH is read on first use."""
    global _active, _padded, _padded_slopes
    names = tuple(k for k in templates if k != "phases_d")
    table = np.array([[templates[k]["g"], templates[k]["r"]] for k in names], dtype=np.float64)
    phases = np.array(templates["phases_d"], dtype=np.float64)
    # `_interpolate` finds the day by arithmetic, which needs whole days one apart
    if not (len(phases) > 1 and phases[0] == round(phases[0]) and np.all(np.diff(phases) == 1.0)):
        raise ValueError("template phases must be whole days one apart: rebuild the templates with "
                         "`alert-classifier train`")
    _active = (names, phases, table)
    zero = np.zeros((*table.shape[:2], 1))
    _padded = np.concatenate([zero, table, zero], axis=2)
    _padded_slopes = np.concatenate([zero, np.diff(table, axis=2), zero, zero], axis=2)


@contextmanager
def using(templates: dict) -> Iterator[None]:
    """These templates active inside the block, the ones active before it after it (training's
    calibration folds build their own from the objects they hold)."""
    global _active, _padded, _padded_slopes
    saved = _active, _padded, _padded_slopes
    activate(templates)
    try:
        yield
    finally:
        _active, _padded, _padded_slopes = saved


def load() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(type names, phase grid, [type, band, phase] template fluxes) in use."""
    if _active is None:
        activate(json.loads(TEMPLATES_PATH.read_text()))
    return _active


def _interpolate(phase: np.ndarray, phases: np.ndarray, padded: np.ndarray, padded_slopes: np.ndarray
                 ) -> np.ndarray:
    """The templates at these phases, 0 off the grid: [type, *phase.shape]. np.interp's numbers (its
    formula, operation for operation) from the padded tables (see `activate`), with the day found by
    arithmetic once for every type instead of a binary search per type and point."""
    day = np.floor(phase)
    index = day.astype(np.intp)
    index -= int(phases[0]) - 1
    np.minimum(np.maximum(index, 0, out=index), len(phases), out=index)  # np.clip's wrapper costs ~8 us
    index[phase > phases[-1]] = len(phases) + 1
    return padded_slopes.take(index, axis=1) * (phase - day) + padded.take(index, axis=1)


FIT_COLUMNS = ("unexplained", "log_stretch", "colour_gr")


def fit(t: np.ndarray, flux: np.ndarray, err: np.ndarray, band: np.ndarray) -> np.ndarray:
    """[template, FIT_COLUMNS]: per template, the smallest fraction of the weighted flux (sum of w f^2)
    left unexplained by amplitude * template((t - t0) / stretch) over the shifts and stretches
    tried (positive amplitudes only); log10 of that fit's stretch; and the g-r colour of the curve
    against the template's at that fit (-2.5 log10 of the ratio of g's and r's own best amplitudes:
    like SALT2's stretch and colour, a normal SN Ia sits near 0 in both). NaN with fewer than
    MIN_POINTS g and r points or no positive fit; the colour also without a positive fit in each band."""
    return fit_many(t, flux, err, band, np.array([0, len(t)]))[0]


def fit_many(t: np.ndarray, flux: np.ndarray, err: np.ndarray, band: np.ndarray, bounds: np.ndarray
             ) -> np.ndarray:
    """`fit` of many curves at once: curve k is points bounds[k]:bounds[k + 1] of the flat arrays
    (each in time order). [curve, template, FIT_COLUMNS]."""
    _names, phases, _ = load()
    out = _fit_kernel(np.asarray(t, np.float64), np.asarray(flux, np.float64),
                       np.asarray(err, np.float64), np.asarray(band, np.int64), np.asarray(bounds, np.int64),
                       int(phases[0]), len(phases), _padded, _padded_slopes, SHIFTS_D, STRETCHES)
    # logarithms by numpy (the kernel hands back stretch and g/r amplitude ratio): numpy's log10 and
    # the compiled one may differ in the last bit
    out[..., 1] = np.log10(out[..., 1])
    out[..., 2] = -2.5 * np.log10(out[..., 2])
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fit_kernel(t, flux, err, band, bounds, first_day, n_days, padded, slopes, shifts, stretches):
    """Compiled: numpy spent most of a fit's time in call overhead. The sums over points are the
    same BLAS products as before (np.dot), so the numbers are too, to the bit."""
    n_types, n_trials = padded.shape[0], len(stretches) * len(shifts)
    out = np.full((len(bounds) - 1, n_types, 3), np.nan)
    for k in range(len(bounds) - 1):
        keep = np.flatnonzero((band[bounds[k]:bounds[k + 1]] == 1) | (band[bounds[k]:bounds[k + 1]] == 2))
        keep += bounds[k]
        if len(keep) < MIN_POINTS:
            continue
        t_k, f_k, b_k = t[keep], flux[keep], band[keep]
        i_peak = np.argmax(f_k)
        if not f_k.max() > 0:
            continue
        w = 1.0 / err[keep] ** 2
        total = np.dot(w, f_k * f_k)
        mm = np.zeros((2, n_types, n_trials))  # per band, type and trial: sums of w m^2 and of w m f
        mf = np.zeros((2, n_types, n_trials))
        for j in range(2):
            m = np.flatnonzero(b_k == j + 1)
            if len(m) == 0:
                continue
            t_m = t_k[m]
            rows = np.empty((n_types, n_trials, len(m)))  # the templates at every trial's phases
            for si in range(len(stretches)):
                for ki in range(len(shifts)):
                    trial = si * len(shifts) + ki
                    t0 = t_k[i_peak] + shifts[ki]
                    for p in range(len(m)):
                        # np.interp's formula from the padded tables (see `activate`): day by arithmetic
                        phase = (t_m[p] - t0) / stretches[si]
                        day = np.floor(phase)
                        index = min(max(int(day) - first_day + 1, 0), n_days)
                        if phase > first_day + n_days - 1:
                            index = n_days + 1
                        for c in range(n_types):
                            rows[c, trial, p] = slopes[c, j, index] * (phase - day) + padded[c, j, index]
            flat = rows.reshape(n_types * n_trials, len(m))
            w_m = w[m]
            mm[j] = np.dot(flat * flat, w_m).reshape(n_types, n_trials)
            mf[j] = np.dot(flat, w_m * f_k[m]).reshape(n_types, n_trials)
        for c in range(n_types):
            best, trial = -np.inf, 0
            for i in range(n_trials):
                a, b = mm[0, c, i] + mm[1, c, i], mf[0, c, i] + mf[1, c, i]
                explained = b * b / a if a > 0 and b > 0 else -np.inf
                if explained > best:  # the first best, as argmax
                    best, trial = explained, i
            if not (np.isfinite(best) and total > 0):
                continue
            out[k, c, 0] = max(total - best, 0.0) / total
            out[k, c, 1] = stretches[trial // len(shifts)]
            g, r = mf[0, c, trial] / mm[0, c, trial], mf[1, c, trial] / mm[1, c, trial]
            if g > 0 and r > 0:
                out[k, c, 2] = g / r
    return out
