"""The supernova model on the simulated supernovae nearest to Rubin's wide-fast-deep stream: the
PLAsTiCC *training* objects `train` holds out (its split, same seed) that were observed in the
wide-fast-deep survey (metadata `ddf_bool` 0), each at its latest alert and with its whole history,
classified by the shipped models through the registry. The PLAsTiCC *test* objects (fainter,
farther: what the science issue's row names) are not in ../shared, so this is the nearest proxy,
and an optimistic one (brighter, nearer objects). Deep-drilling objects are reported beside it.

    python -m models.train.plasticc_wfd [--data-dir ../shared/data] [--seed 42] [--artifacts DIR]

Prints one JSON object: per set, SN recall, Ia vs core-collapse AUC (thermonuclear subtypes count
as Ia), the median number of detections, and the same at redshift >= 0.5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from models.registry import Registry
from models.taxonomy import SN_CLASSES, SUPERNOVA_CLASSES
from models.train import datasets
from models.train.metrics import sn_metrics
from models.train.packets import held_out_check_arguments
from models.train.train import load_surveys, make_views, sn_labels, split_surveys

FAR_Z = 0.5


def deep_drilling(data_dir: Path) -> dict[str, bool]:
    """PLAsTiCC object id (as `load_plasticc` names it) -> observed in a deep-drilling field."""
    meta = pd.read_csv(data_dir / "plasticc-train" / "plasticc_train_metadata.csv.gz", skipinitialspace=True)
    meta.columns = [c.strip() for c in meta.columns]
    return {f"plasticc-{int(o)}": bool(d) for o, d in zip(meta["object_id"], meta["ddf_bool"], strict=True)}


def judge(registry: Registry, curves: list[datasets.Curve]) -> dict:
    """SN recall and Ia vs CC of the supernova model on these views (declined ones counted apart)."""
    proba, keep = [], []
    for i, results in enumerate(registry.classify(curves)):
        sn = next(r for r in results if r.classifier == "supernova")
        if sn.reason is not None:
            continue
        p = {c["classId"]: c["probability"] for c in sn.classifications}
        proba.append([p.get(c, 0.0) for c in SN_CLASSES])
        keep.append(i)
    y = sn_labels(np.array([curves[i].class_id for i in keep]))
    out = sn_metrics(np.array(proba), y, np.full(len(y), "plasticc"))
    detections = [int(curves[i].detected.sum()) for i in keep]
    return {"views": len(keep), "declined": len(curves) - len(keep),
            "median_detections": float(np.median(detections)), "sn_recall": out["sn_recall"],
            "ia_vs_cc_auc": out.get("ia_vs_cc_auc")}


def main(argv: list[str] | None = None) -> int:
    args = held_out_check_arguments(__doc__, argv)
    if not (args.data_dir / "plasticc-train").is_dir():
        print(f"no plasticc-train folder under {args.data_dir}: pass --data-dir", file=sys.stderr)
        return 2
    _, held_out = split_surveys(load_surveys(args.data_dir), args.seed)
    supernovae = [c for c in held_out if c.source == "plasticc" and c.class_id in SUPERNOVA_CLASSES]
    views = make_views(supernovae, np.random.default_rng(args.seed))
    chosen = np.isin(views.kind, ["latest", "history"])
    curves = [c for c, keep in zip(views.curves, chosen, strict=True) if keep]
    ddf = deep_drilling(args.data_dir)
    registry = Registry(args.artifacts)
    report = {"objects": len(supernovae), "models": {n: m.version for n, m in registry.models.items()}}
    sets = {"wide_fast_deep": [c for c in curves if not ddf[c.object_id]],
            "deep_drilling": [c for c in curves if ddf[c.object_id]]}
    sets[f"wide_fast_deep_z_{FAR_Z}_or_more"] = [c for c in sets["wide_fast_deep"] if c.redshift >= FAR_Z]
    for name, chosen_curves in sets.items():
        print(f"[plasticc_wfd] {name}: {len(chosen_curves)} views", file=sys.stderr, flush=True)
        report[name] = judge(registry, chosen_curves)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
