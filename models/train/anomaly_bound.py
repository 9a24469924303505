"""How far the anomaly model's features can go: a classifier trained *on* the rare labels, rare vs
common, scored out of fold over the same judging objects as the anomaly card. An anomaly detector
never sees those labels, so this supervised figure bounds the AUROC any detector on the same
features can reach; it says whether a target needs a better detector or new information.

    python -m models.train.anomaly_bound [--data-dir ../shared/data] [--seed 42] [--folds 5]

Prints one JSON object: per judging set (real, simulated) and feature set (the anomaly model's
subset, all features), the out-of-fold AUROC, with the numbers of rare and judged objects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from models import features
from models.train.anomaly import ANOMALY_FEATURES, judging_sets
from models.train.train import load_training_set
from service.settings import Settings

# Stands for "undefined" so that a column all-NaN inside one fold does not trip the binning; the
# boosted trees split it off like any other value.
UNDEFINED = -999.0


def supervised_bound(X: np.ndarray, rare: np.ndarray, seed: int, folds: int) -> float:
    model = HistGradientBoostingClassifier(random_state=seed)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    p = cross_val_predict(model, np.nan_to_num(X, nan=UNDEFINED), rare, cv=splitter,
                          method="predict_proba")[:, 1]
    return round(float(roc_auc_score(rare, p)), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Settings().training_data_dir)
    parser.add_argument("--seed", type=int, default=42, help="the training seed (it fixes the split)")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    if not (args.data_dir / "plasticc-train").is_dir():
        print(f"no training datasets under {args.data_dir}: pass --data-dir", file=sys.stderr)
        return 2
    ts = load_training_set(args.data_dir, args.seed)
    names = list(features.FEATURE_NAMES)
    subsets = {"anomaly_features": [names.index(n) for n in ANOMALY_FEATURES],
               "all_features": list(range(len(names)))}
    report: dict = {}
    for set_name, (X, rare, _half) in judging_sets(ts.train, ts.test).items():
        report[set_name] = {"rare": int(rare.sum()), "objects": len(rare)}
        for subset, cols in subsets.items():
            report[set_name][f"supervised_auroc_{subset}"] = supervised_bound(X[:, cols], rare, args.seed,
                                                                              args.folds)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
