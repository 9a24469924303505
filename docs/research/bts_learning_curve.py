"""Research: how the classifiers' real-data figures grow with the number of real training objects
(docs/models.md, "How much more real data would buy"). Not part of the service.

    OMP_NUM_THREADS=2 .venv/bin/python docs/research/bts_learning_curve.py --data-dir ../shared/data \
        [--model supernova|rrlyrae]

Stage 1 builds the model's training and held-out views exactly as `alert-classifier train` does (seed
42) and caches their features (~3 min). Stage 2 refits the model (the shipped recipe: `train.fit` and
the model's weights) with only a fraction of the real training objects, drawn per class: the ZTF BTS
objects for the supernova model (the others leave the fit with their copies seen farther), the EROS-1
stars for the RR Lyrae model (with their views against other template levels). Every other survey
stays whole. Each fit is judged as the card judges the shipped model: the supernova model on the
held-out BTS objects (full curves and 3rd detections), without the temperature and the few-detection
step (neither moves a full curve's argmax); the RR Lyrae model on the held-out EROS-1 stars whose
labels pass the audit (one alert's year, whole histories). The supernova templates behind five
features stay those built from every BTS training object, so the smaller fractions are slightly
flattered. Nothing here chooses anything shipped: it measures how steep the curves are, to say what
more real data would buy.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
from summary import type_figures  # docs/research/summary.py

from models.taxonomy import RR_LYRAE, SN_CLASSES
from models.train import train as T
from models.train.metrics import rrl_metrics


def build_supernova(ts: T.TrainingSet) -> dict:
    sn_train, sn_test, _, _ = T.supernova_views(ts)
    bts = sn_test.subset(T.from_sources(sn_test.source, "bts"))
    y = T.sn_labels(sn_train.y)
    return {
        "X": sn_train.X, "y": y, "weights_of": T.sn_weights, "source": sn_train.source,
        "parent": np.array([c.object_id.removesuffix(T.farther.SOURCE_SUFFIX) for c in sn_train.curves]),
        "real_objects": {c.object_id: c.class_id for c in ts.train_c if c.source == "bts"},
        "test_X": bts.X, "test_y": bts.y, "test_early": bts.early,
        "test_points": np.array([len(c.t) for c in bts.curves]),
        "test_objects": np.array([c.object_id for c in bts.curves]),
    }


def build_rrlyrae(ts: T.TrainingSet) -> dict:
    fit_views = T.rrl_training_views(ts.train) + T.rrl_training_views(ts.at_levels)
    test = ts.test.subset(np.array([len(c.t) >= T.RRL_MIN_POINTS for c in ts.test.curves]))
    test = test.subset(T.from_sources(test.source, "eros") & ~test.doubted)
    y = (fit_views.y == RR_LYRAE).astype(int)
    return {
        "X": fit_views.X, "y": y, "weights_of": T.rrl_weights, "source": fit_views.source,
        "parent": np.array([c.object_id for c in fit_views.curves]),
        "real_objects": {c.object_id: c.class_id for c in ts.train_c if c.source.startswith("eros")},
        "test_X": test.X, "test_y": test.y == RR_LYRAE, "test_kind": test.kind,
    }


def draw(objects: dict[str, int], fraction: float, rng: np.random.Generator) -> set[str]:
    """`fraction` of the real training objects of every class (at least one of each)."""
    kept: set[str] = set()
    for class_id in sorted(set(objects.values())):
        members = sorted(o for o, c in objects.items() if c == class_id)
        n = max(1, round(fraction * len(members)))
        kept |= {members[i] for i in rng.permutation(len(members))[:n]}
    return kept


def judge_supernova(model, d: dict, seed: int) -> dict:
    proba = model.predict_proba(d["test_X"])[:, [list(model.classes_).index(c) for c in SN_CLASSES]]
    masks = {"full": ~d["test_early"], "first_3": d["test_early"] & (d["test_points"] == 3)}
    return type_figures(proba, d["test_y"], d["test_objects"], masks, seed)


def judge_rrlyrae(model, d: dict, seed: int) -> dict:
    prob = model.predict_proba(d["test_X"])[:, 1]
    out = {}
    for kind in ("latest", "history"):
        m = d["test_kind"] == kind
        r = rrl_metrics(prob[m], d["test_y"][m])
        out[kind] = {k: r[k] for k in ("n", "completeness", "contamination", "auc", "at_contamination_0.05")}
    return out


BUILD = {"supernova": build_supernova, "rrlyrae": build_rrlyrae}
JUDGE = {"supernova": judge_supernova, "rrlyrae": judge_rrlyrae}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", choices=sorted(BUILD), default="supernova")
    parser.add_argument("--cache", type=Path, default=None, help="default /tmp/learning_curve_<model>.pkl")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--draws", type=int, default=4, help="draws of each fraction below 1")
    parser.add_argument("--first-draw", type=int, default=0, help="skip the draws before this one")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    cache = args.cache or Path(f"/tmp/learning_curve_{args.model}.pkl")
    if cache.is_file():
        d = pickle.loads(cache.read_bytes())
    else:
        d = BUILD[args.model](T.load_training_set(args.data_dir, args.seed))
        cache.write_bytes(pickle.dumps(d))
    from_real = np.isin(d["parent"], list(d["real_objects"]))  # their views and copies
    print(f"{len(d['y'])} training views, {from_real.sum()} from {len(d['real_objects'])} real objects; "
          f"{len(d['test_y'])} held-out views", flush=True)
    for fraction in args.fractions:
        for r in range(args.first_draw, 1 if fraction >= 1 else args.draws):
            t0 = time.monotonic()
            rng = np.random.default_rng([args.seed, r, int(fraction * 100)])
            kept = draw(d["real_objects"], fraction, rng)
            keep = ~from_real | np.isin(d["parent"], list(kept))
            y = d["y"][keep]
            model = T.fit(d["X"][keep], y, args.seed, d["weights_of"](y, d["source"][keep]))
            row = {"fraction": fraction, "draw": r, "real_objects": len(kept), "views": int(keep.sum())}
            row |= JUDGE[args.model](model, d, args.seed)
            print(json.dumps(row), f"({time.monotonic() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
