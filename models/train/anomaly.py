"""The anomaly model: the population it learns, the candidates compared, how it is judged on real and
simulated rare objects, the export (ONNX + card + reference rows), and the feedback retrain (active
anomaly discovery with coniferest's AADForest).

The model learns what the stream mostly carries (the training sets' common classes, real and
simulated, each survey the same weight) and scores how unlikely an alert's light curve is under that
population. Its score is a percentile of that same population (models/registry.py), so a threshold
means the same across versions. Judged by how high real and simulated *rare* objects rank among held-out
common ones; model choices are made on half of the judging objects (by object) and reported on the
other half.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer

from models import features
from models.errors import ModelError
from models.taxonomy import SN_IA, SN_II
from models.train.anomaly_view import (
    PASSED_ON,
    ClassifierView,
    RobustZ,
    TwoViewScore,
    passed_on_outputs,
    summed_z_scores,
)
from models.train.train import Views, progress

NAME = "anomaly"
# 1.5.2: 1.3.0 refitted on the classifiers 2.6.2 (its view embeds them); 1.6.0: chosen and judged
# reading the supernova validation fit, refitted on the view of the shipped 2.7.0 (train.py)
VERSION = "1.6.0"
# Transient shape and colour, variability statistics, duration: what tells a superluminous supernova,
# a tidal disruption event or a nova from a normal supernova or variable star. Left out: the
# periodogram and harmonic-fit features (noise for transients, and their many NaN-or-not patterns made
# every detector flag survey cadence rather than physics), band-specific features of bands that ZTF
# and EROS lack, and the band count (a survey property).
ANOMALY_FEATURES = (
    "colour_gr_latest", "colour_gr_per_day", "colour_gr_slope_post_peak", "post_peak_slope_g",
    "post_peak_slope_r", "pre_peak_slope_g", "pre_peak_slope_r", "post_peak_slope_g_minus_r",
    "peak_time_g_minus_r", "log_rise_days", "log_decline_days", "log_days_above_half",
    "log_max_over_min", "frac_positive", "bazin_log_rise", "bazin_log_fall", "peak_colour_gr", "skew",
    "kurtosis", "stetson_k", "eta_e", "log_span_days", "log_n_points")
MIN_POINTS = 3
# What counts as rare when judging (never a training label): the real rare transients in the
# ZTF BTS training folder, and PLAsTiCC's rarest simulated classes.
RARE_BTS = frozenset({"TDE", "SLSN-I", "SLSN-II", "nova", "LBV", "LRN", "ILRT", "Ca-rich", "SN Ibn",
                      "SN Icn"})
RARE_PLASTICC = {"64": "kilonova", "15": "TDE", "6": "microlensing", "95": "SLSN"}
ROWS_PER_SOURCE = 4000  # the population: every survey (and synthetic set) the same number of views
REFERENCE_ROWS = 5000  # shipped beside the model: what the feedback retrain grows its forest on
# Percentile levels the card keeps the population's scores at: fine in the tail, where thresholds sit.
LEVELS = np.unique(np.r_[np.linspace(0, 0.9, 91), np.linspace(0.9, 0.999, 100), 0.9995, 0.9999, 1.0])
OPSET = 17
PARITY_PERCENTILE = 0.005
PARITY_RAW = 1e-5
CONIFEREST_OPSET = 15  # the highest default-domain opset coniferest's converter supports
NIGHTS, PER_NIGHT = 10, 10  # the simulated expert: labels the top 10 candidates a night, 10 nights


def is_rare(c) -> bool:
    return ((c.source == "bts" and c.subtype in RARE_BTS)
            or (c.source == "plasticc" and c.subtype in RARE_PLASTICC))


def is_common_real(c) -> bool:
    """Real SN Ia and II (BTS) and real variable stars (EROS-1, Stripe 82)."""
    if c.source == "bts":
        return c.class_id in (SN_IA, SN_II) and c.subtype not in RARE_BTS
    return c.source.startswith("eros") or c.source == "sesar"


def is_common_simulated(c) -> bool:
    return c.source == "plasticc" and not is_rare(c)


def population(views: Views, rng: np.random.Generator) -> np.ndarray:
    """Feature rows of the training views of common objects, each source the same number of rows
    (drawn with replacement where a source has fewer): no survey's cadence defines 'normal'."""
    source = views.source
    keep = np.array([not is_rare(c) for c in views.curves])
    rows = []
    for s in sorted(set(source[keep])):
        idx = np.flatnonzero(keep & (source == s))
        rows.append(rng.choice(idx, ROWS_PER_SOURCE, replace=len(idx) < ROWS_PER_SOURCE))
    return views.X[np.concatenate(rows)]


SEEDS_AVERAGED = 5


class SeedAveragedMixture(BaseEstimator):
    """Gaussian mixtures fitted with several seeds, their densities averaged: one mixture of all
    their components (each weight divided by the number of seeds), kept as a plain GaussianMixture
    (`mixture_`) so it scores and exports like one. A single fit's local optimum moves the judging
    AUROCs by ~0.02 from seed to seed (docs/models.md); the average takes most of that out."""

    def __init__(self, n_components: int = 32, reg_covar: float = 1e-3, seeds: tuple[int, ...] = (0,)):
        self.n_components = n_components
        self.reg_covar = reg_covar
        self.seeds = seeds

    def fit(self, X: np.ndarray, y=None) -> SeedAveragedMixture:
        fits = [GaussianMixture(self.n_components, covariance_type="full", reg_covar=self.reg_covar,
                                random_state=seed).fit(X) for seed in self.seeds]
        merged = GaussianMixture(self.n_components * len(fits), covariance_type="full",
                                 reg_covar=self.reg_covar)
        merged.weights_ = np.concatenate([g.weights_ for g in fits]) / len(fits)
        for attribute in ("means_", "covariances_", "precisions_", "precisions_cholesky_"):
            setattr(merged, attribute, np.concatenate([getattr(g, attribute) for g in fits]))
        merged.converged_ = all(g.converged_ for g in fits)
        merged.n_iter_ = max(g.n_iter_ for g in fits)
        merged.lower_bound_ = min(g.lower_bound_ for g in fits)
        merged.n_features_in_ = X.shape[1]
        self.mixture_ = merged
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return self.mixture_.score_samples(X)


def _select() -> ColumnTransformer:
    names = list(features.FEATURE_NAMES)
    return ColumnTransformer([("keep", "passthrough", [names.index(n) for n in ANOMALY_FEATURES])])


def candidates(seed: int, view: ClassifierView | None = None) -> dict[str, Pipeline | TwoViewScore]:
    """The detectors compared: an isolation forest, the lecture's k-means (distance to the nearest
    centroid) and a Gaussian mixture (k-means' soft, density-giving cousin); given the classifiers'
    view graph (anomaly_view.py), that mixture plus one over what the classifiers make of the alert.
    A power transform makes every feature near-Gaussian with unit variance, so no heavy tail dominates
    a distance; unlike quantile scaling it does not clip, so a value beyond anything in the
    population stays extreme."""
    head = [("select", _select()), ("impute", SimpleImputer(strategy="median"))]
    scaled = [*head, ("power", PowerTransformer())]
    mixture = [*scaled, ("model", GaussianMixture(32, covariance_type="full", reg_covar=1e-3,
                                                  random_state=seed))]
    out: dict[str, Pipeline | TwoViewScore] = {
        "isolation_forest": Pipeline([*head, ("model", IsolationForest(n_estimators=300, max_samples=1024,
                                                                       random_state=seed))]),
        "kmeans": Pipeline([*scaled, ("model", KMeans(32, n_init=3, random_state=seed))]),
        "gaussian_mixture": Pipeline(mixture),
        f"gaussian_mixture_{SEEDS_AVERAGED}_seeds": Pipeline([*scaled, ("model", SeedAveragedMixture(
            32, reg_covar=1e-3, seeds=tuple(seed + i for i in range(SEEDS_AVERAGED))))]),
    }
    if view is not None:
        out["gaussian_mixtures_features_and_classifier_view"] = TwoViewScore(Pipeline(mixture), view, seed)
    return out


def unusualness(model: Pipeline | TwoViewScore, X: np.ndarray) -> np.ndarray:
    """Higher = less like the population: the forest's and the mixture's negated scores, k-means'
    distance to the nearest centroid, the two mixtures' summed z-scores."""
    if isinstance(model, TwoViewScore):
        return model.unusualness(X)
    if isinstance(model[-1], KMeans):
        return model.transform(X).min(axis=1)
    return -model.score_samples(X)


# --- judging ------------------------------------------------------------------------------------

def _half(object_id: str) -> int:
    """0: the objects model choices are made on; 1: the objects the card reports. Stable by id."""
    return zlib.crc32(object_id.encode()) % 2


def judging_sets(train: Views, test: Views) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(X, is_rare, half) of the alert at each object's last detection ("latest" views): common
    objects from the held-out split only; rare ones from either split ("real", "simulated": the
    anomaly detectors never see a rare object) or from the held-out split only ("..._unseen": the
    classifiers learnt the rare kinds of the training split, as SLSN or Residual, so a detector that
    reads their probabilities is judged on rare objects no model saw)."""
    out = {}
    for name in JUDGING_SETS:
        rows, rare, half = [], [], []
        for views, held_out in ((train, False), (test, True)):
            for i, (c, kind) in enumerate(zip(views.curves, views.kind, strict=True)):
                if kind != "latest" or (judged := judged_as(name, c, held_out)) is None:
                    continue
                rows.append(views.X[i])
                rare.append(judged)
                half.append(_half(c.object_id))
        out[name] = (np.array(rows), np.array(rare), np.array(half))
    return out


# judging set -> (its common objects, the survey its rare ones come from, rare from the held-out split only)
JUDGING_SETS = {"real": (is_common_real, "bts", False), "simulated": (is_common_simulated, "plasticc", False),
                "real_unseen": (is_common_real, "bts", True),
                "simulated_unseen": (is_common_simulated, "plasticc", True)}
# what the detector is chosen by (selection half): rare objects no model of the project saw
CHOICE_SETS = ("real_unseen", "simulated_unseen")


def judged_as(judging_set: str, c, held_out: bool) -> bool | None:
    """True: one of the set's rare objects; False: one of its common ones (held-out split only);
    None: not judged in that set."""
    common, survey, held_out_rare_only = JUDGING_SETS[judging_set]
    if is_rare(c) and c.source == survey:
        return True if held_out or not held_out_rare_only else None
    return False if held_out and common(c) else None


def top_fraction_precision(score: np.ndarray, rare: np.ndarray, fraction: float = 0.01) -> float:
    k = max(1, round(fraction * len(score)))
    return float(rare[np.argsort(-score, kind="stable")[:k]].mean())


def judge(score_of: Callable[[np.ndarray], np.ndarray], sets: dict, half: int) -> dict:
    out = {}
    for name, (X, rare, halves) in sets.items():
        m = halves == half
        s = score_of(X[m])
        out[name] = {"auroc": round(float(roc_auc_score(rare[m], s)), 4),
                     "top_1pct_precision": round(top_fraction_precision(s, rare[m]), 4),
                     "rare": int(rare[m].sum()), "views": int(m.sum()),
                     "rare_fraction": round(float(rare[m].mean()), 4)}
    return out


def per_kind(score_of: Callable[[np.ndarray], np.ndarray], train: Views, test: Views) -> dict:
    """AUROC of each rare kind against the held-out common views of its survey (both halves)."""
    out = {}
    for survey, common, kinds in (("bts", is_common_real, sorted(RARE_BTS)),
                                  ("plasticc", is_common_simulated, sorted(RARE_PLASTICC))):
        latest = test.kind == "latest"
        base = score_of(test.X[latest & np.array([common(c) for c in test.curves])])
        for kind in kinds:
            rows = [v.X[i] for v in (train, test) for i, c in enumerate(v.curves)
                    if v.kind[i] == "latest" and c.source == survey and c.subtype == kind]
            if len(rows) < 3:
                continue
            s = score_of(np.array(rows))
            label = RARE_PLASTICC.get(kind, kind)
            truth = np.r_[np.ones(len(s)), np.zeros(len(base))]
            out[f"{survey}: {label}"] = {"objects": len(s),
                                         "auroc": round(float(roc_auc_score(truth, np.r_[s, base])), 3)}
    return out


# --- training and export ------------------------------------------------------------------------

def train_anomaly(train: Views, test: Views, out_dir: Path, version: str = VERSION, seed: int = 42,
                  view: ClassifierView | None = None, ship_view: ClassifierView | None = None) -> dict:
    """`view`: the classifiers' view graph (anomaly_view.load_view), which adds a detector reading it;
    the detectors are chosen and judged with it. `ship_view`: the view of the classifiers that ship,
    if they are other fits (train.FINAL_FIT_ON_EVERY_BTS_OBJECT): the chosen detector is then refitted
    reading it, so that the exported model embeds the shipped classifiers."""
    rng = np.random.default_rng(seed)
    X_pop = population(train, rng)
    progress(f"anomaly: population of {len(X_pop)} views; fitting {', '.join(candidates(seed, view))}")
    sets = judging_sets(train, test)
    fitted, compared = {}, {}
    for name, model in candidates(seed, view).items():
        fitted[name] = model.fit(X_pop)
        compared[name] = {"selection_half": judge(lambda X, m=model: unusualness(m, X), sets, 0),
                          "report_half": judge(lambda X, m=model: unusualness(m, X), sets, 1)}
        progress(f"  {name}: {compared[name]}")
    # chosen on the selection half only: the mean AUROC over rare objects no model saw, real and simulated
    best = max(compared, key=lambda n: np.mean([compared[n]["selection_half"][s]["auroc"]
                                                for s in CHOICE_SETS]))
    model = fitted[best]
    progress(f"anomaly: shipping {best}; measuring the feedback gain")
    blob = to_onnx_bytes(model)
    reference = X_pop[rng.choice(len(X_pop), REFERENCE_ROWS, replace=False)]
    metrics = {"held_out": compared[best]["report_half"], "selection_half": compared[best]["selection_half"],
               "per_rare_kind": per_kind(lambda X: unusualness(model, X), train, test),
               "compared": compared, "chosen": best,
               "feedback": (feedback_gain(lambda X: unusualness(model, X), front_of(blob), sets, reference,
                                          seed) if isinstance(model, TwoViewScore) else
                            "not measured: feedback retrains build on a model reading the classifier view")}
    if isinstance(model, TwoViewScore) and ship_view and ship_view.classifiers != model.classifiers:
        model = candidates(seed, ship_view)[best].fit(X_pop)
        blob = to_onnx_bytes(model)
        metrics["shipped_fit"] = {
            "what": "the chosen detector refitted on the same population reading the shipped classifiers; "
                    "every figure above is the fit that read the classifiers judged on held-out objects",
            "judged_with": fitted[best].classifiers}
        progress(f"anomaly: {best} refitted on the shipped classifiers' view")
    how = (f"Gaussian mixtures over {len(ANOMALY_FEATURES)} features and over the classifiers' "
           "probabilities, their z-scores summed" if isinstance(model, TwoViewScore)
           else f"{best.replace('_', ' ')} on {len(ANOMALY_FEATURES)} features")
    description = (f"Anomaly score: how unlike the common population an alert's light curve is ({how}), "
                   "as the fraction of that population that looks less unusual (0.99 = top 1%)")
    training_data = {"population": "training views of the common classes, each source "
                                   f"{ROWS_PER_SOURCE} views: " + ", ".join(sorted(set(train.source))),
                     "rows": len(X_pop),
                     "rare_never_trained_on": {"bts": sorted(RARE_BTS),
                                               "plasticc": sorted(RARE_PLASTICC.values())}}
    return export_anomaly(model, kind=best, name=NAME, version=version, out_dir=out_dir, X_pop=X_pop,
                          reference=reference, metrics=metrics, description=description,
                          training_data=training_data, blob=blob,
                          view_card=model.card() if isinstance(model, TwoViewScore) else None)


def _exportable(model: Pipeline) -> Pipeline:
    """The pipeline skl2onnx converts: a seed-averaged mixture as the one GaussianMixture it is."""
    if isinstance(model[-1], SeedAveragedMixture):
        return Pipeline([*model.steps[:-1], ("model", model[-1].mixture_)])
    return model


def _raw_output(model: Pipeline | TwoViewScore) -> dict:
    """Which ONNX output is the raw score and how it turns into 'higher = more unusual'."""
    if isinstance(model, TwoViewScore):
        return {"output": "score", "sign": 1, "reduce": "none"}
    model = _exportable(model)
    if isinstance(model[-1], KMeans):
        return {"output": "scores", "sign": 1, "reduce": "min"}
    return {"output": "score_samples" if isinstance(model[-1], GaussianMixture) else "scores",
            "sign": -1, "reduce": "none"}


def to_onnx_bytes(model: Pipeline | TwoViewScore) -> bytes:
    if isinstance(model, TwoViewScore):
        return model.to_onnx(onnx.load_from_string(to_onnx_bytes(model.feature_model))).SerializeToString()
    model = _exportable(model)
    options = {id(model[-1]): {"score_samples": True}} if isinstance(model[-1], GaussianMixture) else None
    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, len(features.FEATURE_NAMES)]))],
                  target_opset={"": OPSET, "ai.onnx.ml": 3}, options=options)
    return onx.SerializeToString()


def onnx_unusualness(blob: bytes, raw: dict, X: np.ndarray) -> np.ndarray:
    """What the registry computes from the ONNX session (models/registry.py: LoadedModel.anomaly)."""
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    out = session.run([raw["output"]], {session.get_inputs()[0].name: X.astype(np.float32)})[0]
    out = out.min(axis=1) if raw["reduce"] == "min" else out.reshape(len(X))
    return raw["sign"] * out.astype(np.float64)


def export_anomaly(model, *, kind: str, name: str, version: str, out_dir: Path, X_pop: np.ndarray,
                   reference: np.ndarray, metrics: dict, description: str, training_data: dict,
                   blob: bytes | None = None, raw: dict | None = None, sklearn_score=None,
                   view_card: dict | None = None) -> dict:
    """model.onnx, card.json and reference.npz in out_dir/name/version. The card keeps the population's
    scores at LEVELS, so the registry turns a raw score into the percentile users see. `view_card`:
    the classifier view the model reads (it then reads every feature, and so do its reference rows)."""
    blob = blob if blob is not None else to_onnx_bytes(model)
    raw = raw or _raw_output(model)
    onnx_scores = onnx_unusualness(blob, raw, X_pop)
    ours = sklearn_score(X_pop) if sklearn_score else unusualness(model, X_pop.astype(np.float32))
    # ONNX computes in float32: a mixture's log-likelihoods then differ by ~1e-3 relative, which
    # moves no percentile (checked there); a forest's scores agree closely, but sit in ties where
    # a 1e-7 change jumps a percentile step (checked on the raw score).
    population_scores = np.quantile(onnx_scores, LEVELS)
    raw_diff = float(np.max(np.abs(onnx_scores - ours) / np.maximum(1.0, np.abs(ours))))
    diff = float(np.max(np.abs(np.interp(onnx_scores, population_scores, LEVELS)
                               - np.interp(ours, population_scores, LEVELS))))
    if diff > PARITY_PERCENTILE and raw_diff > PARITY_RAW:
        raise ModelError(f"ONNX and the fitted {kind} disagree by {diff:.4f} in percentile and "
                         f"{raw_diff:.1e} (relative) in raw score on the population")
    folder = out_dir / name / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(blob)
    buf = io.BytesIO()
    columns = _used_columns(every=view_card is not None)
    np.savez_compressed(buf, X=reference[:, columns].astype(np.float32))
    (folder / "reference.npz").write_bytes(buf.getvalue())
    card = {
        "name": name, "version": version, "kind": "anomaly", "description": description,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "input": {"name": "features", "dtype": "float32", "shape": [None, len(features.FEATURE_NAMES)]},
        "feature_names": list(features.FEATURE_NAMES), "used_features": list(ANOMALY_FEATURES),
        **({"classifier_view": view_card} if view_card else {}),
        "class_ids": [], "min_points": MIN_POINTS, "estimator": kind,
        "raw_score": {**raw, "percentile_levels": [round(float(v), 6) for v in LEVELS],
                      "population_scores": [float(v) for v in population_scores]},
        "reference": {"file": "reference.npz", "rows": len(reference),
                      "columns": [features.FEATURE_NAMES[i] for i in columns],
                      "sha256": hashlib.sha256(buf.getvalue()).hexdigest()},
        "training_data": training_data, "metrics": metrics,
        "parity": {"rows": len(X_pop), "max_percentile_diff": diff, "max_relative_raw_diff": raw_diff},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _used_columns(every: bool = False) -> list[int]:
    """The feature columns the model reads: every one when it embeds the classifiers."""
    if every:
        return list(range(len(features.FEATURE_NAMES)))
    names = list(features.FEATURE_NAMES)
    return [names.index(n) for n in ANOMALY_FEATURES]


def load_reference(folder: Path) -> np.ndarray:
    """The shipped reference rows as full feature rows (the unused columns NaN)."""
    card = json.loads((folder / "card.json").read_text())
    blob = (folder / card["reference"]["file"]).read_bytes()
    if hashlib.sha256(blob).hexdigest() != card["reference"]["sha256"]:
        raise ModelError(f"{folder}: reference.npz differs from its card's sha256")
    used = np.load(io.BytesIO(blob))["X"]
    X = np.full((len(used), len(features.FEATURE_NAMES)), np.nan, np.float32)
    names = list(features.FEATURE_NAMES)
    X[:, [names.index(n) for n in card["reference"]["columns"]]] = used
    return X


# --- feedback: active anomaly discovery -----------------------------------------------------------

class Feedback:
    """What a feedback retrain scores: the static model's score (`front`: an exported anomaly model's
    `static` and `view` outputs) plus an AADForest over the anomaly features beside the classifier
    view, whose tree weights the experts' labels set; each as a robust z-score against the reference
    rows. The forest alone starts far below the static model; added to it, the labels move the
    ranking without throwing away what the static model knows."""

    def __init__(self, front: onnx.ModelProto, seed: int):
        self.front = front
        self.seed = seed
        self._session = ort.InferenceSession(front.SerializeToString(), providers=["CPUExecutionProvider"])

    def _static_and_view(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        static, view = self._session.run(["static", "view"],
                                         {"features": np.ascontiguousarray(X, np.float32)})
        return static.reshape(len(X)).astype(np.float64), view

    def _forest_input(self, X: np.ndarray, view: np.ndarray) -> np.ndarray:
        return np.hstack([self.head_.transform(X), view]).astype(np.float32)

    def fit(self, reference: np.ndarray, known: np.ndarray, labels: np.ndarray) -> Feedback:
        """labels: True = anomaly, False = normal."""
        from coniferest.aadforest import AADForest
        from coniferest.label import Label

        self.head_ = Pipeline([("select", _select()), ("impute", SimpleImputer(strategy="median"))])
        self.head_.fit(reference)
        static, view = self._static_and_view(reference)
        Z = self._forest_input(reference, view)
        self.forest_ = AADForest(n_trees=300, n_subsamples=256, random_seed=self.seed, n_jobs=1)
        if len(known):
            self.forest_.fit_known(Z, self._forest_input(known, self._static_and_view(known)[1]),
                                   np.where(labels, Label.ANOMALY, Label.REGULAR))
        else:
            self.forest_.fit(Z)
        self.z_ = RobustZ(static, -self.forest_.score_samples(Z))
        return self

    def forest_unusualness(self, X: np.ndarray) -> np.ndarray:
        return -self.forest_.score_samples(self._forest_input(X, self._static_and_view(X)[1]))

    def unusualness(self, X: np.ndarray) -> np.ndarray:
        static, view = self._static_and_view(X)
        return self.z_.sum(static, -self.forest_.score_samples(self._forest_input(X, view)))

    def to_onnx(self) -> bytes:
        """features -> score (the unusualness above), static and view: one graph, the front, the
        head (skl2onnx) and the forest (coniferest's converter, rewritten for ai.onnx.ml 3)."""
        from coniferest.onnx import to_onnx as coniferest_to_onnx
        from onnx import TensorProto, helper
        from onnxconverter_common.data_types import FloatTensorType as CommonFloat

        from models.train.anomaly_view import join

        n_features = len(features.FEATURE_NAMES)
        head = to_onnx(self.head_, initial_types=[("features", FloatTensorType([None, n_features]))],
                       target_opset=OPSET)
        width = len(ANOMALY_FEATURES) + self.front.graph.output[1].type.tensor_type.shape.dim[1].dim_value
        tail = _as_tree_ensemble_regressor(coniferest_to_onnx(
            self.forest_, target_opset=CONIFEREST_OPSET,
            initial_types=[("selected", CommonFloat([None, width]))]))
        # the forest's score is higher for the more ordinary: unusualness is its negative
        nodes, const = summed_z_scores([("s_static", 1.0, self.z_.centre[0], self.z_.scale[0]),
                                        ("t_" + tail.graph.output[0].name, -1.0, self.z_.centre[1],
                                         self.z_.scale[1])], "score")
        nodes += [helper.make_node("Identity", ["s_static"], ["static"]),
                  helper.make_node("Identity", ["s_view"], ["view"]),
                  *(helper.make_node("Identity", ["s_" + out], [out]) for out in PASSED_ON.values())]
        concat = helper.make_node("Concat", ["h_" + head.graph.output[0].name, "s_view"], ["selected"],
                                  axis=1)
        inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])]
        # in two steps, so that the nodes come in the order their inputs exist: front and head, their
        # concatenation; then the forest on it and the sum
        parts = [("s_", self.front, {"features": "features"}), ("h_", head, {"features": "features"})]
        front_and_head = join(parts, [concat], [], inputs,
                              [helper.make_tensor_value_info("selected", TensorProto.FLOAT, [None, width]),
                               helper.make_tensor_value_info("s_static", TensorProto.FLOAT, [None, 1]),
                               helper.make_tensor_value_info("s_view", TensorProto.FLOAT, [None, None]),
                               *(helper.make_tensor_value_info("s_" + out, TensorProto.FLOAT, [None, None])
                                 for out in PASSED_ON.values())],
                              "feedback_input")
        outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1]),
                   helper.make_tensor_value_info("static", TensorProto.FLOAT, [None, 1]),
                   helper.make_tensor_value_info("view", TensorProto.FLOAT, [None, None]),
                   *passed_on_outputs()]
        model = join([("", front_and_head, {}), ("t_", tail, {"selected": "selected"})], nodes, const, inputs,
                     outputs, "anomaly_feedback")
        return model.SerializeToString()


def front_of(model_onnx: bytes) -> onnx.ModelProto:
    """features -> static, view and the classifiers' probabilities: the part of an exported anomaly
    model a feedback retrain builds on."""
    model = onnx.load_from_string(model_onnx)
    wanted = ["static", "view", *PASSED_ON.values()]
    if not set(wanted) <= {o.name for o in model.graph.output}:
        raise ModelError(f"this anomaly model lacks the outputs {wanted} (it predates anomaly 1.3.0): "
                         "feedback retrains need anomaly 1.3.0 or later; update the shipped models")
    return onnx.utils.Extractor(model).extract_model(["features"], wanted)


# ai.onnx.ml 5 TreeEnsemble's node modes, as TreeEnsembleRegressor spells them
_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")


def _as_tree_ensemble_regressor(model: onnx.ModelProto) -> onnx.ModelProto:
    """coniferest's forest (one ai.onnx.ml 5 TreeEnsemble node, summing one target) as the same trees
    in a TreeEnsembleRegressor (ai.onnx.ml 3): each tree walked from its root, its branches and
    leaves numbered within the tree. The feedback model holds the classifiers' graphs too, whose
    TreeEnsembleClassifier ai.onnx.ml 5 deprecates, and one model has one version per domain."""
    from onnx import helper, numpy_helper

    (node,) = model.graph.node
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    if node.op_type != "TreeEnsemble" or a["n_targets"] != 1 or a["aggregate_function"] != 1:
        raise ModelError(f"unexpected forest export from coniferest: {node.op_type} {sorted(a)}")
    splits = numpy_helper.to_array(a["nodes_splits"])
    modes = numpy_helper.to_array(a["nodes_modes"])
    leaf_weights = numpy_helper.to_array(a["leaf_weights"])
    out: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "target_treeids", "target_nodeids", "target_ids",
        "target_weights")}
    for tree, root in enumerate(a["tree_roots"]):
        queue, ids = [(root, False)], {(root, False): 0}
        while queue:
            index, leaf = queue.pop(0)
            local = ids[(index, leaf)]
            out["nodes_treeids"].append(tree)
            out["nodes_nodeids"].append(local)
            if leaf:
                out["nodes_featureids"].append(0)
                out["nodes_modes"].append("LEAF")
                out["nodes_values"].append(0.0)
                out["nodes_truenodeids"].append(0)
                out["nodes_falsenodeids"].append(0)
                out["target_treeids"].append(tree)
                out["target_nodeids"].append(local)
                out["target_ids"].append(0)
                out["target_weights"].append(float(leaf_weights[index]))
                continue
            children = []
            for side in ("true", "false"):
                child = (a[f"nodes_{side}nodeids"][index], bool(a[f"nodes_{side}leafs"][index]))
                ids.setdefault(child, len(ids))
                children.append(ids[child])
                queue.append(child)
            out["nodes_featureids"].append(a["nodes_featureids"][index])
            out["nodes_modes"].append(_MODES[int(modes[index])])
            out["nodes_values"].append(float(splits[index]))
            out["nodes_truenodeids"].append(children[0])
            out["nodes_falsenodeids"].append(children[1])
    regressor = helper.make_node("TreeEnsembleRegressor", list(node.input), list(node.output),
                                 domain="ai.onnx.ml", n_targets=1, aggregate_function="SUM",
                                 post_transform="NONE", **out)
    graph = helper.make_graph([regressor], model.graph.name, list(model.graph.input),
                              list(model.graph.output))
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 3)])
    out.ir_version = 8  # what skl2onnx writes for the head it is merged with
    return out


def feedback_gain(static_score: Callable[[np.ndarray], np.ndarray], front: onnx.ModelProto, sets: dict,
                  reference: np.ndarray, seed: int, nights: int = NIGHTS, per_night: int = PER_NIGHT) -> dict:
    """The field's measure (Ishida et al. 2021): an expert labels the top `per_night` unlabelled
    candidates each night; count the true rare objects found after `nights` nights, on the report
    half, with the shipped static model, with a static forest (no labels), and with the model
    retrained on the labels after every night (`Feedback`)."""
    out = {}
    for name, (X, rare, halves) in sets.items():
        m = halves == 1
        X, rare = X[m], rare[m]
        budget = nights * per_night
        static = int(rare[np.argsort(-static_score(X), kind="stable")[:budget]].sum())
        model = Feedback(front, seed).fit(reference, X[:0], rare[:0])
        plain = int(rare[np.argsort(-model.forest_unusualness(X), kind="stable")[:budget]].sum())
        labelled: list[int] = []
        found_per_night = []
        for _ in range(nights):
            if labelled:
                model = Feedback(front, seed).fit(reference, X[labelled], rare[labelled])
            order = np.argsort(-model.unusualness(X), kind="stable")
            fresh = [i for i in order if i not in set(labelled)][:per_night]
            labelled += fresh
            found_per_night.append(int(rare[labelled].sum()))
        out[name] = {"nights": nights, "per_night": per_night, "pool_views": len(X),
                     "pool_rare": int(rare.sum()), "found_static_model": static,
                     "found_static_forest": plain, "found_with_feedback": found_per_night[-1],
                     "found_with_feedback_per_night": found_per_night}
        progress(f"  feedback, {name}: {out[name]}")
    return out


def next_version(version: str) -> str:
    """1.0.0 -> 1.0.0.1 -> 1.0.0.2: a retrain is newer than what it learnt from, older than 1.0.1."""
    parts = version.split(".")
    if len(parts) == 4 and parts[3].isdigit():
        return ".".join([*parts[:3], str(int(parts[3]) + 1)])
    return f"{version}.1"


def retrain(folder: Path, known: np.ndarray, labels: np.ndarray, out_dir: Path, seed: int = 42) -> dict:
    """A new version of the anomaly model from experts' labels (`Feedback`): the static score of the
    model in `folder` plus an AADForest grown on its reference rows, the forest's tree weights fitted
    so that the labelled anomalies score above the budget quantile and the labelled normal objects
    below it. A retrain of a retrain builds on the same static score, with every label so far."""
    current = json.loads((folder / "card.json").read_text())
    reference = load_reference(folder)
    model = Feedback(front_of((folder / "model.onnx").read_bytes()), seed).fit(reference, known, labels)
    n_anomalies = int(labels.sum())
    version = next_version(current["version"])
    metrics = {"feedback": {"objects": len(labels), "anomaly": n_anomalies,
                            "normal": len(labels) - n_anomalies},
               "based_on": f"{current['name']}/{current['version']}",
               "shipped_model_metrics": current["metrics"].get("held_out") or current["metrics"]}
    return export_anomaly(None, kind="static score + AADForest", name=current["name"], version=version,
                          out_dir=out_dir, X_pop=reference, reference=reference, metrics=metrics,
                          description=f"{current['name']} {current['version']} retrained on {len(labels)} "
                                      f"expert labels ({n_anomalies} anomalies) with active anomaly "
                                      "discovery (its static score plus an AADForest)",
                          training_data={"reference_rows": len(reference), "from": current["name"] + "/"
                                         + current["version"], "labels": len(labels)},
                          blob=model.to_onnx(), raw={"output": "score", "sign": 1, "reduce": "none"},
                          view_card=current.get("classifier_view"), sklearn_score=model.unusualness)
