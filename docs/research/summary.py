"""What the research scripts print of a supernova model's predictions: per set of views, Ia vs CC
AUC, type accuracy, macro F1 and the recall of each type (the card's measures, models/train/metrics.py)."""

from __future__ import annotations

import numpy as np

from models.train.metrics import sn_metrics, type_metrics


def type_figures(proba: np.ndarray, y: np.ndarray, objects: np.ndarray, masks: dict[str, np.ndarray],
                 seed: int) -> dict:
    """`proba` in SN_CLASSES order, `y` the views' classes; one entry per named mask of views."""
    out = {}
    for name, m in masks.items():
        sn = sn_metrics(proba[m], y[m], np.full(int(m.sum()), "bts"))
        types = type_metrics(proba[m], y[m], objects[m], seed)
        out[name] = {"n": int(m.sum()), "ia_vs_cc_auc": sn.get("ia_vs_cc_auc"),
                     "type_accuracy": types.get("type_accuracy"), "type_macro_f1": types.get("type_macro_f1"),
                     "recall": {k: v["recall"] for k, v in types.get("type_per_class", {}).items()}}
    return out
