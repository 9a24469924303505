"""Research: what limits the two science targets still out of reach (docs/models.md, "Where the
science targets stand"). Not part of the service; nothing here chooses anything shipped.

    OMP_NUM_THREADS=2 .venv/bin/python docs/research/target_limits.py --data-dir ../shared/data

Builds the training and held-out views exactly as `alert-classifier train` does (seed 42; ~1 min,
cached) and prints one JSON line per measurement:

- `wfd`: simulated wide-fast-deep supernovae (the held-out PLAsTiCC objects `plasticc_wfd` judges,
  latest alert and whole history), Ia vs core-collapse AUC by the number of detections, for the
  shipped models (through the registry) and for an Ia-vs-CC model fitted on PLAsTiCC's wide-fast-deep
  training views alone (in-domain, nothing else to learn from): is the 0.90 target a matter of the
  model or of the detections?
- `anomaly_bound`: rare vs common, a classifier trained *on* the rare labels (out of fold; the
  supervised bound of `models.train.anomaly_bound`) with the shipped features and with seven candidate
  features aimed at the rare kinds' physics (colour constancy and drift for TDEs, symmetry and
  achromaticity for microlensing, the fastest change in magnitude per day for kilonovae).
- `anomaly_by_points`: the shipped two-view detector's score with each mixture's robust z-score taken
  against the population's views of a similar number of points instead of all of them.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from models import features
from models.registry import Registry
from models.taxonomy import SN_CLASSES, SN_IA, SUPERNOVA_CLASSES
from models.train import anomaly as A
from models.train import train as T
from models.train.anomaly_bound import supervised_bound
from models.train.anomaly_view import load_view
from models.train.plasticc_wfd import deep_drilling

ARTIFACTS = Path(__file__).resolve().parents[2] / "models" / "artifacts"
DETECTION_BINS = ((1, 4), (5, 9), (10, 19), (20, None))
POINT_BIN_EDGES = np.log10([4.5, 7.5, 12.5, 20.5])  # views of 3-4, 5-7, 8-12, 13-20, 21+ points
G, R = 1, 2  # band indices


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    return round(float(roc_auc_score(y, score)), 3) if 0 < y.mean() < 1 else None


# --- the wide-fast-deep row ----------------------------------------------------------------------

def wfd(train: T.Views, test: T.Views, data_dir: Path) -> dict:
    ddf = deep_drilling(data_dir)

    def wfd_supernovae(views: T.Views, kinds: set[str]) -> np.ndarray:
        return np.array([c.source == "plasticc" and c.class_id in SUPERNOVA_CLASSES and not ddf[c.object_id]
                         and kind in kinds for c, kind in zip(views.curves, views.kind, strict=True)])

    fit_rows = wfd_supernovae(train, {"latest", "window", "history", "early", "bands"})
    judged = wfd_supernovae(test, {"latest", "history"})
    is_ia = (T.sn_labels(np.array([c.class_id for c in test.curves]))[judged] == SN_IA).astype(int)
    fit_ia = (T.sn_labels(np.array([c.class_id for c in train.curves]))[fit_rows] == SN_IA).astype(int)
    in_domain = HistGradientBoostingClassifier(random_state=42, class_weight="balanced")
    in_domain_p = in_domain.fit(train.X[fit_rows], fit_ia).predict_proba(test.X[judged])[:, 1]
    curves = [c for c, keep in zip(test.curves, judged, strict=True) if keep]
    shipped_p = np.array([_p_ia_given_sn(results) for results in Registry(ARTIFACTS).classify(curves)])
    detections = np.array([int(c.detected.sum()) for c in curves])
    out = {"views": len(curves), "fitted_on": int(fit_rows.sum()),
           "median_detections": float(np.median(detections)),
           "all": {"shipped": auc(is_ia, shipped_p), "in_domain": auc(is_ia, in_domain_p)}}
    for lo, hi in DETECTION_BINS:
        m = (detections >= lo) & (detections <= (hi or detections.max()))
        out[f"{lo}-{hi or ''} detections"] = {"views": int(m.sum()), "shipped": auc(is_ia[m], shipped_p[m]),
                                              "in_domain": auc(is_ia[m], in_domain_p[m])}
    return out


def _p_ia_given_sn(results) -> float:
    sn = next(r for r in results if r.classifier == "supernova")
    p = {c["classId"]: c["probability"] for c in sn.classifications}
    return p.get(SN_IA, 0.0) / max(sum(p.get(c, 0.0) for c in SN_CLASSES), 1e-12)


# --- the anomaly model's simulated target -----------------------------------------------------------

CANDIDATES = ("colour_gr_scatter", "colour_gr_drift_per_100d", "max_mag_per_day", "asymmetry_about_peak",
              "log_symmetric_span", "g_vs_r_shape_difference", "fraction_before_peak")


def candidate_features(c) -> list[float]:
    """Seven features aimed at the rare kinds (see the module's docstring); NaN where undefined."""
    t, f, snr, band = c.t, c.flux, c.flux / c.flux_err, c.band
    mag = lambda x: -2.5 * np.log10(x)  # noqa: E731 - positive fluxes only, selected by S/N below
    g, r = np.flatnonzero((band == G) & (snr > 3)), np.flatnonzero((band == R) & (snr > 3))
    colours, when = [], []
    for i in g if len(r) else []:
        j = r[np.argmin(np.abs(t[r] - t[i]))]
        if abs(t[j] - t[i]) <= 1.0:
            colours.append(mag(f[i]) - mag(f[j]))
            when.append(t[i])
    colours, when = np.array(colours), np.array(when)
    scatter = np.std(colours) if len(colours) >= 3 else np.nan
    drift = np.polyfit(when, colours, 1)[0] * 100 if len(colours) >= 3 and np.ptp(when) > 5 else np.nan
    rates = []
    for b in np.unique(band):
        m = np.flatnonzero((band == b) & (snr > 5))
        dt, dm = np.diff(t[m]), np.diff(mag(f[m]))
        if (apart := dt > 0.3).any():
            rates.append(np.max(np.abs(dm[apart] / dt[apart])))
    asymmetry = span = np.nan
    bands, counts = np.unique(band, return_counts=True)
    m = band == bands[np.argmax(counts)]
    tt, ff = t[m], f[m]
    if len(tt) >= 5:
        peak = np.argmax(ff)
        if peak >= 2 and len(tt) - peak - 1 >= 2:
            span = min(tt[peak] - tt[0], tt[-1] - tt[peak])
            dts = np.linspace(0, span, 8)[1:]
            before, after = np.interp(tt[peak] - dts, tt, ff), np.interp(tt[peak] + dts, tt, ff)
            asymmetry, span = np.mean(np.abs(before - after)) / ff[peak], np.log10(span + 1)
    shape_difference = np.nan
    if len(g) >= 3 and len(r) >= 3:
        lo, hi = max(t[g].min(), t[r].min()), min(t[g].max(), t[r].max())
        if hi - lo > 3:
            grid = np.linspace(lo, hi, 10)
            shape_difference = np.mean(np.abs(np.interp(grid, t[g], f[g] / f[g].max())
                                              - np.interp(grid, t[r], f[r] / f[r].max())))
    return [scatter, drift, max(rates) if rates else np.nan, asymmetry, span, shape_difference,
            (np.argmax(f) + 1) / len(f)]


def anomaly_bound(train: T.Views, test: T.Views) -> dict:
    latest = {id(c): c for views in (train, test) for c, k in zip(views.curves, views.kind, strict=True)
              if k == "latest"}
    extra = {key: candidate_features(c) for key, c in latest.items()}
    subset = [list(features.FEATURE_NAMES).index(n) for n in A.ANOMALY_FEATURES]
    out = {"candidates": list(CANDIDATES)}
    for name in A.JUDGING_SETS:
        rows, rare = [], []
        for views, held_out in ((train, False), (test, True)):
            for i, (c, kind) in enumerate(zip(views.curves, views.kind, strict=True)):
                if kind == "latest" and (judged := A.judged_as(name, c, held_out)) is not None:
                    rows.append(np.r_[views.X[i], extra[id(c)]])
                    rare.append(judged)
        X, y = np.array(rows), np.array(rare)
        n = len(features.FEATURE_NAMES)
        every, new = list(range(n)), list(range(n, X.shape[1]))
        out[name] = {"rare": int(y.sum()), "objects": len(y),
                     "anomaly_features": supervised_bound(X[:, subset], y, 42, 5),
                     "anomaly_features_and_candidates": supervised_bound(X[:, subset + new], y, 42, 5),
                     "all_features": supervised_bound(X[:, every], y, 42, 5),
                     "all_features_and_candidates": supervised_bound(X, y, 42, 5)}
    return out


def anomaly_by_points(train: T.Views, test: T.Views) -> dict:
    """The shipped recipe (validation fit's view, as the card judges it), its two robust z-scores
    against the whole population or against the population's views of a similar number of points."""
    view = load_view(ARTIFACTS, T.MODEL_VERSION, supernova_from=ARTIFACTS / T.VALIDATION_DIR)
    X_pop = A.population(train, np.random.default_rng(42))
    model = A.candidates(42, view)["gaussian_mixtures_features_and_classifier_view"].fit(X_pop)
    points = list(features.FEATURE_NAMES).index("log_n_points")
    pop_parts, pop_bins = model._parts(X_pop), np.digitize(X_pop[:, points], POINT_BIN_EDGES)

    def z_by_points(s: np.ndarray, bins: np.ndarray, ref: np.ndarray) -> np.ndarray:
        out = np.empty_like(s)
        for b in np.unique(bins):
            r = ref[pop_bins == b]
            out[bins == b] = (s[bins == b] - np.median(r)) / np.subtract(*np.percentile(r, [75, 25]))
        return out

    out = {}
    for name, (X, rare, half) in A.judging_sets(train, test).items():
        (a, b), bins = model._parts(X), np.digitize(X[:, points], POINT_BIN_EDGES)
        za, zb = (a - model.z_.centre[0]) / model.z_.scale[0], (b - model.z_.centre[1]) / model.z_.scale[1]
        scores = {"shipped": za + zb, "features_by_points": z_by_points(a, bins, pop_parts[0]) + zb,
                  "both_by_points": z_by_points(a, bins, pop_parts[0]) + z_by_points(b, bins, pop_parts[1])}
        out[name] = {f"half_{h}": {k: auc(rare[half == h], s[half == h]) for k, s in scores.items()}
                     for h in (0, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/target_limits.pkl"))
    args = parser.parse_args()
    if args.cache.is_file():
        train, test = pickle.loads(args.cache.read_bytes())
    else:
        ts = T.load_training_set(args.data_dir, 42)
        train, test = ts.train, ts.test
        args.cache.write_bytes(pickle.dumps((train, test)))
    print(json.dumps({"wfd": wfd(train, test, args.data_dir)}), flush=True)
    print(json.dumps({"anomaly_bound": anomaly_bound(train, test)}), flush=True)
    print(json.dumps({"anomaly_by_points": anomaly_by_points(train, test)}), flush=True)


if __name__ == "__main__":
    main()
