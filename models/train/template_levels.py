"""Should the rrlyrae model also learn stars measured against a template's level? (how 2.5.0 was chosen)

`python -m models.train.template_levels [--data-dir ../shared/data]` (~8 min). Rubin measures a
variable star's changes against a template, a coadd of some epochs, not against its median. Here
3-fold cross-validation by object over the *training* split (the held-out split is not read) fits
the rrlyrae model with and without the stars' views at `train.TEMPLATE_LEVELS`, and scores the
out-of-fold EROS-1 stars (audited labels) at the median and at each template level: completeness /
contamination at 0.5 / AUC for one alert's year and whole histories, and the AUC over every view.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from models.taxonomy import RR_LYRAE
from models.train import train
from models.train.datasets import from_sources
from models.train.metrics import rrl_metrics

FOLDS = 3


def _fold(views: train.Views) -> np.ndarray:
    """A stable fold per object (a star's views at every level share it)."""
    return np.array([zlib.crc32(c.object_id.encode()) % FOLDS for c in views.curves])


def out_of_fold(base: train.Views, at_levels: train.Views, learn_levels: bool,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """p(RR Lyrae) of every view of `base` (median levels) and of `at_levels`, each from the fold
    model that did not see its object; with `learn_levels` the fold models also learn the other
    folds' views at the template levels."""
    p_base, p_levels = np.zeros(len(base.curves)), np.zeros(len(at_levels.curves))
    fb, fl = _fold(base), _fold(at_levels)
    for f in range(FOLDS):
        views = base.subset(fb != f)
        if learn_levels:
            views = views + at_levels.subset(fl != f)
        y = views.y == RR_LYRAE
        model = train.fit(views.X, y.astype(int), seed, train.rrl_weights(y, views.source))
        p_base[fb == f] = model.predict_proba(base.X[fb == f])[:, 1]
        p_levels[fl == f] = model.predict_proba(at_levels.X[fl == f])[:, 1]
    return p_base, p_levels


def report(name: str, base: train.Views, p_base: np.ndarray, at_levels: train.Views,
           p_levels: np.ndarray) -> None:
    print(f"{name}: every view AUC {roc_auc_score(base.y == RR_LYRAE, p_base):.4f}")
    judged = [("the median", base, p_base)] + [
        (f"the {level}", at_levels.subset(at_levels.level == level), p_levels[at_levels.level == level])
        for level in train.TEMPLATE_LEVELS]
    for level, views, p in judged:
        for kind in ("latest", "history"):
            m = from_sources(views.source, "eros") & (views.kind == kind)
            r = rrl_metrics(p[m], views.y[m] == RR_LYRAE)
            print(f"  EROS-1 {kind:8s} against {level:20s} completeness {r['completeness']:.3f}, "
                  f"contamination {r['contamination']:.3f}, AUC {r['auc']:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    ts = train.load_training_set(args.data_dir, args.seed)
    base, at_levels = train.rrl_training_views(ts.train), train.rrl_training_views(ts.at_levels)
    for name, learn_levels in (("median views only (2.4.0's recipe)", False),
                               ("+ views at template levels (2.5.0)", True)):
        p_base, p_levels = out_of_fold(base, at_levels, learn_levels, args.seed)
        report(name, base, p_base, at_levels, p_levels)


if __name__ == "__main__":
    main()
