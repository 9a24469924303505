"""A second calibration of the supernova type for curves of few detections, inside the ONNX graph.

The supernova model's temperature (train.choose_temperature) is one number for every curve, and
curves of a few detections want another: on the BTS training objects' out-of-fold predictions, the
temperature that calibrates full curves leaves the early alerts overconfident, and the (survey,
class)-balanced training weights tilt their argmax toward the rarer types. So for a curve of at
most MAX_POINTS detections the type among supernovae is recalibrated once more:

    p'(type) = p(SN) * softmax over the SN types of (scale * log p(type) + shift(type))

a temperature and one offset per type, fitted together by log loss on those out-of-fold
predictions (`fit`). p(SN) and Residual are left exactly as they were: BTS is nearly all
supernovae, so it can say how the types share p(SN), not how often an alert is a supernova (the
variable stars' figures do not move). The number of detections is the feature `log_n_points`, so
the graph decides from its own input and every caller (stream, HTTP, CLI) gets the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import features
from models.taxonomy import SUPERNOVA_CLASSES

MAX_POINTS = 8  # the largest of train.EARLY_POINTS: the early views the regime is fitted on
_LOG_N = features.FEATURE_NAMES.index("log_n_points")
# between log10(8) and log10(9), so float32 rounding of log10(8) cannot put 8 on the wrong side
_THRESHOLD = math.log10(MAX_POINTS + 0.5)
_EPS = 1e-12
_OFF = -1e4  # added to the other classes' logits: their share of the softmax is exactly 0


def few(X: np.ndarray) -> np.ndarray:
    """Which rows are curves of at most MAX_POINTS detections (NaN counts as many)."""
    return np.asarray(X, np.float32)[:, _LOG_N] <= np.float32(_THRESHOLD)


@dataclass(frozen=True)
class FewPointCalibration:
    class_ids: tuple[int, ...]  # the model's columns
    scale: float
    shift: tuple[float, ...]  # per column; 0 for the classes that are not supernova types

    @property
    def _is_sn(self) -> np.ndarray:
        return np.isin(self.class_ids, SUPERNOVA_CLASSES)

    def apply(self, proba: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The numbers the ONNX graph gives (`append_to`), in numpy."""
        sn = self._is_sn
        z = self.scale * np.log(np.maximum(proba, _EPS)) + np.where(sn, self.shift, _OFF)
        q = np.exp(z - z.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        p_sn = (proba * sn).sum(axis=1, keepdims=True)
        return np.where(few(X)[:, None], q * p_sn + proba * ~sn, proba)

    def append_to(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """The graph of a skl2onnx classifier (outputs `label`, `probabilities`) with this
        calibration after it: same input and outputs, the label the argmax of the new probabilities."""
        graph = model.graph
        [inp] = graph.input
        renamed = {"label": "trees_label", "probabilities": "trees_probabilities"}
        for node in graph.node:
            node.output[:] = [renamed.get(o, o) for o in node.output]
        sn = self._is_sn
        consts = {
            "fp_index": np.array([_LOG_N], np.int64),
            "fp_threshold": np.array(_THRESHOLD, np.float32),
            "fp_eps": np.array(_EPS, np.float32),
            "fp_scale": np.array(self.scale, np.float32),
            "fp_offset": np.array([np.where(sn, self.shift, _OFF)], np.float32),
            "fp_sn": np.array([sn], np.float32),
            "fp_not_sn": np.array([~sn], np.float32),
            "fp_axis": np.array([1], np.int64),
            "fp_classes": np.array(self.class_ids, np.int64),
        }
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        p = "trees_probabilities"
        node = helper.make_node
        graph.node.extend([
            node("Gather", [inp.name, "fp_index"], ["fp_log_n"], axis=1),
            node("LessOrEqual", ["fp_log_n", "fp_threshold"], ["fp_few"]),
            node("Max", [p, "fp_eps"], ["fp_clipped"]),
            node("Log", ["fp_clipped"], ["fp_log"]),
            node("Mul", ["fp_log", "fp_scale"], ["fp_scaled"]),
            node("Add", ["fp_scaled", "fp_offset"], ["fp_logits"]),
            node("Softmax", ["fp_logits"], ["fp_type_given_sn"], axis=1),
            node("Mul", [p, "fp_sn"], ["fp_sn_columns"]),
            node("ReduceSum", ["fp_sn_columns", "fp_axis"], ["fp_p_sn"], keepdims=1),
            node("Mul", ["fp_type_given_sn", "fp_p_sn"], ["fp_types"]),
            node("Mul", [p, "fp_not_sn"], ["fp_rest"]),
            node("Add", ["fp_types", "fp_rest"], ["fp_recalibrated"]),
            node("Where", ["fp_few", "fp_recalibrated", p], ["probabilities"]),
            node("ArgMax", ["probabilities"], ["fp_argmax"], axis=1, keepdims=0),
            node("Gather", ["fp_classes", "fp_argmax"], ["label"], axis=0),
        ])
        del graph.output[:]
        graph.output.extend([helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                             helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                           [None, len(self.class_ids)])])
        onnx.checker.check_model(model)
        return model


def fit(proba: np.ndarray, y: np.ndarray, class_ids: list[int]) -> FewPointCalibration:
    """Scale and per-type shifts (the first type's 0: only differences matter) minimising the log
    loss of p(type | SN) against `y` over the rows that are supernovae."""
    from scipy.optimize import minimize

    columns = [i for i, c in enumerate(class_ids) if c in SUPERNOVA_CLASSES]
    rows = np.isin(y, SUPERNOVA_CLASSES)
    logp = np.log(np.maximum(proba[rows][:, columns], _EPS))
    truth = np.searchsorted([class_ids[i] for i in columns], y[rows])
    index = np.arange(len(truth))

    def loss(v: np.ndarray) -> float:
        z = v[0] * logp + np.concatenate(([0.0], v[1:]))
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[index, truth] - np.log(np.exp(z).sum(axis=1))).mean())

    start = np.concatenate(([1.0], np.zeros(len(columns) - 1)))
    v = minimize(loss, start, method="L-BFGS-B", bounds=[(0.2, 5.0)] + [(-10.0, 10.0)] * (len(columns) - 1)).x
    shift = np.zeros(len(class_ids))
    shift[columns] = np.concatenate(([0.0], v[1:]))
    return FewPointCalibration(tuple(int(c) for c in class_ids), round(float(v[0]), 6),
                               tuple(round(float(s), 6) for s in shift))


@dataclass
class WithFewPoints:
    """A fitted classifier with its few-point calibration: `predict_proba` is what the exported
    graph gives (`export.export_model` exports the classifier and appends the calibration)."""

    model: object
    calibration: FewPointCalibration

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.calibration.apply(self.model.predict_proba(X), X)
