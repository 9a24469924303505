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

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import light_curve as lc
import numpy as np

from models import feature_groups, harmonics, templates
from models.feature_groups import COLOUR_PAIRS, EVOLUTION_BANDS, PHASE_BANDS, PHASE_COLOURS, SLOPE_BANDS

log = logging.getLogger(__name__)
BANDS = ("u", "g", "r", "i", "z", "y")

# Periodogram grids: angular frequencies 0..2*pi/0.18 d (periods >= 0.18 d, below the shortest RRc)
# on 2**k+1 points, the form the FFT periodogram requires. A peak is ~1/baseline wide, so each curve
# gets the coarsest grid with four samples across its peaks: 2**13 (spacing 0.0043 rad/d) for a year
# of data (an alert's whole history), 2**10 for a few weeks. The cost is linear in the grid size, so a
# young transient no longer pays for a year's resolution. Explicit, because light-curve's default grid
# derived from sparse year-long data misses short periods.
MIN_PERIOD_D = 0.18
SAMPLES_PER_PEAK = 4
GRID_POWERS = (10, 11, 12, 13)
PERIOD_GRIDS = {k: np.linspace(0.0, 2 * np.pi / MIN_PERIOD_D, 2**k + 1) for k in GRID_POWERS}
PERIOD_GRID = PERIOD_GRIDS[GRID_POWERS[-1]]  # the finest: whole histories
MIN_POINTS_PERIOD = 8
MIN_POINTS_SHAPE = 4
MIN_POINTS_FOURIER = 9  # 7 coefficients of the 3-harmonic series, and some left to judge the fit
_PAIR_A, _PAIR_B = (np.array(x) for x in zip(*COLOUR_PAIRS, strict=True))


class LightCurveLike(Protocol):
    t: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray


_SHAPE = lc.Extractor(lc.Skew(), lc.Kurtosis(), lc.StetsonK(), lc.EtaE(), lc.BeyondNStd(1.0),
                      lc.BeyondNStd(2.0), lc.Cusum(), lc.MedianBufferRangePercentage(0.2))
# 8 peaks: the true period of an EROS-1 RR Lyrae seen for a year is among them in 82% of curves
# (58% among 3); the harmonic fits then choose (`period_fits`).
N_PEAKS = 8
_PERIODOGRAMS = {k: lc.Periodogram(peaks=N_PEAKS, freqs=grid, fast=True) for k, grid in PERIOD_GRIDS.items()}
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
EVOLUTION_NAMES = [f"decline_{BANDS[b]}" for b in EVOLUTION_BANDS] + ["late_colour_gr", "late_colour_ri"]
PHASE_NAMES = ([f"dmag15_{BANDS[b]}" for b in PHASE_BANDS] + [f"dmag30_{BANDS[b]}" for b in PHASE_BANDS]
               + [f"colour_{BANDS[a]}{BANDS[b]}_{'m' if d < 0 else 'p'}{abs(d):.0f}d"
                  for a, b, d in PHASE_COLOURS]
               + ["rebrighten_i", "rebrighten_r"])
EARLY_NAMES = ["rise_rate_g", "rise_rate_r", "rise_rate_i", "colour_gr_latest", "colour_ri_latest",
               "colour_gr_per_day", "colour_ri_per_day"]
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
    """A curve's points in time order, its fluxes standardised per band (scale-free, bands comparable)."""

    t: np.ndarray
    std_flux: np.ndarray  # per band (flux - median) / robust spread
    std_err: np.ndarray


@dataclass
class _Batch:
    """The batch's points in one array (curve k: bounds[k]:bounds[k + 1]); the same sorted by (curve,
    band), each band's points in time order (t_by_band[seg_start[k, b]:][:counts[k, b]]); per-band
    statistics [curve, band]: largest |flux| and flux (0 without points), 5% and 95% quantiles; the
    standardised fluxes and errors of `_Prepared`, in the batch's order."""

    t: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    band: np.ndarray
    bounds: np.ndarray
    std_flux: np.ndarray
    std_err: np.ndarray
    t_by_band: np.ndarray
    flux_by_band: np.ndarray
    err_by_band: np.ndarray
    seg_start: np.ndarray
    counts: np.ndarray
    abs_max: np.ndarray
    flux_max: np.ndarray
    p05: np.ndarray
    p95: np.ndarray


def _concatenated(curves: Sequence[LightCurveLike]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t, flux, flux_err, band) of all curves in one array each, and the bounds of curve k
    (bounds[k]:bounds[k + 1])."""
    flat = [np.concatenate([np.asarray(getattr(c, k), dtype) for c in curves] or [np.empty(0, dtype)])
            for k, dtype in (("t", np.float64), ("flux", np.float64), ("flux_err", np.float64),
                             ("band", np.int64))]
    return *flat, np.concatenate([[0], np.cumsum([len(c.t) for c in curves], dtype=np.int64)])


def radix_sortable(group: np.ndarray, n_groups: int) -> np.ndarray:
    """`group` (ints in [0, n_groups)) as int16 when they fit (a stream batch has < 5,461 curves),
    which NumPy's stable sort orders by radix: a value sort, then a stable sort by group, gives
    np.lexsort's permutation in a third to a half of its time."""
    return group.astype(np.int16) if n_groups <= np.iinfo(np.int16).max else group


def _prepare_batch(curves: Sequence[LightCurveLike]) -> tuple[list[_Prepared], _Batch]:
    """Every curve's `_Prepared`, computed for the whole batch at once: the points of all curves in
    one array, each (curve, band) a segment of one sort. The numbers are those of one curve alone:
    the quantile arithmetic uses each segment's position within its own curve."""
    n_bands = len(BANDS)
    t, flux, err, band, bounds = _concatenated(curves)
    lengths, offsets = np.diff(bounds), bounds[:-1]
    key = np.repeat(np.arange(len(curves)), lengths) * n_bands + band  # (curve, band) segment
    counts = np.bincount(key, minlength=len(curves) * n_bands)
    start = np.cumsum(counts) - counts  # of each segment in the batch
    local = start - np.repeat(offsets, n_bands)  # ... and within its curve
    present = counts > 0
    segment = radix_sortable(key, len(counts))

    def quantiles(values: np.ndarray, qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Per-segment quantiles [len(qs), segments] (NaN where empty) and maxima (0 where empty)."""
        # each segment's values in ascending order: by value (ties are equal values, so any order
        # of them will do), then stably by segment
        by_value = np.argsort(values)
        ordered = values[by_value[np.argsort(segment[by_value], kind="stable")]]
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
    prepared = [_Prepared(t[a:b], std_flux[a:b], std_err[a:b])
                for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    stats = (x.reshape(-1, n_bands) for x in (start, counts, abs_max, flux_max, p05, p95))
    return prepared, _Batch(t, flux, err, band, bounds, std_flux, std_err,
                            t[in_time], flux[in_time], err[in_time], *stats)


SIDEREAL_DAY_FREQ = 1.0027379  # cycles/d: nightly sampling aliases a frequency f to f +- k * this
ALIAS_ORDERS = np.arange(-2, 3)
# The two periods read are fitted again at +-1/4 and +-1/2 of the grid's spacing
REFINE_UNIT = 0.25  # of the grid's spacing
REFINE_ORDERS = np.array([-2, -1, 1, 2])
MAX_POINTS_ALIAS = 200  # the alias choice needs the shape, not every point: bounds the cost
# Periods where RR Lyrae pulsate (RRc ~0.2 d to long RRab ~1 d). With a year of noisy photometry the
# best-fitting candidate is often an alias, while the true period is still among the candidates
# (EROS-1 RR Lyrae: 82% among 8 peaks); the best fit inside this range and how much worse it is than
# the best overall tell a classifier what the winner alone hides.
RRL_PERIOD_RANGE_D = (0.2, 1.0)


@dataclass
class PeriodFits:
    """3-harmonic Fourier fits of a batch's curves at their candidate frequencies (cycles/d):
    [curve, candidate] arrays, NaN frequency and infinite chi2 where a curve has fewer candidates."""

    freqs: np.ndarray
    chi2: np.ndarray  # weighted chi2 at each frequency
    chi2_const: np.ndarray  # [curve] of a constant: 1 - chi2 / chi2_const is the variance explained
    coef: np.ndarray  # [curve, candidate, 7]: constant, then (sin, cos) of harmonics 1..3

    @functools.cached_property
    def _best(self) -> tuple[np.ndarray, np.ndarray]:
        return _best_candidates(self.freqs, self.chi2)

    @property
    def best(self) -> np.ndarray:
        """[curve] the best-fitting candidate."""
        return self._best[0]

    @property
    def best_in_rrl_range(self) -> np.ndarray:
        """[curve] the best candidate in RRL_PERIOD_RANGE_D, -1 if no candidate is."""
        return self._best[1]

    @property
    def fitted(self) -> np.ndarray:
        """[curve] False: too short, no peak or constant (its features are NaN)."""
        with np.errstate(invalid="ignore"):
            return self.chi2_const > 0

    def shape(self, k: np.ndarray) -> list[np.ndarray]:
        """R21, R31, phi21, phi31 and the variance explained at candidate k[curve] of each curve."""
        rows = np.arange(len(k))
        c = self.coef[rows, k]
        amps = np.hypot(c[:, 1::2], c[:, 2::2])
        phases = np.arctan2(c[:, 2::2], c[:, 1::2])
        out = [amps[:, 1] / amps[:, 0], amps[:, 2] / amps[:, 0],
               (phases[:, 1] - 2 * phases[:, 0]) % (2 * np.pi),
               (phases[:, 2] - 3 * phases[:, 0]) % (2 * np.pi),
               1 - self.chi2[rows, k] / self.chi2_const]
        defined = amps[:, 0] > 0
        return [np.where(defined, x, np.nan) for x in out]


def period_fits(t: np.ndarray, f: np.ndarray, err: np.ndarray, bounds: np.ndarray, peak_periods: np.ndarray
                ) -> PeriodFits:
    """Each curve's periodogram peaks and their 1- and 2-day aliases, fitted by a 3-harmonic series
    (curve k: points bounds[k]:bounds[k + 1] of t, f, err; its peaks peak_periods[k]). Nightly
    sampling makes f and f +- 1/day look alike to a sinusoid; a non-sinusoidal curve (an RRab) fits
    clearly better at its true frequency. A peak is known to half a grid step only (an eighth of a
    cycle over the baseline at four samples per peak), which blurs a sawtooth's harmonics: the two
    candidates the features read (best, best in the RR Lyrae range) are fitted again around their
    frequency, those fits appended. Compiled, the whole batch in two calls."""
    peak_periods = np.asarray(peak_periods, np.float64)
    lengths = np.diff(bounds)
    with np.errstate(divide="ignore"):
        base = np.where(np.isfinite(peak_periods) & (peak_periods > 0), 1 / peak_periods, np.nan)
    base[lengths < MIN_POINTS_FOURIER] = np.nan  # no candidates
    keep = np.repeat(lengths >= MIN_POINTS_FOURIER, lengths)
    # evenly thinned: keeps the baseline, so the precision
    for k in np.flatnonzero(lengths > MAX_POINTS_ALIAS):
        keep[bounds[k]:bounds[k + 1]] = False
        keep[bounds[k] + np.linspace(0, lengths[k] - 1, MAX_POINTS_ALIAS).astype(np.int64)] = True
    step = 1 / MIN_PERIOD_D / 2.0 ** grid_powers(_baselines(t, bounds))  # thinning keeps the ends
    t, f, err = t[keep], f[keep], err[keep]
    kept = np.bincount(np.repeat(np.arange(len(lengths)), lengths)[keep], minlength=len(lengths))
    bounds = np.concatenate([[0], np.cumsum(kept)])
    fits = PeriodFits(*harmonics.fit(t, f, err, bounds, base, np.full(len(lengths), SIDEREAL_DAY_FREQ),
                                     ALIAS_ORDERS, 0.01, 1 / MIN_PERIOD_D))
    rows = np.arange(len(lengths))
    k = fits.best_in_rrl_range
    read = np.stack([fits.freqs[rows, fits.best], fits.freqs[rows, np.where(k >= 0, k, fits.best)]], axis=1)
    near_freqs, near_chi2, _, near_coef = harmonics.fit(t, f, err, bounds, read, REFINE_UNIT * step,
                                                        REFINE_ORDERS)
    return PeriodFits(np.concatenate([fits.freqs, near_freqs], axis=1),
                      np.concatenate([fits.chi2, near_chi2], axis=1), fits.chi2_const,
                      np.concatenate([fits.coef, near_coef], axis=1))


def _baselines(t: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Each curve's time span (curve k: t[bounds[k]:bounds[k + 1]]); 0 for a curve without points."""
    lengths = np.diff(bounds)
    if len(t) == 0:
        return np.zeros(len(lengths))
    first, last = t[np.minimum(bounds[:-1], len(t) - 1)], t[np.maximum(bounds[1:] - 1, 0)]
    return np.where(lengths > 0, last - first, 0.0)


def _best_candidates(freqs: np.ndarray, chi2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [G, candidates]: the best-fitting candidate, and the best in the RR Lyrae range
    (-1 where no candidate is in it)."""
    lo, hi = RRL_PERIOD_RANGE_D
    in_range = (freqs >= 1 / hi) & (freqs <= 1 / lo)
    best_in_range = np.where(in_range, chi2, np.inf).argmin(axis=1)
    return chi2.argmin(axis=1), np.where(in_range.any(axis=1), best_in_range, -1)


def _period_columns(periods: np.ndarray, fits: PeriodFits) -> np.ndarray:
    """PERIOD_NAMES, FOURIER_NAMES and RRL_NAMES of every curve [curve, 19]: the periodogram's two
    highest peaks and whether they are 1-day aliases of each other; the best-fitting period, whether
    it is an alias of the top peak, its Fourier shape; then the same for the best candidate in the
    RR Lyrae range, and how much worse that fits than the best overall."""
    p0, s0, p1, s1 = periods[:, :4].T
    # 1-day aliases: frequencies one or two cycles per day apart (nightly sampling)
    alias = np.where((p0 > 0) & (p1 > 0), np.abs(1 / p0 - 1 / p1), np.nan)
    is_alias = np.where(np.isfinite(alias), (np.abs(alias - 1) < 0.05) | (np.abs(alias - 2) < 0.05), np.nan)
    rows = np.arange(len(periods))
    best, k = fits.best, fits.best_in_rrl_range
    best_freq = fits.freqs[rows, best]
    k_or_best = np.where(k >= 0, k, best)
    deficit = (fits.chi2[rows, k_or_best] - fits.chi2[rows, best]) / fits.chi2_const
    r21, r31, phi21, phi31, explained = fits.shape(k_or_best)
    rrl = [_log10(1 / fits.freqs[rows, k_or_best]), explained, deficit, r21, r31, phi21, phi31]
    rrl = [np.where(k >= 0, x, np.nan) for x in rrl]
    from_fits = [_log10(1 / best_freq), (np.abs(best_freq - 1 / p0) > 0.01).astype(np.float64),
                 *fits.shape(best), *rrl]
    from_fits = [np.where(fits.fitted, x, np.nan) for x in from_fits]
    return np.column_stack([_log10(p0), s0, _log10(p1), s1, is_alias, *from_fits])


def _log10(x: np.ndarray) -> np.ndarray:
    return np.where((x > 0) & np.isfinite(x), np.log10(np.where(x > 0, x, 1.0)), np.nan)


def _check_templates() -> None:
    if (names := templates.load()[0]) != TEMPLATE_TYPES:
        raise ValueError(f"{templates.TEMPLATES_PATH} holds templates {names}, the features expect "
                         f"{TEMPLATE_TYPES}: run `alert-classifier train`")


def template_features(curves: Sequence[LightCurveLike]) -> np.ndarray:
    """The TEMPLATE_NAMES columns of `extract` alone (float32 [len(curves), len(TEMPLATE_NAMES)]),
    from the templates active now: training's calibration folds recompute them with templates
    built without the fold's objects."""
    _check_templates()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = _template_columns(templates.fit_many(*_concatenated(curves))).astype(np.float32)
    out[np.isinf(out)] = np.nan
    return out


def _template_columns(fits: np.ndarray) -> np.ndarray:
    """TEMPLATE_NAMES from `templates.fit_many`'s [curve, type, FIT_COLUMNS]: what each template
    leaves unexplained, the Ia template against the others, the Ia fit's stretch and colour."""
    left = fits[:, :, 0]
    ia, ii, ibc = left.T
    return np.column_stack([left, np.where(ii > 0, np.log10(ia / ii), np.nan),
                            np.where(ibc > 0, np.log10(ia / ibc), np.nan), fits[:, 0, 1:]])


@dataclass
class _Curve:
    t: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray


def warm_up() -> None:
    """Compile the feature kernels (numba: ~7 s the first time on a machine, then read from its
    cache in ~0.3 s) by extracting one small curve, so that a service's first batch is not slow."""
    t0 = time.monotonic()
    t = np.arange(12.0)
    extract([_Curve(t, np.sin(t) + 2.0, np.ones(12), np.arange(12) % 3 + 1)])
    if (took := time.monotonic() - t0) > 1.0:
        log.info("feature kernels compiled in %.1f s (numba caches them: later starts take ~0.3 s)", took)


# Curves per call of a Rust extractor. A call holds the GIL throughout, so an HTTP server's event
# loop sharing the process would wait for all of a 500-curve batch (~200 ms); calls of 32 curves
# keep that wait ~10 ms. Each call also starts and stops its own threads (n_jobs of them): a stream
# worker alone in its process makes one call per extractor for the whole batch (chunk=None).
MANY_CHUNK = 32


def extract(curves: Sequence[LightCurveLike], *, n_jobs: int = 1, chunk: int | None = MANY_CHUNK
            ) -> np.ndarray:
    """Features of many light curves: float32 [len(curves), len(FEATURE_NAMES)], NaN where undefined.

    The Rust extractors run over the batch (`many`) `chunk` curves a call (None: all in one call),
    in parallel when n_jobs > 1.
    """
    # Undefined features (0/0, log of 0, overflow) are NaN by design: no warning per alert in the logs.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _extract(curves, n_jobs, chunk or max(len(curves), 1))


def grid_powers(baselines_d: np.ndarray) -> np.ndarray:
    """log2 of the periodogram grid for curves spanning `baselines_d` days: the smallest of
    GRID_POWERS whose spacing puts SAMPLES_PER_PEAK samples across a peak, the finest beyond a year."""
    # grid intervals up to 1/MIN_PERIOD_D cycles/d
    needed = SAMPLES_PER_PEAK * np.asarray(baselines_d, np.float64) / MIN_PERIOD_D
    power = np.ceil(np.log2(np.fmax(needed, 1.0)))  # fmax: an undefined baseline gets the coarsest grid
    return np.clip(power, GRID_POWERS[0], GRID_POWERS[-1]).astype(np.int64)


def periodogram_peaks(t: np.ndarray, f: np.ndarray, err: np.ndarray, bounds: np.ndarray, n_jobs: int = 1,
                      chunk: int = MANY_CHUNK) -> np.ndarray:
    """(period, signal-to-noise) of the N_PEAKS highest peaks of each curve (curve k: points
    bounds[k]:bounds[k + 1] of t, f, err), each on its baseline's grid (curves sharing a grid in one
    call); NaN for curves under MIN_POINTS_PERIOD. Powers computed in float32: ~35% faster than
    float64, and a peak is located to a grid step either way."""
    lengths = np.diff(bounds)
    out = np.full((len(lengths), 2 * N_PEAKS), np.nan)
    idx = np.flatnonzero(lengths >= MIN_POINTS_PERIOD)
    if len(idx) == 0:
        return out
    # times from each curve's first point: an MJD in float32 is only known to ~6 minutes
    first = t[np.minimum(bounds[:-1], len(t) - 1)]
    t32 = (t - np.repeat(first, lengths)).astype(np.float32)
    f32, err32 = f.astype(np.float32), err.astype(np.float32)
    powers = grid_powers(_baselines(t, bounds)[idx])
    for power in np.unique(powers).tolist():
        chosen = idx[powers == power]
        single = [(t32[a:b], f32[a:b], err32[a:b])
                  for a, b in zip(bounds[chosen].tolist(), bounds[chosen + 1].tolist(), strict=True)]
        found = _many(_PERIODOGRAMS[power], single, n_jobs, chunk).astype(np.float64)
        # a peak is a grid point: its period from the float64 grid, as a float64 periodogram gives it
        grid = PERIOD_GRIDS[power]
        with np.errstate(divide="ignore", invalid="ignore"):
            on_grid = np.rint(2 * np.pi / found[:, 0::2] / grid[1])
        peak = np.isfinite(on_grid) & (on_grid > 0) & (on_grid < len(grid))
        found[:, 0::2] = np.where(peak, 2 * np.pi / grid[np.where(peak, on_grid, 1).astype(np.int64)], np.nan)
        out[chosen] = found
    return out


def _many(extractor, items: list, n_jobs: int, chunk: int) -> np.ndarray:
    return np.concatenate([extractor.many(items[i:i + chunk], fill_value=np.nan, sorted=True,
                                          check=False, n_jobs=n_jobs)
                           for i in range(0, len(items), chunk)])


def _extract(curves: Sequence[LightCurveLike], n_jobs: int, chunk: int) -> np.ndarray:
    n = len(curves)
    out = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    _check_templates()  # once a batch, not once a curve
    prepared, batch = _prepare_batch(curves)
    std = [(p.t, p.std_flux, p.std_err) for p in prepared]

    shape_idx = [i for i, (t, _, _) in enumerate(std) if len(t) >= MIN_POINTS_SHAPE]
    if shape_idx:
        out[shape_idx, :len(SHAPE_NAMES)] = _many(_SHAPE, [std[i] for i in shape_idx], n_jobs, chunk)

    # (period, signal-to-noise) per peak
    periods = periodogram_peaks(batch.t, batch.std_flux, batch.std_err, batch.bounds, n_jobs, chunk)
    # Reference band for the supernova fit: the one with most points, scaled by its largest |flux|.
    ref = []
    for k, b in enumerate(batch.counts.argmax(axis=1).tolist()):
        s = slice(batch.seg_start[k, b], batch.seg_start[k, b] + batch.counts[k, b])
        largest = batch.abs_max[k, b]
        scale = largest if largest > 0 else 1.0
        ref.append((batch.t_by_band[s], batch.flux_by_band[s] / scale,
                    np.maximum(batch.err_by_band[s] / scale, 1e-6)))
    bazin_idx = [i for i, r in enumerate(ref) if len(r[0]) >= 6]
    bazin = np.full((n, 6), np.nan)
    if bazin_idx:
        bazin[bazin_idx] = _many(_BAZIN, [ref[i] for i in bazin_idx], n_jobs, chunk)

    # NaN peaks (too few points) give no candidates, so NaN features
    col = len(SHAPE_NAMES)
    fits = period_fits(batch.t, batch.std_flux, batch.std_err, batch.bounds, periods[:, 0::2])
    columns = _period_columns(periods, fits)
    out[:, col:col + columns.shape[1]] = columns
    # TRANSIENT_NAMES to COUNT_NAMES: compiled, for the whole batch in one call
    col = FEATURE_NAMES.index(TRANSIENT_NAMES[0])
    out[:, col:col + feature_groups.N_COLUMNS] = feature_groups.curve_groups(
        batch.t, batch.flux, batch.band, batch.bounds, batch.t_by_band, batch.flux_by_band, batch.seg_start,
        batch.counts, batch.abs_max, batch.flux_max, batch.p05, batch.p95, bazin,
        _PAIR_A, _PAIR_B)
    out[:, -len(TEMPLATE_NAMES):] = _template_columns(
        templates.fit_many(batch.t, batch.flux, batch.err, batch.band, batch.bounds))
    out[np.isinf(out)] = np.nan  # overflow (a ratio beyond float32) is as undefined as 0/0
    return out
