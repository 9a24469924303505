"""How the shipped anomaly model ranks objects the way the service meets them: alert by alert.

The card judges each object by one alert, its last one with a year of history. The service scores
every alert (each detection sends one), keeps the object's earlier detections in its store, and
`GET /v1/anomalies` ranks objects by their highest score in a time window. This replays every
judging object of the card (same objects, same halves) as that stream of alerts: at each detection,
the curve of every detection so far, scored by the committed model through the registry, as the
service does (alerts with too few points are declined there, so here too). It reports, per judging
set and half, the rare-vs-common AUROC of

- `latest`: the last alert alone (every detection, as the store holds them);
- `highest`: each object's highest score over its alerts (a window covering its whole life);
- `every_alert`: every scored alert on its own (what nightly rankings see, pooled over nights),

and how many rare objects no alert scored at all. Nothing is fitted: a measurement of what ships.

    python -m models.train.anomaly_alerts [--data-dir ../shared/data] [--max-alerts 40]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from models import features
from models.registry import Registry
from models.train.anomaly import JUDGING_SETS, _half, judged_as
from models.train.train import load_surveys, progress, split_surveys
from service.settings import Settings

UNSCORED = -1.0  # an object no alert scored ranks below every scored one


def alert_curves(c, max_alerts: int) -> list:
    """The curves of the object's alerts (at most `max_alerts`, evenly over its detections, the
    last always): at each, every detection so far."""
    det = c.window(c.detected)
    n = len(det.t)
    at = np.unique(np.linspace(0, n - 1, min(n, max_alerts)).round().astype(np.int64))
    return [det.window(np.arange(n) <= k) for k in at]


def auroc(rare: np.ndarray, score: np.ndarray) -> float | None:
    return round(float(roc_auc_score(rare, score)), 4) if 0 < rare.sum() < len(rare) else None


def measure(curves: list, rare: np.ndarray, half: np.ndarray, model, max_alerts: int) -> dict:
    owner, alerts = [], []
    for k, c in enumerate(curves):
        views = alert_curves(c, max_alerts)
        alerts += views
        owner += [k] * len(views)
    owner = np.array(owner)
    progress(f"  {len(curves)} objects, {len(alerts)} alerts: extracting features")
    scores = np.empty(len(alerts))
    for start in range(0, len(alerts), 5000):
        chunk = alerts[start:start + 5000]
        X = features.extract(chunk)
        results = model.classify(X, np.array([len(a.t) for a in chunk]))
        scores[start:start + len(chunk)] = [UNSCORED if r.score is None else r.score for r in results]
        progress(f"    {start + len(chunk)}/{len(alerts)}")
    last = np.r_[owner[1:] != owner[:-1], True]
    latest = scores[last]
    highest = np.full(len(curves), UNSCORED)
    np.maximum.at(highest, owner, scores)
    out = {}
    for h, name in ((0, "selection_half"), (1, "report_half")):
        m = half == h
        am = m[owner] & (scores != UNSCORED)
        out[name] = {"objects": int(m.sum()), "rare": int(rare[m].sum()),
                     "latest": auroc(rare[m], latest[m]), "highest": auroc(rare[m], highest[m]),
                     "every_alert": auroc(rare[owner][am], scores[am]),
                     "alerts_scored": int(am.sum()),
                     "rare_never_scored": int((rare & m & (highest == UNSCORED)).sum())}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Settings().training_data_dir)
    parser.add_argument("--seed", type=int, default=42, help="the training seed (it fixes the split)")
    parser.add_argument("--max-alerts", type=int, default=40, help="alerts replayed per object")
    args = parser.parse_args(argv)
    if not (args.data_dir / "plasticc-train").is_dir():
        print(f"no training datasets under {args.data_dir}: pass --data-dir", file=sys.stderr)
        return 2
    model = Registry(names=["anomaly"]).models["anomaly"]
    train_c, test_c = split_surveys(load_surveys(args.data_dir), args.seed)
    report: dict = {"model": f"anomaly {model.version}", "max_alerts_per_object": args.max_alerts}
    for set_name in JUDGING_SETS:
        picked = [(c, judged) for cs, held_out in ((train_c, False), (test_c, True)) for c in cs
                  if (judged := judged_as(set_name, c, held_out)) is not None]
        progress(f"{set_name}:")
        report[set_name] = measure([c for c, _ in picked], np.array([r for _, r in picked]),
                                   np.array([_half(c.object_id) for c, _ in picked]), model, args.max_alerts)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
