"""Does the rrlyrae model depend on how alerts are made from a star's photometry?

`python -m models.train.detection_rules` (~2 min). The training's views of real stars are
difference fluxes against each band's median flux, keeping the epochs whose flux differs from it by
more than Rubin's difference imaging would detect (`datasets.rubin_detects`: 2.5%). Rubin subtracts
a template, a coadd of some earlier epochs, so the level a variable star's fluxes are measured
against is their mean over those epochs, not their median; and someone who builds alerts from the
same stars may draw the detection line elsewhere. Here the shipped model judges the held-out EROS-1
stars (train's split, audited labels) with their views built by other rules and against other
levels. Views under the model's minimum of points count as misses, as the service declines them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from models import features
from models.registry import Registry
from models.taxonomy import RR_LYRAE
from models.train import datasets, train

RULES: dict[str, datasets.DetectionRule] = {
    "changes above 2.5% (the training's)": datasets.rubin_detects,
    "every epoch": lambda diff, _level, _err: np.ones(len(diff), dtype=bool),
    "changes above 5%": lambda diff, level, _err: np.abs(diff) > 0.05 * level,
    "3 sigma of EROS-1's own errors": lambda diff, _level, err: np.abs(diff) > 3 * err,
    "5 sigma of EROS-1's own errors": lambda diff, _level, err: np.abs(diff) > 5 * err,
}
EROS_SPLIT_SEED_OFFSET = 2  # train.split_surveys: EROS-1 is the third survey
LEVELS: dict[str, Callable[[np.ndarray], float]] = {"the median (the training's median views)": np.median} | {
    f"the {name} (a template)": make(0) for name, make in train.TEMPLATE_LEVELS.items()}


def held_out_stars(data_dir: Path, seed: int) -> dict[str, str]:
    """The EROS-1 stars `train` holds out: object id -> why its label is doubted ("" if it is not)."""
    _, held = train.split_by_object(datasets.load_eros(data_dir), seed + EROS_SPLIT_SEED_OFFSET)
    return {c.object_id: c.label_doubt for c in held}


def judge(model, curves: list[datasets.Curve], kind: str) -> dict:
    """The model's figures at threshold 0.5 on the curves' views of one kind, audited labels."""
    views = train.make_views(curves, np.random.default_rng(0))
    views = views.subset((views.kind == kind) & ~views.doubted)
    n_points = np.array([len(c.t) for c in views.curves])
    p = model.predict_proba(features.extract(views.curves))[:, model.class_ids.index(RR_LYRAE)]
    p[n_points < train.RRL_MIN_POINTS] = 0.0
    truth, called = views.y == RR_LYRAE, p >= 0.5
    tp, fp = int((called & truth).sum()), int((called & ~truth).sum())
    return {"views": len(p), "median_points": float(np.median(n_points)),
            "completeness": tp / truth.sum(), "contamination": fp / (tp + fp) if tp + fp else float("nan"),
            "auc": roc_auc_score(truth, p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    held = held_out_stars(args.data_dir, args.seed)
    model = Registry(names=["rrlyrae"]).models["rrlyrae"]
    judged: list[tuple[str, list[datasets.Curve]]] = []
    for name, rule in RULES.items():
        judged.append((f"detections: {name}", [replace(c, label_doubt=held[c.object_id])
                                               for c in datasets.load_eros(args.data_dir, rule)
                                               if c.object_id in held]))
    as_trained = judged[0][1]  # the training's rule: the same stars against other levels
    for name, level in LEVELS.items():
        moved = [r for c in as_trained if (r := datasets.relevel(c, level)) is not None]
        judged.append((f"level: {name}", moved))
    for name, curves in judged:
        for kind in ("latest", "history"):
            r = judge(model, curves, kind)
            print(f"{name:60s} {kind:8s} {r['views']:4d} views, median {r['median_points']:4.0f} points: "
                  f"completeness {r['completeness']:.3f}, contamination {r['contamination']:.3f}, "
                  f"AUC {r['auc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
