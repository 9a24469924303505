"""The held-out figures the model cards carry: pure functions of probabilities, labels and objects.

Intervals resample whole objects: the views of one object are not independent.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from models.taxonomy import LABELS, SN_CLASSES, SN_IA, SUPERNOVA_CLASSES
from models.train.datasets import REAL_SOURCES, from_sources


def ece(prob: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of a binary probability."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(prob, edges) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(prob[m].mean() - truth[m].mean())
    return float(total)


def completeness_at_contamination(prob: np.ndarray, truth: np.ndarray, max_contamination: float) -> dict:
    """The operating point a survey would choose: the highest completeness whose contamination
    stays within `max_contamination`, and the probability threshold that gives it."""
    order = np.argsort(-prob, kind="stable")
    tp, fp = np.cumsum(truth[order]), np.cumsum(~truth[order])
    ok = np.flatnonzero(fp <= max_contamination * (tp + fp))
    if not truth.any() or len(ok) == 0:
        return {"completeness": None, "threshold": None}
    best = ok[np.argmax(tp[ok])]
    return {"completeness": round(float(tp[best] / truth.sum()), 4),
            "threshold": round(float(prob[order][best]), 4)}


def rrl_metrics(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict:
    pred = prob >= threshold
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    return {"n": len(truth), "n_positive": int(truth.sum()),
            "completeness": round(tp / (tp + fn), 4) if tp + fn else None,
            "contamination": round(fp / (tp + fp), 4) if tp + fp else None,
            "auc": round(float(roc_auc_score(truth, prob)), 4) if 0 < truth.sum() < len(truth) else None,
            "calibration_error": round(ece(prob, truth), 4),
            "at_contamination_0.05": completeness_at_contamination(prob, truth, 0.05)}


def auc_interval(truth: np.ndarray, score: np.ndarray, groups: np.ndarray, seed: int,
                 n_boot: int = 2000, level: float = 0.9) -> list[float] | None:
    """Bootstrap interval of an AUC, resampling whole objects (`groups`): views of one object are not
    independent. For small external sets, where one object moves the AUC by several points."""
    def auc(i: np.ndarray) -> float | None:
        return roc_auc_score(truth[i], score[i]) if 0 < truth[i].sum() < len(i) else None

    return _object_bootstrap(groups, auc, seed, n_boot, level)


WELL_SAMPLED_POINTS = 20  # detections: where a supernova's type shows (rise, peak, decline, colours)


def sn_metrics(proba: np.ndarray, y: np.ndarray, source: np.ndarray,
               n_points: np.ndarray | None = None, objects: np.ndarray | None = None) -> dict:
    """Supernova-vs-rest and type metrics; with `objects` (small sets), 90% bootstrap intervals of
    the Ia vs CC AUCs over objects."""
    classes = list(SN_CLASSES)
    p_sn = proba[:, :len(SUPERNOVA_CLASSES)].sum(axis=1)
    is_sn = np.isin(y, SUPERNOVA_CLASSES)
    real_var = from_sources(source, *REAL_SOURCES) & ~is_sn
    out = {"n": len(y), "sn_recall": round(float((p_sn[is_sn] >= 0.5).mean()), 4) if is_sn.any() else None,
           "sn_auc": round(float(roc_auc_score(is_sn, p_sn)), 4) if 0 < is_sn.sum() < len(y) else None,
           "sn_calibration_error": round(ece(p_sn, is_sn), 4)}
    if real_var.any():
        out["false_positive_rate_real_variables"] = round(float((p_sn[real_var] >= 0.5).mean()), 4)
        out["n_real_variables"] = int(real_var.sum())
    sn = is_sn & (p_sn > 0)
    if sn.any():
        p_ia = proba[sn, classes.index(SN_IA)] / p_sn[sn]
        truth_ia = y[sn] == SN_IA
        if 0 < truth_ia.sum() < sn.sum():
            out["ia_vs_cc_auc"] = round(float(roc_auc_score(truth_ia, p_ia)), 4)
            if objects is not None:
                out["ia_vs_cc_auc_90ci"] = auc_interval(truth_ia, p_ia, objects[sn], seed=0)
            out["ia_vs_each_cc_type"] = _ia_vs_each_type(p_ia, y[sn],
                                                         None if objects is None else objects[sn])
        if n_points is not None:  # reported beside the figure over every view, not instead of it
            well = n_points[sn] >= WELL_SAMPLED_POINTS
            if 0 < truth_ia[well].sum() < well.sum():
                key = f"ia_vs_cc_auc_{WELL_SAMPLED_POINTS}_detections_or_more"
                auc = roc_auc_score(truth_ia[well], p_ia[well])
                out[key] = {"n": int(well.sum()), "auc": round(float(auc), 4)}
                if objects is not None:
                    out[key]["90ci"] = auc_interval(truth_ia[well], p_ia[well], objects[sn][well], seed=0)
    pred = np.array(classes)[np.argmax(proba, axis=1)]
    out["per_class"] = {LABELS[c]: {"n": int((y == c).sum()),
                                    "recall": round(float((pred[y == c] == c).mean()), 4) if (y == c).any()
                                    else None,
                                    "precision": round(float((y[pred == c] == c).mean()), 4)
                                    if (pred == c).any() else None}
                        for c in classes}
    return out


MIN_OBJECTS_FOR_INTERVAL = 3  # resampling one or two objects gives an interval of nothing


def _object_bootstrap(objects: np.ndarray, statistic, seed: int, n_boot: int = 1000,
                      level: float = 0.9) -> list[float] | None:
    """90% interval of `statistic(index array)` resampling whole objects (their views together)."""
    uniq, inv = np.unique(objects, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    rng, values = np.random.default_rng(seed), []
    for _ in range(n_boot):
        value = statistic(np.concatenate([members[g] for g in rng.integers(len(uniq), size=len(uniq))]))
        if value is not None and np.isfinite(value):
            values.append(value)
    if not values:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def top_label_ece(proba: np.ndarray, y: np.ndarray, classes: list[int], bins: int = 10) -> float:
    """Expected calibration error of the most probable class: its probability against how often
    it is right."""
    top = np.argmax(proba, axis=1)
    return ece(proba[np.arange(len(y)), top], np.array(classes)[top] == y, bins)


def type_metrics(proba: np.ndarray, y: np.ndarray, objects: np.ndarray, seed: int = 0) -> dict:
    """What a follow-up astronomer reads: among true supernovae the type is the argmax over the four
    SN classes; accuracy, macro F1, per-class recall and precision with 90% intervals over objects,
    the confusion matrix over all five classes (argmax), and the calibration of the top class."""
    classes = list(SN_CLASSES)
    sn_idx = [classes.index(c) for c in SUPERNOVA_CLASSES]
    is_sn = np.isin(y, SUPERNOVA_CLASSES)
    out: dict = {"n_supernova_views": int(is_sn.sum()), "n_objects": len(np.unique(objects))}
    if is_sn.any():
        ysn, osn = y[is_sn], objects[is_sn]
        pred = np.array(SUPERNOVA_CLASSES)[np.argmax(proba[is_sn][:, sn_idx], axis=1)]
        present = [c for c in SUPERNOVA_CLASSES if (ysn == c).any()]
        out["type_accuracy"] = round(float((pred == ysn).mean()), 4)
        out["type_accuracy_90ci"] = _object_bootstrap(osn, lambda i: float((pred[i] == ysn[i]).mean()), seed)
        out["type_macro_f1"] = round(float(f1_score(ysn, pred, labels=present, average="macro")), 4)
        out["type_macro_f1_90ci"] = _object_bootstrap(
            osn, lambda i: float(f1_score(ysn[i], pred[i], labels=present, average="macro")), seed)

        def recall(c):
            return lambda i: float((pred[i][ysn[i] == c] == c).mean()) if (ysn[i] == c).any() else None

        def precision(c):
            return lambda i: float((ysn[i][pred[i] == c] == c).mean()) if (pred[i] == c).any() else None

        out["type_per_class"] = {
            LABELS[c]: {"n": int((ysn == c).sum()), "objects": len(np.unique(osn[ysn == c])),
                        "recall": round(float((pred[ysn == c] == c).mean()), 4),
                        "recall_90ci": _object_bootstrap(osn, recall(c), seed),
                        "precision": round(float((ysn[pred == c] == c).mean()), 4)
                        if (pred == c).any() else None,
                        "precision_90ci": _object_bootstrap(osn, precision(c), seed)}
            for c in present}
    pred_all = np.array(classes)[np.argmax(proba, axis=1)]
    out["confusion"] = {"rows_true_cols_predicted": [LABELS[c] for c in classes],
                        "matrix": [[int(((y == a) & (pred_all == b)).sum()) for b in classes]
                                   for a in classes]}
    out["top_class_calibration_error"] = round(top_label_ece(proba, y, classes), 4)
    return out


def _ia_vs_each_type(p_ia: np.ndarray, y: np.ndarray, objects: np.ndarray | None) -> dict:
    """The Ia vs CC AUC taken apart: Ia against each other type alone. Where the confusion lies
    (Ib/c light curves resemble Ia ones; II and SLSN differ in duration and colour)."""
    out = {}
    for cc in SUPERNOVA_CLASSES[1:]:
        m = np.isin(y, (SN_IA, cc))
        if (y == SN_IA).any() and (y == cc).any():
            truth = y[m] == SN_IA
            entry = {"n": int((y == cc).sum()), "auc": round(float(roc_auc_score(truth, p_ia[m])), 4)}
            if objects is not None:  # small sets: how many objects, and an interval once there are a few
                entry["objects"] = len(np.unique(objects[y == cc]))
                if entry["objects"] >= MIN_OBJECTS_FOR_INTERVAL:
                    entry["90ci"] = auc_interval(truth, p_ia[m], objects[m], seed=0)
            out[LABELS[cc]] = entry
    return out
