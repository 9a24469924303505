"""3-harmonic Fourier series fitted by weighted least squares at many candidate frequencies per
curve, compiled with numba: the period features' alias choice (`models.features`).

A curve's candidates come in families: base frequencies (the periodogram's peaks, or the two
periods a feature reads) each shifted by whole multiples of one unit (the sidereal day's aliases, or
a quarter of the periodogram's grid step). The numpy version these replace evaluated sin and cos at
every (candidate, point): two libm calls each, most of its ~110 us per 30-point alert. Here one
complex exponential per base and one per unit give every candidate's phase by angle addition
(multiplications only), and each candidate's 7x7 normal equations are accumulated and solved by
Cholesky in place. The numbers equal numpy's to ~1e-13 (sums in another order); a matrix Cholesky
cannot factor (fewer distinct epochs than coefficients) is solved for the least-norm coefficients
instead, as numpy's pseudo-inverse did.
"""

from __future__ import annotations

import math

import numba
import numpy as np

N_COEF = 7  # constant, then (sin, cos) of harmonics 1..3
RIDGE = 1e-9  # added to the normal matrix's diagonal: a near-singular fit stays finite

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _fit_kernel(t, f, err, bounds, base, unit, orders, lowest, highest):
    n_curves, n_base = base.shape
    n_orders = len(orders)
    n_cand = n_base * n_orders
    freqs = np.full((n_curves, n_cand), np.nan)
    chi2 = np.full((n_curves, n_cand), np.inf)
    coef = np.full((n_curves, n_cand, N_COEF), np.nan)
    chi2_const = np.full(n_curves, np.nan)
    failed = np.zeros((n_curves, n_cand), np.bool_)
    max_order = 0
    for m in range(n_orders):
        max_order = max(max_order, abs(orders[m]))
    # candidates last: the sums over points run for every candidate at once in SIMD lanes (each
    # sum still adds its terms in point order, so the numbers are the same to the bit)
    normal = np.empty((28, n_cand))  # lower triangle, row by row
    rhs = np.empty((N_COEF, n_cand))
    xs = np.empty((N_COEF, n_cand))  # one point's weighted design row, per candidate
    x = np.empty(N_COEF)
    zc, zs = np.zeros(n_base), np.zeros(n_base)  # a NaN base's candidates are summed, never read
    uc, us = np.empty(2 * max_order + 1), np.empty(2 * max_order + 1)
    lo_mat = np.empty((N_COEF, N_COEF))
    for g in range(n_curves):
        lo, hi = bounds[g], bounds[g + 1]
        if hi == lo:
            continue
        valid = np.zeros(n_cand, np.bool_)
        for j in range(n_base):
            for m in range(n_orders):
                nu = base[g, j] + orders[m] * unit[g]
                if math.isfinite(nu) and lowest < nu < highest:
                    valid[j * n_orders + m] = True
                    freqs[g, j * n_orders + m] = nu
        if not valid.any():
            continue
        total, sw, sww = 0.0, 0.0, 0.0
        for p in range(lo, hi):
            w = 1.0 / err[p]
            fw = f[p] * w
            total += fw * fw
            sw += w * fw
            sww += w * w
        chi2_const[g] = total - sw * sw / sww
        normal[:] = 0.0
        rhs[:] = 0.0
        t0 = t[lo]
        for p in range(lo, hi):
            w = 1.0 / err[p]
            fw = f[p] * w
            dt = 2 * np.pi * (t[p] - t0)  # a small time origin: no precision lost to MJD ~ 6e4
            for j in range(n_base):
                if math.isfinite(base[g, j]):
                    zc[j], zs[j] = math.cos(base[g, j] * dt), math.sin(base[g, j] * dt)
            # exp(i k unit dt) for k = -max_order..max_order, by powers of one exponential
            c1, s1 = math.cos(unit[g] * dt), math.sin(unit[g] * dt)
            uc[max_order], us[max_order] = 1.0, 0.0
            for k in range(1, max_order + 1):
                uc[max_order + k] = uc[max_order + k - 1] * c1 - us[max_order + k - 1] * s1
                us[max_order + k] = us[max_order + k - 1] * c1 + uc[max_order + k - 1] * s1
                uc[max_order - k], us[max_order - k] = uc[max_order + k], -us[max_order + k]
            for j in range(n_base):  # every candidate, valid or not: no branch in the sums below
                for m in range(n_orders):
                    c = j * n_orders + m
                    a, b = uc[max_order + orders[m]], us[max_order + orders[m]]
                    cos1 = zc[j] * a - zs[j] * b
                    sin1 = zs[j] * a + zc[j] * b
                    sin2, cos2 = 2 * sin1 * cos1, cos1 * cos1 - sin1 * sin1
                    xs[0, c] = w
                    xs[1, c], xs[2, c] = sin1 * w, cos1 * w
                    xs[3, c], xs[4, c] = sin2 * w, cos2 * w
                    xs[5, c], xs[6, c] = (sin1 * cos2 + cos1 * sin2) * w, (cos1 * cos2 - sin1 * sin2) * w
            q = 0
            for r in range(N_COEF):
                for c in range(n_cand):
                    rhs[r, c] += xs[r, c] * fw
                for s in range(r + 1):
                    for c in range(n_cand):
                        normal[q, c] += xs[r, c] * xs[s, c]
                    q += 1
        for c in range(n_cand):
            if not valid[c]:
                continue
            q = 0
            for r in range(N_COEF):
                for s in range(r + 1):
                    lo_mat[r, s] = normal[q, c] + (RIDGE if r == s else 0.0)
                    q += 1
            ok = True
            for s in range(N_COEF):  # Cholesky: lo_mat's lower triangle becomes L
                d = lo_mat[s, s]
                for k in range(s):
                    d -= lo_mat[s, k] * lo_mat[s, k]
                if not d > 0:
                    ok = False
                    break
                d = math.sqrt(d)
                lo_mat[s, s] = d
                for r in range(s + 1, N_COEF):
                    v = lo_mat[r, s]
                    for k in range(s):
                        v -= lo_mat[r, k] * lo_mat[s, k]
                    lo_mat[r, s] = v / d
            if not ok:
                failed[g, c] = True
                continue
            for r in range(N_COEF):  # L y = rhs
                v = rhs[r, c]
                for k in range(r):
                    v -= lo_mat[r, k] * x[k]
                x[r] = v / lo_mat[r, r]
            for r in range(N_COEF - 1, -1, -1):  # L^T coef = y
                v = x[r]
                for k in range(r + 1, N_COEF):
                    v -= lo_mat[k, r] * coef[g, c, k]
                coef[g, c, r] = v / lo_mat[r, r]
            explained = 0.0
            for r in range(N_COEF):
                explained += rhs[r, c] * coef[g, c, r]
            chi2[g, c] = total - explained
    return freqs, chi2, chi2_const, coef, failed


def design(t: np.ndarray, err: np.ndarray, freq: float) -> np.ndarray:
    """The weighted design matrix [points, N_COEF] of one curve at one frequency (numpy)."""
    phase = 2 * np.pi * freq * (t - t[0])
    s1, c1 = np.sin(phase), np.cos(phase)
    s2, c2 = 2 * s1 * c1, c1 * c1 - s1 * s1
    columns = [np.ones_like(t), s1, c1, s2, c2, s1 * c2 + c1 * s2, c1 * c2 - s1 * s2]
    return np.column_stack(columns) / err[:, None]


def fit(t: np.ndarray, f: np.ndarray, err: np.ndarray, bounds: np.ndarray, base: np.ndarray,
        unit: np.ndarray, orders: np.ndarray, lowest: float = -np.inf, highest: float = np.inf
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fits of every curve (points bounds[g]:bounds[g + 1] of t, f, err) at the candidates
    base[g, j] + orders[m] * unit[g] strictly between `lowest` and `highest` (cycles/d), candidate
    j * len(orders) + m. Returns the candidates' frequencies [curves, candidates] (NaN: not a
    candidate), weighted chi2 (inf: not a candidate), the chi2 of a constant [curves] (NaN: no
    candidate) and the coefficients [curves, candidates, N_COEF]."""
    base = np.ascontiguousarray(base, np.float64)
    t, f, err = (np.ascontiguousarray(a, np.float64) for a in (t, f, err))
    bounds = np.ascontiguousarray(bounds, np.int64)
    freqs, chi2, chi2_const, coef, failed = _fit_kernel(
        t, f, err, bounds, base, np.ascontiguousarray(unit, np.float64),
        np.ascontiguousarray(orders, np.int64), float(lowest), float(highest))
    for g, c in zip(*np.nonzero(failed), strict=True):  # least-norm coefficients, as a pseudo-inverse
        s = slice(bounds[g], bounds[g + 1])
        a = design(t[s], err[s], freqs[g, c])
        fw = f[s] / err[s]
        coef[g, c] = np.linalg.lstsq(a, fw, rcond=None)[0]
        chi2[g, c] = float(np.sum((fw - a @ coef[g, c]) ** 2))
    return freqs, chi2, chi2_const, coef
