"""The supernova model judged the way the service meets real supernovae: each held-out ZTF BTS
object becomes Rubin packets (Confluent-framed Avro, the
latest schema), decoded, turned into light curves and classified by the same code as the stream
and `alert-classifier classify`: the alert at its last detection (its year of detections, "full")
and the alert at its 3rd detection ("first 3 detections").

    python -m models.train.packets [--data-dir ../shared/data] [--seed 42]

Prints one JSON object: per set, Ia vs core-collapse AUC, SN recall, the type metrics of the cards.
The model judged is the validation fit (`<artifacts>/validation/`, the one the card's figures are
of): the shipped model was refitted on every BTS object, these too (train.FINAL_FIT_ON_EVERY_BTS_OBJECT).
The card's figures come from feature rows built in training; these come through decode and the
registry, so the two agreeing is the check that the service classifies what was measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from models.registry import ARTIFACTS, Registry
from models.taxonomy import SN_CLASSES
from models.train import datasets
from models.train.metrics import sn_metrics, type_metrics
from models.train.train import VALIDATION_DIR, bts_split, sn_labels
from service.settings import Settings
from streaming.decode import DecodeError, Decoder, latest_version
from streaming.pipeline import classify_alerts
from streaming.simulate import alert_at, objects_from_curves

FIRST_DETECTIONS = 3


def packets_for(curves: list[datasets.Curve], decoder: Decoder, seed: int) -> dict[str, list]:
    """(packet bytes, class, object id) of every object's full and early alert."""
    version = latest_version()
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"full": [], "first_3_detections": []}
    for curve in curves:
        obj = objects_from_curves([curve])(rng)  # this curve, moved to Rubin's era, random ids and position
        for name, index in (("full", len(obj.t) - 1), ("first_3_detections", FIRST_DETECTIONS - 1)):
            if index < len(obj.t):
                packet = decoder.encode(alert_at(obj, index, version=version), version)
                out[name].append((packet, curve.class_id, curve.object_id))
    return out


def judge(registry: Registry, decoder: Decoder, packets: list, seed: int) -> dict:
    alerts = decoder.decode_batch([p for p, _, _ in packets])
    bad = [a for a in alerts if isinstance(a, DecodeError)]
    if bad:
        raise SystemExit(f"{len(bad)} packets did not decode, e.g. {bad[0]}: the check cannot go on")
    results = classify_alerts(alerts, registry)
    proba, keep = [], []
    for i, res in enumerate(results):
        sn = next(r for r in res["results"] if r["classifier"] == "supernova")
        if sn["reason"] is not None:  # declined (too few points): not judged, counted
            continue
        p = {c["classId"]: c["probability"] for c in sn["classifications"]}
        proba.append([p.get(c, 0.0) for c in SN_CLASSES])
        keep.append(i)
    proba = np.array(proba)
    y = np.array([packets[i][1] for i in keep])
    y = sn_labels(y)
    objects = np.array([packets[i][2] for i in keep])
    out = sn_metrics(proba, y, np.full(len(y), "bts"), None, objects)
    out |= type_metrics(proba, y, objects, seed)
    out["declined"] = len(packets) - len(keep)
    return out


def held_out_check_arguments(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """The arguments of a check of the shipped models on `train`'s held-out objects: where the data
    and the models are, and the training seed that fixed the split."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Settings().training_data_dir)
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS, help=f"models (default {ARTIFACTS})")
    parser.add_argument("--seed", type=int, default=42, help="the training seed (it fixes the split)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = held_out_check_arguments(__doc__, argv)
    curves = datasets.load_bts(args.data_dir)
    if not curves:
        print(f"no ztf-bts-train folder under {args.data_dir}: pass --data-dir", file=sys.stderr)
        return 2
    _, held_out = bts_split(curves, args.seed)
    judged = args.artifacts / VALIDATION_DIR  # the fit that never saw `held_out`, where there is one
    decoder, registry = Decoder(), Registry(judged if judged.is_dir() else args.artifacts)
    report = {"objects": len(held_out), "models": {n: m.version for n, m in registry.models.items()}}
    for name, packets in packets_for(held_out, decoder, args.seed).items():
        print(f"[packets] {name}: {len(packets)} alerts", file=sys.stderr, flush=True)
        report[name] = judge(registry, decoder, packets, args.seed)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
