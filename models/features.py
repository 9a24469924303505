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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import light_curve as lc
import numpy as np

from models import templates

BANDS = ("u", "g", "r", "i", "z", "y")

# Periodogram grid: angular frequencies 0..2*pi/0.18 d (periods >= 0.18 d, below the shortest RRc)
# on 2**13+1 points, the form the FFT periodogram requires: spacing 0.0043 rad/d, four samples
# across the peak of a year of data (an alert's history). Explicit, because light-curve's default
# grid derived from sparse year-long data misses short periods. Its cost is fixed by the grid size.
MIN_PERIOD_D = 0.18
PERIOD_GRID = np.linspace(0.0, 2 * np.pi / MIN_PERIOD_D, 2**13 + 1)
MIN_POINTS_PERIOD = 8
MIN_POINTS_SHAPE = 4
MIN_POINTS_FOURIER = 9  # 7 coefficients of the 3-harmonic series, and some left to judge the fit
COLOUR_PAIRS = ((0, 1), (1, 2), (2, 3), (3, 4), (1, 3))  # u-g, g-r, r-i, i-z, g-i
_PAIR_A, _PAIR_B = (np.array(x) for x in zip(*COLOUR_PAIRS, strict=True))


class LightCurveLike(Protocol):
    t: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray


_SHAPE = lc.Extractor(lc.Skew(), lc.Kurtosis(), lc.StetsonK(), lc.EtaE(), lc.BeyondNStd(1.0),
                      lc.BeyondNStd(2.0), lc.Cusum(), lc.MedianBufferRangePercentage(0.2))
# 8 peaks: the true period of an EROS-1 RR Lyrae seen for a year is among them in 82% of curves
# (58% among 3); the harmonic fits then choose (`_all_period_candidates`).
N_PEAKS = 8
_PERIOD = lc.Periodogram(peaks=N_PEAKS, freqs=PERIOD_GRID, fast=True)
_BAZIN = lc.BazinFit("lmsder")

SHAPE_NAMES = ["skew", "kurtosis", "stetson_k", "eta_e", "beyond_1_std", "beyond_2_std", "cusum",
               "median_buffer_range_20"]
PERIOD_NAMES = ["log_period_0", "period_snr_0", "log_period_1", "period_snr_1", "period_alias_1d",
                "log_period_best", "period_best_is_alias"]
FOURIER_NAMES = ["fourier_r21", "fourier_r31", "fourier_phi21", "fourier_phi31", "fourier_var_explained"]
RRL_NAMES = ["log_period_rrl_range", "rrl_range_var_explained", "rrl_range_fit_deficit", "rrl_range_r21",
             "rrl_range_r31", "rrl_range_phi21", "rrl_range_phi31"]
TRANSIENT_NAMES = ["bazin_log_rise", "bazin_log_fall", "bazin_log_chi2", "bazin_baseline_ratio",
                   "log_rise_days", "log_decline_days", "log_days_above_half", "frac_positive",
                   "log_max_over_min"]
COLOUR_NAMES = [f"amp_ratio_{BANDS[a]}{BANDS[b]}" for a, b in COLOUR_PAIRS] + \
               [f"peak_colour_{BANDS[a]}{BANDS[b]}" for a, b in COLOUR_PAIRS]
EVOLUTION_BANDS = (1, 2, 3)  # g, r, i: where supernovae are best sampled
EVOLUTION_NAMES = [f"decline_{BANDS[b]}" for b in EVOLUTION_BANDS] + ["late_colour_gr", "late_colour_ri"]
# Interpolated at fixed days from the peak: per-band declines (a Delta-m15-like rate and the same at
# 30 d), colours before and after the peak, and the i/r flux at 30 vs 15 d (SN Ia rise again in i).
PHASE_BANDS = (1, 2, 3, 4)  # g, r, i, z
PHASE_COLOURS = ((1, 2, -5.0), (1, 2, 15.0), (1, 2, 30.0), (2, 3, 15.0), (2, 3, 30.0), (2, 4, 15.0))
PHASE_NAMES = ([f"dmag15_{BANDS[b]}" for b in PHASE_BANDS] + [f"dmag30_{BANDS[b]}" for b in PHASE_BANDS]
               + [f"colour_{BANDS[a]}{BANDS[b]}_{'m' if d < 0 else 'p'}{abs(d):.0f}d"
                  for a, b, d in PHASE_COLOURS]
               + ["rebrighten_i", "rebrighten_r"])
EARLY_NAMES = ["rise_rate_g", "rise_rate_r", "rise_rate_i", "colour_gr_latest", "colour_ri_latest",
               "colour_gr_per_day", "colour_ri_per_day"]
PAIR_TOLERANCE_D = 2.0  # points of two bands this close in time make a colour
# Magnitude slopes before and after each band's own peak, from every point in the window: unlike the
# interpolated declines above they exist as soon as two points follow the peak, which on real ZTF
# curves (g fades below the limit within a month) is most of the time. (2.0.0; BTS training split,
# 5-fold CV: Ia vs core-collapse AUC 0.836 -> 0.845.)
SLOPE_BANDS = (1, 2)  # g and r: the bands ZTF and Rubin share, where supernovae are best sampled
POST_PEAK_WINDOW_D = 60.0
MIN_SLOPE_SPAN_D = (2.0, 5.0)  # before, after the peak
SLOPE_NAMES = ([f"pre_peak_slope_{BANDS[b]}" for b in SLOPE_BANDS]
               + [f"post_peak_slope_{BANDS[b]}" for b in SLOPE_BANDS]
               + ["post_peak_slope_g_minus_r", "peak_time_g_minus_r", "colour_gr_slope_post_peak"])
COUNT_NAMES = ["log_n_points", "log_span_days", "n_bands"]
# How much of the curve each real-supernova template leaves unexplained (models/templates.py), and
# the Ia template against the others (log10 of the ratio: negative = more Ia-like); then the Ia
# template's stretch and colour offset at its best fit (2.2.0; BTS training split, 5-fold CV, two fold
# draws: type accuracy on latest alerts 0.851 / 0.855 -> 0.863 / 0.861)
TEMPLATE_TYPES = ("Ia", "II", "Ibc")
TEMPLATE_NAMES = ([f"template_unexplained_{k.lower()}" for k in TEMPLATE_TYPES]
                  + ["template_ia_vs_ii", "template_ia_vs_ibc", "template_ia_log_stretch",
                     "template_ia_colour_gr"])

FEATURE_NAMES: tuple[str, ...] = tuple(
    SHAPE_NAMES + PERIOD_NAMES + FOURIER_NAMES + RRL_NAMES + TRANSIENT_NAMES + COLOUR_NAMES + EVOLUTION_NAMES
    + PHASE_NAMES + EARLY_NAMES + SLOPE_NAMES + COUNT_NAMES + TEMPLATE_NAMES)


@dataclass
class _Prepared:
    """Per-curve arrays shared by the feature groups, computed once."""

    t: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    band: np.ndarray
    counts: np.ndarray  # points per band
    abs_max: np.ndarray  # largest |flux| per band (0 without points)
    flux_max: np.ndarray  # largest flux per band (0 without points)
    p05: np.ndarray
    p95: np.ndarray
    std_flux: np.ndarray  # per band (flux - median) / robust spread: scale-free, bands comparable
    std_err: np.ndarray
    bands: dict[int, tuple[np.ndarray, np.ndarray]]  # (t, flux) of every band with points, in time order


def _prepare_all(curves: Sequence[LightCurveLike]) -> list[_Prepared]:
    """Every curve's `_Prepared`, computed for the whole batch at once: the points of all curves in
    one array, each (curve, band) a segment of one sort. The numbers are those of one curve alone:
    the quantile arithmetic uses each segment's position within its own curve."""
    n_bands = len(BANDS)
    lengths = np.array([len(c.t) for c in curves], np.int64)
    offsets = np.cumsum(lengths) - lengths
    t = np.concatenate([np.asarray(c.t, np.float64) for c in curves])
    flux = np.concatenate([np.asarray(c.flux, np.float64) for c in curves])
    err = np.concatenate([np.asarray(c.flux_err, np.float64) for c in curves])
    band = np.concatenate([np.asarray(c.band, np.int64) for c in curves])
    key = np.repeat(np.arange(len(curves)), lengths) * n_bands + band  # (curve, band) segment
    counts = np.bincount(key, minlength=len(curves) * n_bands)
    start = np.cumsum(counts) - counts  # of each segment in the batch
    local = start - np.repeat(offsets, n_bands)  # ... and within its curve
    present = counts > 0

    def quantiles(values: np.ndarray, qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Per-segment quantiles [len(qs), segments] (NaN where empty) and maxima (0 where empty)."""
        ordered = values[np.lexsort((values, key))]
        pos = (local + np.asarray(qs, np.float64)[:, None] * np.maximum(counts - 1, 0))[:, present]
        lo = np.floor(pos).astype(np.int64)
        hi = np.maximum(np.minimum(lo + 1, (local + counts - 1)[present]), lo)
        frac = pos - lo
        shift = (start - local)[present]
        out = np.full((len(qs), len(counts)), np.nan)
        out[:, present] = ordered[lo + shift] * (1 - frac) + ordered[hi + shift] * frac
        largest = np.zeros(len(counts))
        largest[present] = ordered[(start + counts - 1)[present]]
        return out, largest

    (p05, median, p95), flux_max = quantiles(flux, (0.05, 0.5, 0.95))
    dev = np.abs(flux - median[key])
    (mad,), peak = quantiles(dev, (0.5,))
    mad = 1.4826 * mad
    # robust spread where a band has 3+ points, else its largest deviation, else 1
    scale = np.where((counts >= 3) & (mad > 0), mad, np.where(peak > 0, peak, 1.0))
    std_flux = (flux - median[key]) / scale[key]
    std_err = np.maximum(err / scale[key], 1e-6)
    abs_max = np.zeros(len(counts))
    np.maximum.at(abs_max, key, np.abs(flux))  # one call for the batch: ufunc.at costs ~10 us a call
    in_time = np.argsort(key, kind="stable")  # each segment's points in time order
    t_by_band, flux_by_band = t[in_time], flux[in_time]

    out = []
    empty = np.full(n_bands, np.nan)
    for k, (a, m) in enumerate(zip(offsets.tolist(), lengths.tolist(), strict=True)):
        seg = slice(k * n_bands, (k + 1) * n_bands)
        bands = {b: (t_by_band[s:s + c], flux_by_band[s:s + c])
                 for b, (s, c) in enumerate(zip(start[seg].tolist(), counts[seg].tolist(), strict=True)) if c}
        if m == 0:
            out.append(_Prepared(t[a:a], flux[a:a], err[a:a], band[a:a], counts[seg], abs_max[seg],
                                 flux_max[seg], empty, empty, flux[a:a], err[a:a], bands))
            continue
        b_ = slice(a, a + m)
        out.append(_Prepared(t[b_], flux[b_], err[b_], band[b_], counts[seg], abs_max[seg],
                             flux_max[seg], p05[seg], p95[seg], std_flux[b_], std_err[b_], bands))
    return out


SIDEREAL_DAY_FREQ = 1.0027379  # cycles/d: nightly sampling aliases a frequency f to f +- k * this
ALIAS_ORDERS = np.arange(-2, 3)
MAX_POINTS_ALIAS = 200  # the alias choice needs the shape, not every point: bounds the cost
# Periods where RR Lyrae pulsate (RRc ~0.2 d to long RRab ~1 d). With a year of noisy photometry the
# best-fitting candidate is often an alias, while the true period is still among the candidates
# (EROS-1 RR Lyrae: 82% among 8 peaks); the best fit inside this range and how much worse it is than
# the best overall tell a classifier what the winner alone hides.
RRL_PERIOD_RANGE_D = (0.2, 1.0)


@dataclass
class HarmonicFit:
    """3-harmonic Fourier fits of one curve at candidate frequencies (cycles/d)."""

    freqs: np.ndarray
    chi2: np.ndarray  # weighted chi2 at each frequency
    chi2_const: float  # of a constant: 1 - chi2 / chi2_const is the variance explained
    coef: np.ndarray  # [n_freqs, 7]: constant, then (sin, cos) of harmonics 1..3

    def shape(self, k: int) -> list[float]:
        """R21, R31, phi21, phi31 and the variance explained at candidate k."""
        c = self.coef[k]
        amps = np.hypot(c[1::2], c[2::2])
        phases = np.arctan2(c[2::2], c[1::2])
        if not amps[0] > 0:
            return [np.nan] * 5
        return [amps[1] / amps[0], amps[2] / amps[0], (phases[1] - 2 * phases[0]) % (2 * np.pi),
                (phases[2] - 3 * phases[0]) % (2 * np.pi), 1 - self.chi2[k] / self.chi2_const]


def _stacked_harmonic_fits(t: np.ndarray, f: np.ndarray, err: np.ndarray, freqs: np.ndarray
                           ) -> list[HarmonicFit]:
    """The fits of G curves with as many points and candidates each ([G, points], [G, candidates]),
    in one array program: batched normal equations, harmonics by recurrence (no more trig calls).
    Every curve's numbers are those of fitting it alone (the same operations per matrix)."""
    t = t - t[:, :1]  # phases from a small time origin: no precision lost to MJD ~ 6e4
    w = 1 / err
    fw = f * w
    phase = 2 * np.pi * freqs[:, :, None] * t[:, None, :]
    n_curves, n_freqs, n_points = phase.shape
    # [curve, candidate, column, point]: contiguous rows for BLAS
    design = np.empty((n_curves, n_freqs, 7, n_points))
    design[:, :, 0] = 1.0
    s1, c1 = np.sin(phase, out=design[:, :, 1]), np.cos(phase, out=design[:, :, 2])
    s2 = np.multiply(2 * s1, c1, out=design[:, :, 3])
    c2 = np.subtract(c1 * c1, s1 * s1, out=design[:, :, 4])
    np.add(s1 * c2, c1 * s2, out=design[:, :, 5])
    np.subtract(c1 * c2, s1 * s2, out=design[:, :, 6])
    design *= w[:, None, None, :]
    normal = design @ design.transpose(0, 1, 3, 2) + 1e-9 * np.eye(7)
    rhs = (design @ fw[:, None, :, None])[..., 0]
    try:
        coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:  # fewer distinct epochs than coefficients: the least-norm fit
        if n_curves > 1:  # only for the curve(s) that need it
            return [fits for g in range(n_curves)
                    for fits in _stacked_harmonic_fits(t[g:g + 1], f[g:g + 1], err[g:g + 1], freqs[g:g + 1])]
        coef = (np.linalg.pinv(normal) @ rhs[..., None])[..., 0]
    out = []
    for g in range(n_curves):
        total = float(fw[g] @ fw[g])
        out.append(HarmonicFit(freqs[g], total - np.einsum("mp,mp->m", rhs[g], coef[g]),
                               total - float(w[g] @ fw[g]) ** 2 / float(w[g] @ w[g]), coef[g]))
    return out


def _candidate_inputs(t: np.ndarray, f: np.ndarray, err: np.ndarray, peak_periods: Sequence[float]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(t, f, err, candidate frequencies) of the alias fits: the periodogram's peaks and their 1- and
    2-day aliases; None when too short or no peak."""
    peak_periods = np.asarray(peak_periods, np.float64)
    peaks = 1 / peak_periods[np.isfinite(peak_periods) & (peak_periods > 0)]
    if len(peaks) == 0 or len(t) < MIN_POINTS_FOURIER:
        return None
    cands = (peaks[:, None] + ALIAS_ORDERS[None, :] * SIDEREAL_DAY_FREQ).ravel()
    cands = cands[(cands > 0.01) & (cands < 1 / MIN_PERIOD_D)]
    if len(cands) == 0:
        return None
    if len(t) > MAX_POINTS_ALIAS:  # evenly thinned: keeps the time baseline, so the precision
        keep = np.linspace(0, len(t) - 1, MAX_POINTS_ALIAS).astype(np.int64)
        t, f, err = t[keep], f[keep], err[keep]
    return t, f, err, cands


def _all_period_candidates(std: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                           peak_periods: np.ndarray) -> list[HarmonicFit | None]:
    """Each curve's periodogram peaks and their 1- and 2-day aliases, fitted by a 3-harmonic series.
    Nightly sampling makes f and f +- 1/day look alike to a sinusoid; a non-sinusoidal curve (an
    RRab) fits clearly better at its true frequency. None for a curve too short or without a peak.
    Curves with as many points and candidates are fitted together (a batch of alerts shares a few
    lengths): the same numbers as one at a time."""
    inputs = [_candidate_inputs(t, f, e, peak_periods[i]) for i, (t, f, e) in enumerate(std)]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, x in enumerate(inputs):
        if x is not None:
            groups.setdefault((len(x[0]), len(x[3])), []).append(i)
    out: list[HarmonicFit | None] = [None] * len(std)
    for idx in groups.values():
        stacked = [np.stack([inputs[i][k] for i in idx]) for k in range(4)]
        for i, fits in zip(idx, _stacked_harmonic_fits(*stacked), strict=True):
            out[i] = fits if fits.chi2_const > 0 else None
    return out


def _period_shape(fits: HarmonicFit | None, top_period: float) -> list[float]:
    """Best period, whether it is an alias of the top peak, its Fourier shape; then the same for the
    best candidate in the RR Lyrae range, and how much worse that fits than the best overall."""
    if fits is None:
        return [np.nan] * (2 + len(FOURIER_NAMES) + len(RRL_NAMES))
    best = int(fits.chi2.argmin())
    row = [_log10(1 / fits.freqs[best]), float(abs(fits.freqs[best] - 1 / top_period) > 0.01)]
    row += fits.shape(best)
    lo, hi = RRL_PERIOD_RANGE_D
    in_range = np.flatnonzero((fits.freqs >= 1 / hi) & (fits.freqs <= 1 / lo))
    if len(in_range) == 0:
        return row + [np.nan] * len(RRL_NAMES)
    k = int(in_range[fits.chi2[in_range].argmin()])
    r21, r31, phi21, phi31, explained = fits.shape(k)
    deficit = (fits.chi2[k] - fits.chi2[best]) / fits.chi2_const
    return [*row, _log10(1 / fits.freqs[k]), explained, deficit, r21, r31, phi21, phi31]


def _log10(x: float) -> float:
    return float(np.log10(x)) if x > 0 and math.isfinite(x) else np.nan


def _transient(p: _Prepared, bazin: np.ndarray) -> list[float]:
    t, flux, band = p.t, p.flux, p.band
    peak_flux = flux.max() if len(flux) else np.nan  # an empty curve is NaN, not an error
    if len(t) < 2 or not peak_flux > 0:
        positive = np.count_nonzero(flux > 0) / len(flux) if len(t) else np.nan
        return [np.nan] * 7 + [positive, np.nan]
    band_max = np.maximum(p.abs_max, 1e-12)
    i_peak = int((flux / band_max[band]).argmax())  # peak relative to each band's own scale
    in_peak_band = band == band[i_peak]
    above = t[in_peak_band & (flux >= 0.5 * flux[i_peak])]
    amp, baseline, _t0, rise, fall, chi2 = bazin
    min_flux = flux.min()
    return [
        _log10(rise), _log10(fall), _log10(chi2),
        baseline / amp if math.isfinite(amp) and amp != 0 else np.nan,
        _log10(t[i_peak] - t[0] + 0.01),
        _log10(t[-1] - t[i_peak] + 0.01),
        _log10(above[-1] - above[0] + 0.01) if len(above) else np.nan,
        np.count_nonzero(flux > 0) / len(flux),  # np.mean's value: a count over n
        _log10(peak_flux / abs(min_flux)) if min_flux < 0 else _log10(1e3),
    ]


PEAK_WINDOW_D = 5.0


def _colours(p: _Prepared) -> list[float]:
    """Ratios between bands, as magnitudes: of the variability amplitude (5-95% range) and of the
    flux near the peak. Both are free of distance and zero point."""
    spread = np.where(p.counts >= 3, p.p95 - p.p05, np.nan)
    peak = np.full(len(BANDS), np.nan)
    if len(p.flux) and p.flux.max() > 0:
        near = np.abs(p.t - p.t[p.flux.argmax()]) < PEAK_WINDOW_D
        peak_near = np.full(len(BANDS), -np.inf)
        np.maximum.at(peak_near, p.band[near], p.flux[near])
        peak = np.where(peak_near > 0, peak_near, np.nan)
    mags = -2.5 * np.log10(np.concatenate((spread[_PAIR_A] / spread[_PAIR_B], peak[_PAIR_A] / peak[_PAIR_B])))
    return np.where(np.isfinite(mags), mags, np.nan).tolist()


_NO_POINTS = (np.empty(0), np.empty(0))
LATE_WINDOW_D = (10.0, 40.0)  # days after the peak: where Ia and core-collapse curves part ways


def _evolution(p: _Prepared, bands: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """How fast each of g, r, i declines after its own peak (log10 of peak over the mean flux 10-40
    days later) and the colour over the same window after the overall peak: ratios, scale-free."""
    out = []
    lo, hi = LATE_WINDOW_D
    for b in EVOLUTION_BANDS:
        value = np.nan
        t_b, f_b = bands.get(b, _NO_POINTS)
        i = int(f_b.argmax()) if len(t_b) >= 2 else 0
        if len(t_b) >= 2 and f_b[i] > 0:  # the peak is the maximum (a NaN fails either way)
            late = f_b[(t_b > t_b[i] + lo) & (t_b < t_b[i] + hi)]
            if len(late):
                value = float(np.log10(f_b[i] / max(late.sum() / len(late), 0.01 * f_b[i])))
        out.append(value)
    late_flux = np.full(len(BANDS), np.nan)
    i_peak = int(p.flux.argmax()) if len(p.flux) else 0
    if len(p.flux) and p.flux[i_peak] > 0:
        t_peak = p.t[i_peak]
        for b in set((1, 2, 3)) & set(bands):
            t_b, f_b = bands[b]
            late = f_b[(t_b > t_peak + lo) & (t_b < t_peak + hi)]
            if len(late):
                late_flux[b] = late.sum() / len(late)  # np.mean's arithmetic
    cols = [-2.5 * np.log10(late_flux[1] / late_flux[2]), -2.5 * np.log10(late_flux[2] / late_flux[3])]
    return out + [float(c) if np.isfinite(c) else np.nan for c in cols]


def _at(t: np.ndarray, f: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Fluxes linearly interpolated at the times `when` (one np.interp call: the same arithmetic per
    time as one call each); NaN outside the observed span (never extrapolated)."""
    return np.where((when >= t[0]) & (when <= t[-1]), np.interp(when, t, f), np.nan)


def _mag_ratio(a: float, b: float) -> float:
    return float(-2.5 * np.log10(a / b)) if a > 0 and b > 0 else np.nan  # NaN compares False


PHASE_DAYS = (-5.0, 15.0, 30.0)  # from the reference peak: the days PHASE_COLOURS and the i/r ratios use
assert {d for *_, d in PHASE_COLOURS} | {15.0, 30.0} <= set(PHASE_DAYS), "a colour day not interpolated"


def _phases(p: _Prepared) -> list[float]:
    """Declines and colours at fixed days from the peak (r's, else the best-sampled band's), by
    interpolation between detections: ratios of fluxes, so scale-free."""
    per_band = {b: tf for b, tf in p.bands.items() if len(tf[0]) >= 2 and p.flux_max[b] > 0}
    if not per_band:
        return [np.nan] * len(PHASE_NAMES)
    ref = 2 if 2 in per_band else max(per_band, key=lambda b: len(per_band[b][0]))
    t_ref, f_ref = per_band[ref]
    t_peak = float(t_ref[f_ref.argmax()])

    declines = {b: [np.nan, np.nan] for b in PHASE_BANDS}
    at_day: dict[tuple[int, float], float] = {}  # (band, days from the reference peak) -> flux
    for b in set(PHASE_BANDS) & set(per_band):
        t_b, f_b = per_band[b]
        peak_b = f_b.argmax()
        # one interpolation per band: 15 and 30 days after its own peak, then the PHASE_DAYS
        t_peak_b = float(t_b[peak_b])
        when = np.array([t_peak_b + 15.0, t_peak_b + 30.0, *[t_peak + d for d in PHASE_DAYS]])
        flux = _at(t_b, f_b, when).tolist()
        declines[b] = [_mag_ratio(flux[0], f_b[peak_b]), _mag_ratio(flux[1], f_b[peak_b])]
        at_day |= {(b, d): x for d, x in zip(PHASE_DAYS, flux[2:], strict=True)}

    def flux_at(b: int, days: float) -> float:
        return at_day.get((b, days), np.nan)

    return ([declines[b][0] for b in PHASE_BANDS] + [declines[b][1] for b in PHASE_BANDS]
            + [_mag_ratio(flux_at(a, d), flux_at(b, d)) for a, b, d in PHASE_COLOURS]
            + [_mag_ratio(flux_at(b, 30.0), flux_at(b, 15.0)) for b in (3, 2)])


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x (closed form: np.polyfit costs ~30 us a call)."""
    n = len(x)
    dx = x - x.sum() / n  # np.mean's arithmetic, without its wrapper
    return float(dx @ (y - y.sum() / n) / (dx @ dx))


def _rise_rate(t: np.ndarray, f: np.ndarray) -> float:
    """Brightening in magnitudes per day up to the band's peak (negative: rising), from the positive
    fluxes; NaN with fewer than two or within half a day."""
    k = int(f.argmax()) + 1
    t, f = t[:k], f[:k]
    positive = f > 0
    t, f = t[positive], f[positive]
    if len(t) < 2 or t[-1] - t[0] < 0.5:
        return np.nan
    return -2.5 * _slope(t, np.log10(f))


def _colour_pairs(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """[time, colour a-b] for each point of band a with one of band b within PAIR_TOLERANCE_D."""
    (ta, fa), (tb, fb) = a, b
    after = np.minimum(np.searchsorted(tb, ta), len(tb) - 1)
    before = np.maximum(after - 1, 0)
    j = np.where(np.abs(tb[before] - ta) < np.abs(tb[after] - ta), before, after)  # the nearer one
    tj, fj = tb[j], fb[j]
    ok = (np.abs(tj - ta) <= PAIR_TOLERANCE_D) & (fa > 0) & (fj > 0)
    pairs = np.empty((np.count_nonzero(ok), 2))
    pairs[:, 0] = (ta[ok] + tj[ok]) / 2
    pairs[:, 1] = -2.5 * np.log10(fa[ok] / fj[ok])
    return pairs


def _early(bands: dict[int, tuple[np.ndarray, np.ndarray]], pairs_gr: np.ndarray | None) -> list[float]:
    """What the first detections show of a transient: how fast g, r and i brighten, the latest
    g-r and r-i colours (points of two bands at most PAIR_TOLERANCE_D apart) and how they change."""
    rates = [_rise_rate(*bands[b]) if b in bands else np.nan for b in (1, 2, 3)]
    latest, slopes = [], []
    for a, b in ((1, 2), (2, 3)):
        if a == 1 and pairs_gr is not None:
            pairs = pairs_gr
        else:
            pairs = _colour_pairs(bands[a], bands[b]) if a in bands and b in bands else np.empty((0, 2))
        latest.append(float(pairs[-1, 1]) if len(pairs) else np.nan)
        spread = len(pairs) >= 2 and pairs[-1, 0] - pairs[0, 0] > 0.5
        slopes.append(_slope(pairs[:, 0], pairs[:, 1]) if spread else np.nan)
    return rates + latest + slopes


def _slopes(bands: dict[int, tuple[np.ndarray, np.ndarray]], pairs_gr: np.ndarray | None) -> list[float]:
    """Least-squares slopes of g and r in magnitudes per day up to their peaks and over the
    POST_PEAK_WINDOW_D after (SN Ia fade ~0.1 mag/d in g, a plateau SN II ~0.01 in r), the g-r
    difference of the declines, when g peaks relative to r, and how fast g-r reddens after r's peak."""
    pre, post, peaks = {}, {}, {}
    for b in SLOPE_BANDS:
        if b not in bands:
            continue
        t, f = bands[b]
        positive = f > 0
        t, f = t[positive], f[positive]
        if len(t) < 2:
            continue
        mag = -2.5 * np.log10(f)
        k = int(mag.argmin())
        peaks[b] = t[k]
        before = t <= t[k]
        after = (t >= t[k]) & (t <= t[k] + POST_PEAK_WINDOW_D)
        for mask, out, span in ((before, pre, MIN_SLOPE_SPAN_D[0]), (after, post, MIN_SLOPE_SPAN_D[1])):
            t_in = t[mask]
            if len(t_in) >= 2 and t_in[-1] - t_in[0] >= span:
                out[b] = _slope(t_in, mag[mask])
    nan = np.nan
    colour_slope = nan
    if 1 in bands and 2 in bands and 2 in peaks:
        pairs = pairs_gr
        later = pairs[pairs[:, 0] >= peaks[2]]
        if len(later) >= 2 and later[-1, 0] - later[0, 0] >= MIN_SLOPE_SPAN_D[1]:
            colour_slope = _slope(later[:, 0], later[:, 1])
    return ([pre.get(b, nan) for b in SLOPE_BANDS] + [post.get(b, nan) for b in SLOPE_BANDS]
            + [post[1] - post[2] if 1 in post and 2 in post else nan,
               peaks[1] - peaks[2] if 1 in peaks and 2 in peaks else nan, colour_slope])


def _check_templates() -> None:
    if (names := templates.load()[0]) != TEMPLATE_TYPES:
        raise ValueError(f"{templates.TEMPLATES_PATH} holds templates {names}, the features expect "
                         f"{TEMPLATE_TYPES}: run `alert-classifier train`")


def template_features(curves: Sequence[LightCurveLike]) -> np.ndarray:
    """The TEMPLATE_NAMES columns of `extract` alone (float32 [len(curves), len(TEMPLATE_NAMES)]),
    from the templates active now: training's calibration folds recompute them with templates
    built without the fold's objects."""
    _check_templates()
    out = np.full((len(curves), len(TEMPLATE_NAMES)), np.nan, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i, c in enumerate(curves):
            out[i] = _template_fits(np.asarray(c.t, np.float64), np.asarray(c.flux, np.float64),
                                    np.asarray(c.flux_err, np.float64), np.asarray(c.band, np.int64))
    out[np.isinf(out)] = np.nan
    return out


def _template_fits(t: np.ndarray, flux: np.ndarray, err: np.ndarray, band: np.ndarray) -> list[float]:
    fits = templates.fit(t, flux, err, band)
    ia, ii, ibc = left = fits[:, 0]
    return [*left.tolist(), _log10(ia / ii) if ii > 0 else np.nan, _log10(ia / ibc) if ibc > 0 else np.nan,
            *fits[0, 1:].tolist()]


def extract(curves: Sequence[LightCurveLike], *, n_jobs: int = 1) -> np.ndarray:
    """Features of many light curves: float32 [len(curves), len(FEATURE_NAMES)], NaN where undefined.

    The Rust extractors run once over the whole batch (`many`), in parallel when n_jobs > 1.
    """
    # Undefined features (0/0, log of 0, overflow) are NaN by design: no warning per alert in the logs.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _extract(curves, n_jobs)


# Curves per call of a Rust extractor: it holds the GIL for the whole call, so an HTTP server's
# event loop sharing the process would wait for all of a 500-curve batch (~200 ms); chunks of 32
# keep that wait ~10 ms at no measurable cost (bench/feature_bench.py).
MANY_CHUNK = 32


def _many(extractor, items: list, n_jobs: int) -> np.ndarray:
    return np.concatenate([extractor.many(items[i:i + MANY_CHUNK], fill_value=np.nan, sorted=True,
                                          check=False, n_jobs=n_jobs)
                           for i in range(0, len(items), MANY_CHUNK)])


def _extract(curves: Sequence[LightCurveLike], n_jobs: int) -> np.ndarray:
    n = len(curves)
    out = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    _check_templates()  # once a batch, not once a curve
    prepared = _prepare_all(curves)
    std = [(p.t, p.std_flux, p.std_err) for p in prepared]

    shape_idx = [i for i, (t, _, _) in enumerate(std) if len(t) >= MIN_POINTS_SHAPE]
    if shape_idx:
        out[shape_idx, :len(SHAPE_NAMES)] = _many(_SHAPE, [std[i] for i in shape_idx], n_jobs)

    period_idx = [i for i, (t, _, _) in enumerate(std) if len(t) >= MIN_POINTS_PERIOD]
    periods = np.full((n, 2 * N_PEAKS), np.nan)  # (period, signal-to-noise) per peak
    if period_idx:
        periods[period_idx] = _many(_PERIOD, [std[i] for i in period_idx], n_jobs)
    # Reference band for the supernova fit: the one with most points.
    ref = []
    for p in prepared:
        b = int(p.counts.argmax())
        t_b, f_b = p.bands.get(b, _NO_POINTS)
        largest = p.abs_max[b]
        scale = largest if largest > 0 else 1.0
        ref.append((t_b, f_b / scale, np.maximum(p.err[p.band == b] / scale, 1e-6)))
    bazin_idx = [i for i, r in enumerate(ref) if len(r[0]) >= 6]
    bazin = np.full((n, 6), np.nan)
    if bazin_idx:
        bazin[bazin_idx] = _many(_BAZIN, [ref[i] for i in bazin_idx], n_jobs)

    # NaN peaks (too few points) give no candidates, so NaN features
    candidates = _all_period_candidates(std, periods[:, 0::2])
    col = len(SHAPE_NAMES)
    for i, p in enumerate(prepared):
        p0, s0, p1, s1 = periods[i, :4]
        # 1-day aliases: frequencies one or two cycles per day apart (nightly sampling)
        alias = abs(1 / p0 - 1 / p1) if p0 > 0 and p1 > 0 else np.nan
        t = std[i][0]
        span = float(t[-1] - t[0]) if len(t) else np.nan
        row = [_log10(p0), s0, _log10(p1), s1,
               float(abs(alias - 1) < 0.05 or abs(alias - 2) < 0.05) if math.isfinite(alias) else np.nan]
        row += _period_shape(candidates[i], p0)
        row += _transient(p, bazin[i])
        row += _colours(p)
        bands = p.bands
        row += _evolution(p, bands)
        row += _phases(p)
        pairs_gr = _colour_pairs(bands[1], bands[2]) if 1 in bands and 2 in bands else None
        row += _early(bands, pairs_gr)
        row += _slopes(bands, pairs_gr)
        row += [_log10(len(t)), _log10(span + 0.01) if len(t) else np.nan,
                float(np.count_nonzero(p.counts))]
        row += _template_fits(p.t, p.flux, p.err, p.band)
        out[i, col:] = row
    out[np.isinf(out)] = np.nan  # overflow (a ratio beyond float32) is as undefined as 0/0
    return out
