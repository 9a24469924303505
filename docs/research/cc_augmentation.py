"""Research: do more copies of the real core-collapse supernovae stand in for more real objects?
(docs/models.md, "How much more real data would buy"). Not part of the service.

    OMP_NUM_THREADS=2 .venv/bin/python docs/research/cc_augmentation.py --data-dir ../shared/data

The learning curve says SN Ib/c recall grows with the number of real BTS objects. Here each BTS
training object of a core-collapse type (II, Ib/c, SLSN), or every BTS training object, is also seen
farther a second time (`farther.seen_farther`, another noise draw and so other detections), and the
supernova model's recipe is judged by the 3-fold out-of-fold predictions over the BTS training
objects that `train` calibrates on (`train._bts_out_of_fold`: a fold's objects leave the fit with all
their copies, the templates are rebuilt without them; the held-out BTS split is never read).
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
from summary import type_figures  # docs/research/summary.py

from models.taxonomy import SLSN, SN_CLASSES, SN_IBC, SN_II
from models.train import train as T


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
    return {"train": sn_train, "extra": extra, "bts_objects": bts}


def figures(proba: np.ndarray, views: T.Views, seed: int) -> dict:
    n_points = np.array([len(c.t) for c in views.curves])
    objects = np.array([c.object_id for c in views.curves])
    masks = {"full": np.isin(views.kind, ("latest", "window", "history")),
             "first_3": views.early & (n_points == 3)}
    return type_figures(proba, T.sn_labels(views.y), objects, masks, seed)


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
    for name, views in (("shipped recipe", base), ("+ CC seen farther again", base + d["extra"]["cc"]),
                        ("+ every BTS object seen farther again", base + d["extra"]["all"])):
        oof, _, classes = T._bts_out_of_fold(views, T.sn_labels(views.y), args.seed, d["bts_objects"])
        proba = oof[:, [classes.index(c) for c in SN_CLASSES]]
        row = {"arm": name, "views": len(views.curves)} | figures(proba, base.subset(observed), args.seed)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
