"""Alert -> light curve: per-point arrays (t MJD TAI, flux nJy, flux_err nJy, band index).

Built from `diaSource` + `prvDiaSources` (+ `prvDiaForcedSources` on request), deduplicated by
source id, sorted by time. Points whose flux, error, time, band or id is null, NaN, infinite,
out of range (error <= 0) or unknown are dropped and counted, never silently zero-filled. An alert
carries 12 months of history; `with_history` adds the older detections a store kept from the
object's earlier alerts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from streaming.decode import MJD_MAX, MJD_MIN, Alert, field_names

BANDS = ("u", "g", "r", "i", "z", "y")
BAND_INDEX = {b: i for i, b in enumerate(BANDS)}


@dataclass(slots=True)
class LightCurve:
    """One object's photometry, sorted by time. `band` holds indices into BANDS."""

    t: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray
    n_input: int = 0
    n_dropped: int = 0
    n_duplicates: int = 0
    #: diaSourceId of each point; -1 for forced photometry and curves not built from alerts
    source_id: np.ndarray | None = None
    n_stored: int = 0  # points that came from the store's history, not the alert

    def __len__(self) -> int:
        return len(self.t)

    def in_band(self, band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mask = self.band == BAND_INDEX[band]
        return self.t[mask], self.flux[mask], self.flux_err[mask]

    @classmethod
    def from_arrays(cls, t, flux, flux_err, band) -> LightCurve:
        """From already-clean arrays (training data, tests); band as names or indices."""
        band = np.asarray(band)
        if band.dtype.kind in "US":
            band = np.array([BAND_INDEX[b] for b in band], dtype=np.int8)
        order = np.argsort(t, kind="stable")
        return cls(np.asarray(t, np.float64)[order], np.asarray(flux, np.float64)[order],
                   np.asarray(flux_err, np.float64)[order], band.astype(np.int8)[order],
                   n_input=len(order))


# A difference flux beyond this (brighter than AB magnitude 1.4) is a broken value, not a star:
# Rubin saturates near magnitude 16.
FLUX_MAX_NJY = 1e12


def _usable(t: object, flux: object, err: object) -> bool:
    """A point is kept only if every value can be right: finite, a positive error, a plausible time
    and flux. The alert's own position and time were checked at decode."""
    try:
        return (math.isfinite(t) and MJD_MIN <= t <= MJD_MAX and math.isfinite(flux)
                and abs(flux) <= FLUX_MAX_NJY and math.isfinite(err) and 0.0 < err <= FLUX_MAX_NJY)
    except TypeError:  # None: not measured
        return False


def light_curve(alert: Alert, *, forced: bool = False) -> LightCurve:
    if alert.curve is not None and not forced:
        return alert.curve  # built by the bulk decoder
    names = field_names(alert.version)
    record = alert.record
    sources = [record["diaSource"], *(record.get("prvDiaSources") or [])]
    rows: list[tuple[float, float, float, int]] = []
    ids: list[int] = []
    seen: set[int] = set()
    n_input = len(sources)
    dropped = duplicates = 0
    for src in sources:
        sid = src["diaSourceId"]
        if sid in seen:
            duplicates += 1
            continue
        seen.add(sid)
        t, f, e, b = src[names.time], src.get(names.flux), src.get(names.flux_err), src.get(names.band)
        if _usable(t, f, e) and b in BAND_INDEX and isinstance(sid, int) and sid > 0:
            rows.append((t, f, e, BAND_INDEX[b]))
            ids.append(sid)
        else:
            dropped += 1
    if forced:
        # Forced photometry has its own id space; a forced point at the epoch and band of a
        # detection measures the same exposure, so it counts as a duplicate.
        epochs = {(round(r[0], 6), r[3]) for r in rows}
        seen_forced: set[int] = set()
        for src in record.get("prvDiaForcedSources") or []:
            n_input += 1
            fid = src["diaForcedSourceId"]
            t, f, e, b = src[names.time], src.get(names.flux), src.get(names.flux_err), src.get(names.band)
            key = (round(t, 6), BAND_INDEX.get(b, -1)) if isinstance(t, float) and math.isfinite(t) else None
            if fid in seen_forced or key in epochs:
                duplicates += 1
                continue
            seen_forced.add(fid)
            if _usable(t, f, e) and b in BAND_INDEX:
                rows.append((t, f, e, BAND_INDEX[b]))
                ids.append(-1)
                epochs.add(key)
            else:
                dropped += 1
    if rows:
        arr = np.array(rows, dtype=np.float64)
        order = np.argsort(arr[:, 0], kind="stable")
        arr = arr[order]
        t, flux, err, band = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3].astype(np.int8)
        source_id = np.array(ids, dtype=np.int64)[order]  # apart: float64 would round 64-bit ids
    else:
        t = flux = err = np.empty(0)
        band = np.empty(0, np.int8)
        source_id = np.empty(0, np.int64)
    return LightCurve(t, flux, err, band, n_input=n_input, n_dropped=dropped, n_duplicates=duplicates,
                      source_id=source_id)


def with_history(curve: LightCurve, stored: LightCurve | None, until_mjd: float) -> LightCurve:
    """The alert's curve plus the stored detections it lacks (by source id), up to the alert's own
    time: a replayed old alert never sees its future."""
    if stored is None or not len(stored) or curve.source_id is None:
        return curve
    add = (stored.t <= until_mjd) & ~np.isin(stored.source_id, curve.source_id)
    if not add.any():
        return curve
    t = np.concatenate([stored.t[add], curve.t])
    order = np.argsort(t, kind="stable")

    def merged(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a[add], b])[order]

    return LightCurve(t[order], merged(stored.flux, curve.flux), merged(stored.flux_err, curve.flux_err),
                      merged(stored.band, curve.band), n_input=curve.n_input, n_dropped=curve.n_dropped,
                      n_duplicates=curve.n_duplicates,
                      source_id=merged(stored.source_id, curve.source_id), n_stored=int(add.sum()))


def unstored(curve: LightCurve, stored: LightCurve | None) -> np.ndarray:
    """Which of the curve's detections the store does not hold yet (a mask; forced points are not
    kept)."""
    if curve.source_id is None:
        return np.zeros(len(curve), bool)
    new = curve.source_id >= 0
    if stored is not None and len(stored):
        new &= ~np.isin(curve.source_id, stored.source_id)
    return new


def light_curves(alerts: Iterable[Alert], *, forced: bool = False) -> list[LightCurve]:
    """Batch form: one light curve per alert, in order."""
    return [light_curve(a, forced=forced) for a in alerts]
