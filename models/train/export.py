"""scikit-learn -> ONNX export with a parity check, and the model card beside it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

from models import features
from models.errors import ModelError
from models.taxonomy import LABELS
from models.train.few_points import WithFewPoints

OPSET = 17  # pinned: the onnxruntime we ship runs it; a newer opset needs a newer runtime
PARITY_TOL = 1e-4


def export_model(model, *, name: str, version: str, out_dir: Path, class_ids: list[int],
                 X_check: np.ndarray, metrics: dict, min_points: int, description: str,
                 training_data: dict,
                 calibration: str | dict = "none applied; expected calibration error measured on held-out "
                                    "views (metrics)") -> dict:
    n_features = len(features.FEATURE_NAMES)
    estimator = model.model if isinstance(model, WithFewPoints) else model
    onx = to_onnx(estimator, initial_types=[("features", FloatTensorType([None, n_features]))],
                  target_opset={"": OPSET, "ai.onnx.ml": 3},
                  options={id(estimator): {"zipmap": False}})
    if isinstance(model, WithFewPoints):
        onx = model.calibration.append_to(onx)
    blob = onx.SerializeToString()
    parity = check_parity(model, blob, X_check)
    folder = out_dir / name / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(blob)
    card = {
        "name": name, "version": version, "description": description,
        "sha256": hashlib.sha256(blob).hexdigest(), "opset": OPSET,
        "input": {"name": "features", "dtype": "float32", "shape": [None, n_features]},
        "feature_names": list(features.FEATURE_NAMES),
        "class_ids": [int(c) for c in class_ids],
        "class_labels": [LABELS[int(c)] for c in class_ids],
        "min_points": min_points,
        "estimator": type(estimator).__name__, "params": _jsonable(estimator.get_params()),
        "training_data": training_data, "metrics": metrics,
        "calibration": calibration,
        "parity": parity,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def check_parity(model, onnx_bytes: bytes, X: np.ndarray) -> dict:
    """scikit-learn and onnxruntime must agree on held-out rows, or the export is refused."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    X32 = X.astype(np.float32)
    onnx_proba = session.run(None, {session.get_inputs()[0].name: X32})[1]
    sk_proba = model.predict_proba(X32)
    diff = float(np.max(np.abs(onnx_proba - sk_proba))) if len(X32) else 0.0
    if diff > PARITY_TOL:
        raise ModelError(f"ONNX and scikit-learn disagree by {diff:.2e} (> {PARITY_TOL}) on held-out rows")
    return {"rows": len(X32), "max_abs_diff": diff}


def _jsonable(params: dict) -> dict:
    plain = (int, float, str, bool, type(None))
    return {k: v if isinstance(v, plain) else repr(v) for k, v in params.items()}
