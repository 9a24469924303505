"""Light-curve features: pure functions from light curves to a float32 matrix [n_curves, n_features].

Every feature is **scale-free** (independent of distance and zero point): periods, shape statistics
of per-band standardised fluxes, ratios between bands, times. Features in absolute flux units
were shown not to transfer from simulated LSST to real surveys (../shared/data/README.md).

A light curve too short for a feature gives NaN there; the models handle NaN natively
(HistGradientBoosting), never a silent 0.

Input: any objects with `t` (MJD), `flux`, `flux_err` (same unit, any zero point; difference-image
fluxes as in alerts) and `band` (int indices into BANDS) arrays, sorted by time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import light_curve as lc
import numpy as np

BANDS = ("u", "g", "r", "i", "z", "y")

# Periodogram grid: angular frequencies 0..2*pi/0.18 d (periods >= 0.18 d, below the shortest RRc)
# on 2**13+1 points, the form the FFT periodogram requires: spacing 0.0043 rad/d, four samples
# across the peak of a year of data (an alert's history). Explicit, because light-curve's default
# grid derived from sparse year-long data misses short periods. Its cost is fixed by the grid size.
MIN_PERIOD_D = 0.18
PERIOD_GRID = np.linspace(0.0, 2 * np.pi / MIN_PERIOD_D, 2**13 + 1)
MIN_POINTS_PERIOD = 8
MIN_POINTS_SHAPE = 4
COLOUR_PAIRS = ((0, 1), (1, 2), (2, 3), (3, 4), (1, 3))  # u-g, g-r, r-i, i-z, g-i


class LightCurveLike(Protocol):
    t: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray


_SHAPE = lc.Extractor(lc.Skew(), lc.Kurtosis(), lc.StetsonK(), lc.EtaE(), lc.BeyondNStd(1.0),
                      lc.BeyondNStd(2.0), lc.Cusum(), lc.MedianBufferRangePercentage(0.2))
_PERIOD = lc.Periodogram(peaks=3, freqs=PERIOD_GRID, fast=True)
_BAZIN = lc.BazinFit("lmsder")

SHAPE_NAMES = ["skew", "kurtosis", "stetson_k", "eta_e", "beyond_1_std", "beyond_2_std", "cusum",
               "median_buffer_range_20"]
PERIOD_NAMES = ["log_period_0", "period_snr_0", "log_period_1", "period_snr_1", "period_alias_1d",
                "log_period_best", "period_best_is_alias"]
FOURIER_NAMES = ["fourier_r21", "fourier_r31", "fourier_phi21", "fourier_phi31", "fourier_var_explained"]
TRANSIENT_NAMES = ["bazin_log_rise", "bazin_log_fall", "bazin_log_chi2", "bazin_baseline_ratio",
                   "log_rise_days", "log_decline_days", "log_days_above_half", "frac_positive",
                   "log_max_over_min"]
COLOUR_NAMES = [f"amp_ratio_{BANDS[a]}{BANDS[b]}" for a, b in COLOUR_PAIRS] + \
               [f"peak_colour_{BANDS[a]}{BANDS[b]}" for a, b in COLOUR_PAIRS]
EVOLUTION_BANDS = (1, 2, 3)  # g, r, i: where supernovae are best sampled
EVOLUTION_NAMES = [f"decline_{BANDS[b]}" for b in EVOLUTION_BANDS] + ["late_colour_gr", "late_colour_ri"]
COUNT_NAMES = ["log_n_points", "log_span_days", "n_bands"]

FEATURE_NAMES: tuple[str, ...] = tuple(
    SHAPE_NAMES + PERIOD_NAMES + FOURIER_NAMES + TRANSIENT_NAMES + COLOUR_NAMES + EVOLUTION_NAMES
    + COUNT_NAMES)


def _band_quantiles(band: np.ndarray, values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Per-band quantiles [len(qs), len(BANDS)] (NaN for empty bands) from one sort, no per-band loop."""
    order = np.lexsort((values, band))
    ordered = values[order]
    counts = np.bincount(band, minlength=len(BANDS))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    present = counts > 0
    out = np.full((len(qs), len(BANDS)), np.nan)
    for k, q in enumerate(qs):
        pos = starts + q * np.maximum(counts - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts + counts - 1)
        frac = pos - lo
        lo, hi = lo[present], np.maximum(hi[present], lo[present])
        out[k, present] = ordered[lo] * (1 - frac[present]) + ordered[hi] * frac[present]
    return out


@dataclass
class _Prepared:
    """Per-curve arrays shared by the feature groups, computed once."""

    t: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    band: np.ndarray
    counts: np.ndarray  # points per band
    p05: np.ndarray
    p95: np.ndarray
    std_flux: np.ndarray  # per band (flux - median) / robust spread: scale-free, bands comparable
    std_err: np.ndarray


def _prepare(curve: LightCurveLike) -> _Prepared:
    t = np.asarray(curve.t, np.float64)
    flux = np.asarray(curve.flux, np.float64)
    err = np.asarray(curve.flux_err, np.float64)
    band = np.asarray(curve.band, np.int64)
    counts = np.bincount(band, minlength=len(BANDS))
    if len(t) == 0:
        empty = np.full(len(BANDS), np.nan)
        return _Prepared(t, flux, err, band, counts, empty, empty, flux, err)
    p05, median, p95 = _band_quantiles(band, flux, (0.05, 0.5, 0.95))
    dev = np.abs(flux - median[band])
    mad = 1.4826 * _band_quantiles(band, dev, (0.5,))[0]
    peak = np.zeros(len(BANDS))
    np.maximum.at(peak, band, dev)
    # robust spread where a band has 3+ points, else its largest deviation, else 1
    scale = np.where((counts >= 3) & (mad > 0), mad, np.where(peak > 0, peak, 1.0))
    return _Prepared(t, flux, err, band, counts, p05, p95, (flux - median[band]) / scale[band],
                     np.maximum(err / scale[band], 1e-6))


SIDEREAL_DAY_FREQ = 1.0027379  # cycles/d: nightly sampling aliases a frequency f to f +- k * this
ALIAS_ORDERS = np.arange(-2, 3)
N_HARMONICS = 3
MAX_POINTS_ALIAS = 200  # the alias choice needs the shape, not every point: bounds the cost


def _harmonic_chi2(t: np.ndarray, fw: np.ndarray, w: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Weighted chi2 (up to a constant) of a 3-harmonic Fourier series at each frequency, all
    solved at once through batched normal equations."""
    phase = 2 * np.pi * freqs[:, None] * t[None, :]
    s1, c1 = np.sin(phase), np.cos(phase)
    s2, c2 = 2 * s1 * c1, c1 * c1 - s1 * s1  # harmonics by recurrence: no more trig calls
    s3, c3 = s1 * c2 + c1 * s2, c1 * c2 - s1 * s2
    design = np.stack([np.broadcast_to(np.ones_like(t), phase.shape), s1, c1, s2, c2, s3, c3], axis=2)
    design *= w[None, :, None]
    normal = design.transpose(0, 2, 1) @ design + 1e-9 * np.eye(design.shape[2])
    rhs = design.transpose(0, 2, 1) @ fw
    coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    return -np.einsum("mp,mp->m", rhs, coef)


def best_period(t: np.ndarray, f: np.ndarray, err: np.ndarray, peak_periods: Sequence[float]) -> float:
    """The periodogram's peaks and their 1- and 2-day aliases, judged by the chi2 of a 3-harmonic
    Fourier series. Nightly sampling makes f and f +- 1/day look alike to a sinusoid; a
    non-sinusoidal curve (an RRab) fits clearly better at its true frequency."""
    peaks = np.array([1 / p for p in peak_periods if np.isfinite(p) and p > 0])
    if len(peaks) == 0 or len(t) < 2 * N_HARMONICS + 3:
        return np.nan
    cands = (peaks[:, None] + ALIAS_ORDERS[None, :] * SIDEREAL_DAY_FREQ).ravel()
    cands = cands[(cands > 0.01) & (cands < 1 / MIN_PERIOD_D)]
    if len(t) > MAX_POINTS_ALIAS:  # evenly thinned: keeps the time baseline, so the precision
        keep = np.linspace(0, len(t) - 1, MAX_POINTS_ALIAS).astype(np.int64)
        t, f, err = t[keep], f[keep], err[keep]
    w = 1 / err
    return float(1 / cands[int(np.argmin(_harmonic_chi2(t, f * w, w, cands)))])


def _fourier(t: np.ndarray, f: np.ndarray, period: float) -> list[float]:
    """3-harmonic fit at the period: amplitude ratios R21, R31, phase differences, variance explained."""
    if not (np.isfinite(period) and period > 0) or len(t) < 9:
        return [np.nan] * 5
    w = 2 * np.pi / period
    cols = [np.ones_like(t)]
    for k in (1, 2, 3):
        cols += [np.sin(k * w * t), np.cos(k * w * t)]
    design = np.stack(cols, axis=1)
    coef, *_ = np.linalg.lstsq(design, f, rcond=None)
    amps = [np.hypot(coef[2 * k - 1], coef[2 * k]) for k in (1, 2, 3)]
    phases = [np.arctan2(coef[2 * k], coef[2 * k - 1]) for k in (1, 2, 3)]
    if amps[0] <= 0:
        return [np.nan] * 5
    resid = f - design @ coef
    var = np.var(f)
    explained = 1 - np.var(resid) / var if var > 0 else np.nan
    phi21 = (phases[1] - 2 * phases[0]) % (2 * np.pi)
    phi31 = (phases[2] - 3 * phases[0]) % (2 * np.pi)
    return [amps[1] / amps[0], amps[2] / amps[0], phi21, phi31, explained]


def _log10(x: float) -> float:
    return float(np.log10(x)) if x > 0 and np.isfinite(x) else np.nan


def _transient(curve: LightCurveLike, bazin: np.ndarray) -> list[float]:
    t, flux, band = curve.t, np.asarray(curve.flux, np.float64), curve.band
    peak_flux = np.max(flux)
    if len(t) < 2 or not peak_flux > 0:
        return [np.nan] * 4 + [np.nan, np.nan, np.nan, float(np.mean(flux > 0)) if len(t) else np.nan, np.nan]
    band_max = np.ones(len(BANDS))
    for b in np.unique(band):
        band_max[b] = max(np.max(np.abs(flux[band == b])), 1e-12)
    i_peak = int(np.argmax(flux / band_max[band]))  # peak relative to each band's own scale
    in_peak_band = band == band[i_peak]
    above = t[in_peak_band & (flux >= 0.5 * flux[i_peak])]
    amp, baseline, _t0, rise, fall, chi2 = bazin
    min_flux = np.min(flux)
    return [
        _log10(rise), _log10(fall), _log10(chi2),
        baseline / amp if np.isfinite(amp) and amp != 0 else np.nan,
        _log10(t[i_peak] - t[0] + 0.01),
        _log10(t[-1] - t[i_peak] + 0.01),
        _log10(above[-1] - above[0] + 0.01) if len(above) else np.nan,
        float(np.mean(flux > 0)),
        _log10(peak_flux / abs(min_flux)) if min_flux < 0 else _log10(1e3),
    ]


PEAK_WINDOW_D = 5.0


def _colours(p: _Prepared) -> list[float]:
    """Ratios between bands, as magnitudes: of the variability amplitude (5-95% range) and of the
    flux near the peak. Both are free of distance and zero point."""
    spread = np.where(p.counts >= 3, p.p95 - p.p05, np.nan)
    peak = np.full(len(BANDS), np.nan)
    if len(p.flux) and np.max(p.flux) > 0:
        near = np.abs(p.t - p.t[np.argmax(p.flux)]) < PEAK_WINDOW_D
        peak_near = np.full(len(BANDS), -np.inf)
        np.maximum.at(peak_near, p.band[near], p.flux[near])
        peak = np.where(peak_near > 0, peak_near, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        amp = [-2.5 * np.log10(spread[a] / spread[b]) for a, b in COLOUR_PAIRS]
        col = [-2.5 * np.log10(peak[a] / peak[b]) for a, b in COLOUR_PAIRS]
    return [float(x) if np.isfinite(x) else np.nan for x in amp + col]


LATE_WINDOW_D = (10.0, 40.0)  # days after the peak: where Ia and core-collapse curves part ways


def _evolution(p: _Prepared) -> list[float]:
    """How fast each of g, r, i declines after its own peak (log10 of peak over the mean flux 10-40
    days later) and the colour over the same window after the overall peak: ratios, scale-free."""
    out = []
    lo, hi = LATE_WINDOW_D
    for b in EVOLUTION_BANDS:
        m = p.band == b
        value = np.nan
        if m.sum() >= 2 and np.max(p.flux[m]) > 0:
            t_b, f_b = p.t[m], p.flux[m]
            i = int(np.argmax(f_b))
            late = (t_b > t_b[i] + lo) & (t_b < t_b[i] + hi)
            if late.any():
                value = float(np.log10(f_b[i] / max(np.mean(f_b[late]), 0.01 * f_b[i])))
        out.append(value)
    late_flux = np.full(len(BANDS), np.nan)
    if len(p.flux) and np.max(p.flux) > 0:
        t_peak = p.t[np.argmax(p.flux)]
        late = (p.t > t_peak + lo) & (p.t < t_peak + hi)
        for b in (1, 2, 3):
            sel = late & (p.band == b)
            if sel.any():
                late_flux[b] = np.mean(p.flux[sel])
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = [-2.5 * np.log10(late_flux[1] / late_flux[2]), -2.5 * np.log10(late_flux[2] / late_flux[3])]
    return out + [float(c) if np.isfinite(c) else np.nan for c in cols]


def extract(curves: Sequence[LightCurveLike], *, n_jobs: int = 1) -> np.ndarray:
    """Features of many light curves: float32 [len(curves), len(FEATURE_NAMES)], NaN where undefined.

    The Rust extractors run once over the whole batch (`many`), in parallel when n_jobs > 1.
    """
    n = len(curves)
    out = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    prepared = [_prepare(c) for c in curves]
    std = [(p.t, p.std_flux, p.std_err) for p in prepared]

    shape_idx = [i for i, (t, _, _) in enumerate(std) if len(t) >= MIN_POINTS_SHAPE]
    if shape_idx:
        out[shape_idx, :len(SHAPE_NAMES)] = _SHAPE.many(
            [std[i] for i in shape_idx], fill_value=np.nan, sorted=True, check=False, n_jobs=n_jobs)

    period_idx = [i for i, (t, _, _) in enumerate(std) if len(t) >= MIN_POINTS_PERIOD]
    periods = np.full((n, 6), np.nan)
    if period_idx:
        periods[period_idx] = _PERIOD.many([std[i] for i in period_idx], fill_value=np.nan,
                                           sorted=True, check=False, n_jobs=n_jobs)
    # Reference band for the supernova fit: the one with most points.
    ref = []
    for c in curves:
        counts = np.bincount(c.band.astype(np.int64), minlength=len(BANDS)) if len(c.band) else np.zeros(6)
        b = int(np.argmax(counts))
        m = c.band == b
        f = np.asarray(c.flux, np.float64)[m]
        scale = np.max(np.abs(f)) if len(f) and np.max(np.abs(f)) > 0 else 1.0
        ref.append((np.asarray(c.t, np.float64)[m], f / scale,
                    np.maximum(np.asarray(c.flux_err, np.float64)[m] / scale, 1e-6)))
    bazin_idx = [i for i, r in enumerate(ref) if len(r[0]) >= 6]
    bazin = np.full((n, 6), np.nan)
    if bazin_idx:
        bazin[bazin_idx] = _BAZIN.many([ref[i] for i in bazin_idx], fill_value=np.nan, sorted=True,
                                       check=False, n_jobs=n_jobs)

    col = len(SHAPE_NAMES)
    for i, curve in enumerate(curves):
        p0, s0, p1, s1, p2, _ = periods[i]
        # 1-day aliases: frequencies one or two cycles per day apart (nightly sampling)
        alias = abs(1 / p0 - 1 / p1) if p0 > 0 and p1 > 0 else np.nan
        t, f, e = std[i]
        best = best_period(t, f, e, (p0, p1, p2))  # NaN peaks (too few points) give NaN
        span = float(t[-1] - t[0]) if len(t) else np.nan
        row = [_log10(p0), s0, _log10(p1), s1,
               float(abs(alias - 1) < 0.05 or abs(alias - 2) < 0.05) if np.isfinite(alias) else np.nan,
               _log10(best), float(abs(1 / best - 1 / p0) > 0.01) if np.isfinite(best) else np.nan]
        row += _fourier(t, f, best)
        row += _transient(curve, bazin[i])
        row += _colours(prepared[i])
        row += _evolution(prepared[i])
        row += [_log10(len(t)), _log10(span + 0.01) if len(t) else np.nan,
                float(len(np.unique(curve.band)))]
        out[i, col:] = row
    return out
