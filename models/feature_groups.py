"""The per-curve feature groups of `models.features.extract`, compiled with numba: transient shape,
colours, declines, phases, early rise, slopes and counts of every curve of a batch in one call.

These were per-curve numpy code, where a 30-point curve spent most of its ~200 us in numpy's call
overhead rather than arithmetic. Each function keeps the numpy version's formula, operation for
operation where it matters (np.interp, first-maximum argmax, NaN where a feature is undefined);
sums may differ from numpy's pairwise ones in the last bit.

Arrays per curve: `t`, `flux`, `band` in time order; per band, `tb[b]`/`fb[b]` its points in time order.
"""

from __future__ import annotations

import math

import numba
import numpy as np

N_BANDS = 6
COLOUR_PAIRS = ((0, 1), (1, 2), (2, 3), (3, 4), (1, 3))  # u-g, g-r, r-i, i-z, g-i
PEAK_WINDOW_D = 5.0  # the peak colour: each band's largest flux within this of the overall peak
LATE_WINDOW_D = (10.0, 40.0)  # days after the peak: where Ia and core-collapse curves part ways
EVOLUTION_BANDS = (1, 2, 3)  # g, r, i: where supernovae are best sampled
# Interpolated at fixed days from the peak: per-band declines (a Delta-m15-like rate and the same at
# 30 d), colours before and after the peak, and the i/r flux at 30 vs 15 d (SN Ia rise again in i).
PHASE_BANDS = (1, 2, 3, 4)  # g, r, i, z
PHASE_DAYS = (-5.0, 15.0, 30.0)  # from the reference peak
PHASE_COLOURS = ((1, 2, -5.0), (1, 2, 15.0), (1, 2, 30.0), (2, 3, 15.0), (2, 3, 30.0), (2, 4, 15.0))
_PHASE_COLOUR_DAYS = tuple((a, b, PHASE_DAYS.index(d)) for a, b, d in PHASE_COLOURS)
PAIR_TOLERANCE_D = 2.0  # points of two bands this close in time make a colour
# Magnitude slopes before and after each band's own peak, from every point in the window: unlike the
# interpolated declines they exist as soon as two points follow the peak, which on real ZTF curves
# (g fades below the limit within a month) is most of the time. (2.0.0; BTS training split, 5-fold
# CV: Ia vs core-collapse AUC 0.836 -> 0.845.)
SLOPE_BANDS = (1, 2)  # g and r: the bands ZTF and Rubin share, where supernovae are best sampled
POST_PEAK_WINDOW_D = 60.0
MIN_SLOPE_SPAN_D = (2.0, 5.0)  # before, after the peak
N_COLUMNS = 9 + 2 * len(COLOUR_PAIRS) + 5 + 16 + 7 + 7 + 3

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _log10(x):
    return math.log10(x) if x > 0 and math.isfinite(x) else np.nan


@_jit
def _mag_ratio(a, b):
    return -2.5 * math.log10(a / b) if a > 0 and b > 0 else np.nan


@_jit
def _ratio_as_mag(ratio):
    """-2.5 log10(ratio), NaN where not finite (a ratio of 0, infinity or NaN)."""
    mag = -2.5 * math.log10(ratio) if ratio > 0 else np.nan
    return mag if math.isfinite(mag) else np.nan


@_jit
def _argmax(x):
    """numpy's argmax: the first maximum, or the first NaN."""
    best, k = x[0], 0
    if best != best:
        return 0
    for i in range(1, len(x)):
        if x[i] != x[i]:
            return i
        if x[i] > best:
            best, k = x[i], i
    return k


@_jit
def _max(x):
    """numpy's max: NaN if any is NaN."""
    return x[_argmax(x)]


@_jit
def _mean(x):
    return x.sum() / len(x)


@_jit
def _slope(x, y):
    """Least-squares slope of y on x (closed form)."""
    dx = x - _mean(x)
    return (dx * (y - _mean(y))).sum() / (dx * dx).sum()


@_jit
def _interp(when, t, f):
    """np.interp(when, t, f) inside [t[0], t[-1]] (its formula and its special cases), NaN outside:
    never extrapolated."""
    if not (when >= t[0] and when <= t[-1]):
        return np.nan
    if when >= t[-1]:
        return f[-1]
    j = np.searchsorted(t, when, side="right") - 1  # t[j] <= when < t[j + 1]
    if t[j] == when:
        return f[j]
    slope = (f[j + 1] - f[j]) / (t[j + 1] - t[j])
    value = slope * (when - t[j]) + f[j]
    if value != value:
        value = slope * (when - t[j + 1]) + f[j + 1]
        if value != value and f[j] == f[j + 1]:
            value = f[j]
    return value


@_jit
def _transient(t, flux, band, abs_max, bazin, out):
    """Bazin fit's shape, rise and decline times, width above half the peak, share of positive
    fluxes, peak over the deepest negative flux: 9 columns."""
    n = len(t)
    if n == 0:
        return
    positive = 0
    for x in flux:
        positive += x > 0
    out[7] = positive / n
    peak_flux = _max(flux)
    if n < 2 or not peak_flux > 0:
        return
    i_peak = _argmax(flux / np.maximum(abs_max, 1e-12)[band])  # peak relative to each band's own scale
    above_first, above_last = np.nan, np.nan
    for i in range(n):
        if band[i] == band[i_peak] and flux[i] >= 0.5 * flux[i_peak]:
            if above_first != above_first:
                above_first = t[i]
            above_last = t[i]
    amp, baseline, rise, fall, chi2 = bazin[0], bazin[1], bazin[3], bazin[4], bazin[5]
    min_flux = flux.min()
    out[0], out[1], out[2] = _log10(rise), _log10(fall), _log10(chi2)
    out[3] = baseline / amp if math.isfinite(amp) and amp != 0 else np.nan
    out[4] = _log10(t[i_peak] - t[0] + 0.01)
    out[5] = _log10(t[-1] - t[i_peak] + 0.01)
    out[6] = _log10(above_last - above_first + 0.01) if above_first == above_first else np.nan
    out[8] = _log10(peak_flux / abs(min_flux)) if min_flux < 0 else _log10(1e3)


@_jit
def _colours(t, flux, band, counts, p05, p95, pair_a, pair_b, out):
    """Ratios between bands as magnitudes: of the 5-95% range, and of the flux near the peak."""
    spread = np.full(N_BANDS, np.nan)
    for b in range(N_BANDS):
        if counts[b] >= 3:
            spread[b] = p95[b] - p05[b]
    peak = np.full(N_BANDS, np.nan)
    if len(flux) and _max(flux) > 0:
        t_peak = t[_argmax(flux)]
        near = np.full(N_BANDS, -np.inf)
        for i in range(len(t)):
            if abs(t[i] - t_peak) < PEAK_WINDOW_D and not flux[i] <= near[band[i]]:
                near[band[i]] = flux[i]  # np.maximum: a NaN wins
        for b in range(N_BANDS):
            if near[b] > 0:
                peak[b] = near[b]
    k = len(pair_a)
    for j in range(k):
        out[j] = _ratio_as_mag(spread[pair_a[j]] / spread[pair_b[j]])
        out[k + j] = _ratio_as_mag(peak[pair_a[j]] / peak[pair_b[j]])


@_jit
def _late_mean(t, f, after, lo, hi):
    """Mean flux of the points more than lo and less than hi days after `after` (NaN: none)."""
    total, n = 0.0, 0
    for i in range(len(t)):
        if t[i] > after + lo and t[i] < after + hi:
            total += f[i]
            n += 1
    return total / n if n else np.nan


@_jit
def _evolution(t, flux, tb, fb, out):
    """How fast g, r and i decline after their own peaks (log10 of peak over the mean flux 10-40
    days later) and the g-r, r-i colours over that window after the overall peak: 5 columns."""
    lo, hi = LATE_WINDOW_D
    for j in range(3):
        t_b, f_b = tb[EVOLUTION_BANDS[j]], fb[EVOLUTION_BANDS[j]]
        if len(t_b) < 2:
            continue
        i = _argmax(f_b)
        if f_b[i] > 0:
            late = _late_mean(t_b, f_b, t_b[i], lo, hi)
            if late == late:
                floor = 0.01 * f_b[i]
                out[j] = math.log10(f_b[i] / (floor if floor > late else late))  # Python's max
    late_flux = np.full(N_BANDS, np.nan)
    if len(flux):
        i_peak = _argmax(flux)
        if flux[i_peak] > 0:
            for b in (1, 2, 3):
                if len(tb[b]):
                    late_flux[b] = _late_mean(tb[b], fb[b], t[i_peak], lo, hi)
    out[3] = _ratio_as_mag(late_flux[1] / late_flux[2])
    out[4] = _ratio_as_mag(late_flux[2] / late_flux[3])


@_jit
def _phases(tb, fb, flux_max, out):
    """Declines 15 and 30 days after each band's own peak, colours at fixed days from the
    reference peak (r's, else the best-sampled band's), i and r at 30 over 15 days: 16 columns."""
    usable = np.zeros(N_BANDS, np.bool_)
    ref, ref_n = -1, -1
    for b in range(N_BANDS):
        usable[b] = len(tb[b]) >= 2 and flux_max[b] > 0
        if usable[b] and len(tb[b]) > ref_n:  # the first band with most points
            ref, ref_n = b, len(tb[b])
    if ref < 0:
        return
    if usable[2]:
        ref = 2
    t_peak = tb[ref][_argmax(fb[ref])]
    at_day = np.full((N_BANDS, len(PHASE_DAYS)), np.nan)
    n = len(PHASE_BANDS)
    for j in range(n):
        b = PHASE_BANDS[j]
        if not usable[b]:
            continue
        t_b, f_b = tb[b], fb[b]
        k = _argmax(f_b)
        out[j] = _mag_ratio(_interp(t_b[k] + 15.0, t_b, f_b), f_b[k])
        out[n + j] = _mag_ratio(_interp(t_b[k] + 30.0, t_b, f_b), f_b[k])
        for d in range(len(PHASE_DAYS)):
            at_day[b, d] = _interp(t_peak + PHASE_DAYS[d], t_b, f_b)
    for j in range(len(_PHASE_COLOUR_DAYS)):
        a, b, d = _PHASE_COLOUR_DAYS[j]
        out[2 * n + j] = _mag_ratio(at_day[a, d], at_day[b, d])
    out[2 * n + len(PHASE_COLOURS)] = _mag_ratio(at_day[3, 2], at_day[3, 1])
    out[2 * n + len(PHASE_COLOURS) + 1] = _mag_ratio(at_day[2, 2], at_day[2, 1])


@_jit
def _colour_pairs(ta, fa, tb, fb):
    """[time, colour a-b] for each point of band a with one of band b within PAIR_TOLERANCE_D."""
    pairs = np.empty((len(ta), 2))
    n = 0
    if len(tb) == 0:
        return pairs[:0]
    for i in range(len(ta)):
        after = min(np.searchsorted(tb, ta[i]), len(tb) - 1)
        before = max(after - 1, 0)
        j = before if abs(tb[before] - ta[i]) < abs(tb[after] - ta[i]) else after  # the nearer one
        if abs(tb[j] - ta[i]) <= PAIR_TOLERANCE_D and fa[i] > 0 and fb[j] > 0:
            pairs[n, 0] = (ta[i] + tb[j]) / 2
            pairs[n, 1] = -2.5 * math.log10(fa[i] / fb[j])
            n += 1
    return pairs[:n]


@_jit
def _rise_rate(t, f):
    """Brightening in magnitudes per day up to the band's peak (negative: rising), from the positive
    fluxes; NaN with fewer than two or within half a day."""
    k = _argmax(f) + 1
    keep = f[:k] > 0
    t, f = t[:k][keep], f[:k][keep]
    if len(t) < 2 or t[-1] - t[0] < 0.5:
        return np.nan
    return -2.5 * _slope(t, np.log10(f))


@_jit
def _early(tb, fb, pairs_gr, pairs_ri, out):
    """How fast g, r and i brighten, the latest g-r and r-i colours and how they change: 7 columns."""
    for j in range(3):
        if len(tb[j + 1]):
            out[j] = _rise_rate(tb[j + 1], fb[j + 1])
    for j in range(2):
        pairs = pairs_gr if j == 0 else pairs_ri
        if len(pairs):
            out[3 + j] = pairs[-1, 1]
        if len(pairs) >= 2 and pairs[-1, 0] - pairs[0, 0] > 0.5:
            out[5 + j] = _slope(pairs[:, 0].copy(), pairs[:, 1].copy())


@_jit
def _slopes(tb, fb, pairs_gr, out):
    """Magnitude slopes of g and r up to their peaks and over POST_PEAK_WINDOW_D after, the g-r
    difference of the declines, when g peaks relative to r, how fast g-r reddens after r's peak."""
    peaks = np.full(N_BANDS, np.nan)
    post = np.full(N_BANDS, np.nan)
    for j in range(len(SLOPE_BANDS)):
        b = SLOPE_BANDS[j]
        keep = fb[b] > 0
        t = tb[b][keep]
        if len(t) < 2:
            continue
        mag = -2.5 * np.log10(fb[b][keep])
        k = np.argmin(mag)  # the first minimum
        peaks[b] = t[k]
        before = t <= t[k]
        after = (t >= t[k]) & (t <= t[k] + POST_PEAK_WINDOW_D)
        t_in = t[before]
        if len(t_in) >= 2 and t_in[-1] - t_in[0] >= MIN_SLOPE_SPAN_D[0]:
            out[j] = _slope(t_in, mag[before])
        t_in = t[after]
        if len(t_in) >= 2 and t_in[-1] - t_in[0] >= MIN_SLOPE_SPAN_D[1]:
            post[b] = _slope(t_in, mag[after])
            out[2 + j] = post[b]
    out[4] = post[1] - post[2]  # NaN unless both
    out[5] = peaks[1] - peaks[2]
    if len(tb[1]) and len(tb[2]) and peaks[2] == peaks[2]:
        later = np.flatnonzero(pairs_gr[:, 0] >= peaks[2])
        if len(later) >= 2 and pairs_gr[later[-1], 0] - pairs_gr[later[0], 0] >= MIN_SLOPE_SPAN_D[1]:
            out[6] = _slope(pairs_gr[later, 0], pairs_gr[later, 1])


@_jit
def curve_groups(t, flux, band, bounds, t_by_band, flux_by_band, seg_start, counts, abs_max,
                 flux_max, p05, p95, bazin, pair_a, pair_b):
    """[curve, N_COLUMNS]: every group for every curve; curve k is points bounds[k]:bounds[k + 1],
    its band b points seg_start[k, b]:seg_start[k, b] + counts[k, b] of the per-band arrays; per-band
    statistics [curve, band]; bazin [curve, 6] the Bazin fit (amplitude, baseline, t0, rise, fall, chi2)."""
    out = np.full((len(bounds) - 1, N_COLUMNS), np.nan)
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        c_t, c_flux, c_band = t[lo:hi], flux[lo:hi], band[lo:hi]
        tb, fb = [], []
        for b in range(N_BANDS):
            s = seg_start[k, b]
            tb.append(t_by_band[s:s + counts[k, b]])
            fb.append(flux_by_band[s:s + counts[k, b]])
        row = out[k]
        _transient(c_t, c_flux, c_band, abs_max[k], bazin[k], row[0:9])
        c = 9 + 2 * len(pair_a)
        _colours(c_t, c_flux, c_band, counts[k], p05[k], p95[k], pair_a, pair_b, row[9:c])
        _evolution(c_t, c_flux, tb, fb, row[c:c + 5])
        _phases(tb, fb, flux_max[k], row[c + 5:c + 21])
        empty = np.empty((0, 2))
        pairs_gr = _colour_pairs(tb[1], fb[1], tb[2], fb[2]) if len(tb[1]) and len(tb[2]) else empty
        pairs_ri = _colour_pairs(tb[2], fb[2], tb[3], fb[3]) if len(tb[2]) and len(tb[3]) else empty
        _early(tb, fb, pairs_gr, pairs_ri, row[c + 21:c + 28])
        _slopes(tb, fb, pairs_gr, row[c + 28:c + 35])
        n = hi - lo
        row[c + 35] = _log10(n)
        row[c + 36] = _log10(c_t[-1] - c_t[0] + 0.01) if n else np.nan
        row[c + 37] = (counts[k] > 0).sum()
    return out
