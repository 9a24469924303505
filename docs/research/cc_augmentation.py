"""Research: do more copies of the real core-collapse supernovae stand in for more real objects?
(docs/models.md, "How much more real data would buy"). Not part of the service.

    OMP_NUM_THREADS=2 .venv/bin/python docs/research/cc_augmentation.py --data-dir ../shared/data

The learning curve says SN Ib/c recall grows with the number of real BTS objects. Here each BTS
training object of a core-collapse type (II, Ib/c, SLSN), or every BTS training object, is also seen
farther a second time (`farther.seen_farther`, another noise draw and so other detections), and the
supernova model's recipe is judged by 3-fold out-of-fold predictions over the BTS training objects
(a fold's objects leave the fit with all their copies; the held-out BTS split is never read; the
templates are not rebuilt per fold, alike for every arm).
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from models.taxonomy import SLSN, SN_CLASSES, SN_IBC, SN_II
from models.train import train as T
from models.train.metrics import sn_metrics, type_metrics


def build(data_dir: Path, seed: int) -> dict:
    ts = T.load_training_set(data_dir, seed)
    sn_train, *_ = T.supernova_views(ts)
    bts = [c for c in ts.train_c if c.source == "bts"]
    extra = {}
    for name, classes in (("cc", (SN_II, SN_IBC, SLSN)), ("all", None)):
        chosen = [c for c in bts if classes is None or c.class_id in classes]
        far = T.farther.farther_curves(chosen, np.random.default_rng(seed + 500))
        views = T.make_views(far, np.random.default_rng(seed + 501), band_subsets=True)
        views = T._for_sn(views, synthetic=True)
        views.X = T._extract_with_progress(views.curves)
        extra[name] = views
    return {"train": sn_train, "extra": extra}


def parents(views: T.Views) -> np.ndarray:
    return np.array([c.object_id.removesuffix(T.farther.SOURCE_SUFFIX) for c in views.curves])


def out_of_fold(views: T.Views, judged: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities (SN_CLASSES order) for views[judged] (observed BTS views), 3 folds by object."""
    y = T.sn_labels(views.y)
    weights = T.sn_weights(y, views.source)
    parent = parents(views)
    objects = parent[judged]
    oof = np.zeros((len(judged), len(SN_CLASSES)))
    splitter = StratifiedGroupKFold(T.CALIBRATION_FOLDS, shuffle=True, random_state=seed)
    for _, held in splitter.split(judged, y[judged], objects):
        keep = ~np.isin(parent, objects[held])
        model = T.fit(views.X[keep], y[keep], seed, weights[keep])
        columns = [list(model.classes_).index(c) for c in SN_CLASSES]
        oof[held] = model.predict_proba(views.X[judged[held]])[:, columns]
    return oof


def figures(proba: np.ndarray, views: T.Views, seed: int) -> dict:
    y = T.sn_labels(views.y)
    n_points = np.array([len(c.t) for c in views.curves])
    objects = np.array([c.object_id for c in views.curves])
    full = np.isin(views.kind, ("latest", "window", "history"))
    out = {}
    for name, m in (("full", full), ("first_3", views.early & (n_points == 3))):
        sn = sn_metrics(proba[m], y[m], views.source[m])
        types = type_metrics(proba[m], y[m], objects[m], seed)
        out[name] = {"n": int(m.sum()), "ia_vs_cc_auc": sn.get("ia_vs_cc_auc"),
                     "type_accuracy": types.get("type_accuracy"), "type_macro_f1": types.get("type_macro_f1"),
                     "recall": {k: v["recall"] for k, v in types.get("type_per_class", {}).items()}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/cc_augmentation.pkl"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.cache.is_file():
        d = pickle.loads(args.cache.read_bytes())
    else:
        d = build(args.data_dir, args.seed)
        args.cache.write_bytes(pickle.dumps(d))
    base: T.Views = d["train"]
    observed = base.source == "bts"  # the observed BTS views: the same rows in every arm
    judged = np.flatnonzero(observed)
    for name, views in (("shipped recipe", base), ("+ CC seen farther again", base + d["extra"]["cc"]),
                        ("+ every BTS object seen farther again", base + d["extra"]["all"])):
        proba = out_of_fold(views, judged, args.seed)
        row = {"arm": name, "views": len(views.curves)} | figures(proba, base.subset(observed), args.seed)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
