"""The shipped anomaly model judged on every real rare transient, the BTS training split's included.

The card's `real_unseen` set holds the held-out split's rare objects only (13), because the
classifiers learnt the training split's (SLSN as SLSN, TDEs and novae as Residual) and the anomaly
model reads their probabilities. Here the training split's rare BTS objects are judged too, with
what the supernova model would say of them had it never seen them: its out-of-fold probabilities
from `train`'s calibration folds (each third of the BTS training objects predicted by a model fitted
without them, on features whose supernova templates were built without them), put through the
shipped model's own calibration (temperature and few-detection step, from its card) and fed to the
shipped anomaly graph in place of its embedded supernova model's output. Everything else is the
shipped model: the feature mixture, the view mixture, the RR Lyrae model (which did see these
objects, as non-RR Lyrae). Commons are the held-out real ones (SN Ia and II, variable stars), as in
the card. Needs ../shared/data; ~8 min. The shipped supernova model is refitted on every BTS object
(train.FINAL_FIT_ON_EVERY_BTS_OBJECT), so the held-out objects too get the probabilities of a fit
that never saw them where one ships: the validation fit (`<artifacts>/validation/`).

    python -m models.train.anomaly_oof [--data ../shared/data] [--seed 42]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
from onnx import TensorProto, helper
from sklearn.metrics import roc_auc_score

from models.registry import ARTIFACTS
from models.train import few_points, train
from models.train.anomaly import _half, is_common_real, is_rare, top_fraction_precision
from models.train.train import progress

SN_INSIDE = "c_sn_probabilities"  # the anomaly graph's tensor of its embedded supernova model's output


def score_with_supernova_probabilities(anomaly: Path) -> ort.InferenceSession:
    """The anomaly graph cut at its embedded supernova model's output: (features, supernova
    probabilities) -> score, the rest of the graph as shipped."""
    model = onnx.load(anomaly)
    model.graph.value_info.append(helper.make_tensor_value_info(SN_INSIDE, TensorProto.FLOAT, [None, None]))
    cut = onnx.utils.Extractor(model).extract_model(["features", SN_INSIDE], ["score"])
    return ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])


def shipped_calibration(card: dict, oof: np.ndarray, classes: list[int], X: np.ndarray) -> np.ndarray:
    """Out-of-fold probabilities (columns `classes`) as the shipped graph would give them: softened by
    its temperature, then its few-detection step; columns in the card's class order."""
    cal = card["calibration"]
    proba = train.soften(oof, cal["temperature"])
    few = few_points.FewPointCalibration(tuple(classes), cal["few_points"]["scale"],
                                         tuple(cal["few_points"]["shift"][str(c)] for c in classes))
    proba = few.apply(proba, X)
    return proba[:, [classes.index(c) for c in card["class_ids"]]]


def auroc(rare: np.ndarray, common: np.ndarray) -> float:
    """AUROC of the rare objects' scores against the common ones'."""
    return float(roc_auc_score(np.r_[np.ones(len(rare)), np.zeros(len(common))], np.r_[rare, common]))


def auroc_interval(rare: np.ndarray, common: np.ndarray, seed: int, n_boot: int = 1000) -> list[float]:
    """90% bootstrap interval, rare and common objects resampled apart."""
    rng = np.random.default_rng(seed)
    aucs = [auroc(rng.choice(rare, len(rare)), rng.choice(common, len(common))) for _ in range(n_boot)]
    return [round(float(x), 3) for x in np.quantile(aucs, [0.05, 0.95])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    folder = ARTIFACTS / "anomaly" / sorted(p.name for p in (ARTIFACTS / "anomaly").iterdir())[-1]
    anomaly_card = json.loads((folder / "card.json").read_text())
    sn_version = anomaly_card["classifier_view"]["classifiers"]["supernova"]["version"]
    sn_card = json.loads((ARTIFACTS / "supernova" / sn_version / "card.json").read_text())
    progress(f"anomaly {anomaly_card['version']} with supernova {sn_version}'s out-of-fold probabilities")

    ts = train.load_training_set(args.data, args.seed)
    sn_train, *_ = train.supernova_views(ts)
    ysn = train.sn_labels(sn_train.y)
    oof, bts, classes = train._bts_out_of_fold(sn_train, ysn, args.seed,
                                               [c for c in ts.train_c if c.source == "bts"])
    rows = [j for j, i in enumerate(bts) if sn_train.kind[i] == "latest" and is_rare(sn_train.curves[i])]
    X_rare = sn_train.X[bts[rows]]
    proba = shipped_calibration(sn_card, oof[rows], classes, X_rare)

    cut = score_with_supernova_probabilities(folder / "model.onnx")
    shipped = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    oof_rare = cut.run(["score"], {"features": X_rare.astype(np.float32),
                                   SN_INSIDE: proba.astype(np.float32)})[0].ravel()
    test = ts.test
    latest = [i for i, c in enumerate(test.curves)
              if test.kind[i] == "latest" and ((c.source == "bts" and is_rare(c)) or is_common_real(c))]
    X_held = test.X[latest].astype(np.float32)
    validation = train.validation_supernova(ARTIFACTS, sn_version)
    if validation:  # the shipped supernova model saw the held-out objects: the fit that did not
        unseen = ort.InferenceSession(str(validation / "model.onnx"), providers=["CPUExecutionProvider"])
        held = cut.run(["score"], {"features": X_held, SN_INSIDE: unseen.run(None, {"features": X_held})[1]}
                       )[0].ravel()
    else:
        held = shipped.run(["score"], {"features": X_held})[0].ravel()
    held_rare = np.array([is_rare(test.curves[i]) for i in latest])
    held_half = np.array([_half(test.curves[i].object_id) for i in latest])
    common = held[~held_rare]

    # the same objects with the shipped supernova model's own probabilities: what the leak was worth
    in_sample = shipped.run(["score"], {"features": X_rare.astype(np.float32)})[0].ravel()
    out = {"rare_training_split_out_of_fold": len(oof_rare), "rare_held_out": int(held_rare.sum()),
           "common_held_out": len(common),
           "rare_kinds": sorted({sn_train.curves[bts[j]].subtype for j in rows})}
    for name, rare, com in (
            ("training-split rare (out of fold) vs held-out common", oof_rare, common),
            ("every rare vs held-out common", np.r_[oof_rare, held[held_rare]], common),
            ("no choice made on: training-split rare + report-half held-out rare vs report-half common",
             np.r_[oof_rare, held[held_rare & (held_half == 1)]], held[~held_rare & (held_half == 1)])):
        out[name] = {"rare": len(rare), "common": len(com), "auroc": round(auroc(rare, com), 3),
                     "auroc_90ci": auroc_interval(rare, com, args.seed),
                     "top_1pct_precision": round(top_fraction_precision(
                         np.r_[rare, com], np.r_[np.ones(len(rare), bool), np.zeros(len(com), bool)]), 3)}
        progress(f"{name}: {out[name]}")
    out["training-split rare with the shipped (in-sample) supernova model, for contrast"] = {
        "auroc": round(auroc(in_sample, common), 3)}
    kinds = np.array([sn_train.curves[bts[j]].subtype for j in rows]
                     + [test.curves[i].subtype for i in np.array(latest)[held_rare]])
    every = np.r_[oof_rare, held[held_rare]]
    out["per_kind_auroc_vs_held_out_common"] = {
        kind: {"objects": int((kinds == kind).sum()), "auroc": round(auroc(every[kinds == kind], common), 3)}
        for kind in sorted(set(kinds))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
