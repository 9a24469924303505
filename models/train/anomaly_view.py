"""The anomaly model's second view of an alert: what the classifiers make of it.

A density over the light-curve features finds what looks like nothing in the population, but a
superluminous supernova or a tidal disruption event has ordinary-looking rises, declines and colours
one by one; what is unusual is the combination, and the classifiers, trained on labelled objects,
have learnt which combinations matter. Their probabilities (as log-odds), the supernova model's
entropy and its top probability make an 8-column "classifier view", and a Gaussian mixture over the
population's views says how unusual an alert's view is. `TwoViewScore` adds that to the feature
mixture (each as a robust z-score against the population), so a value beyond anything in the
population still ranks at the top, as it does for the feature mixture alone.

The view is one ONNX graph (the shipped classifiers' graphs and a few nodes): training computes it
with onnxruntime from the same graph the exported anomaly model embeds, so the two cannot drift.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer

from models import features
from models.taxonomy import RR_LYRAE

CLASSIFIERS = ("supernova", "rrlyrae")
# the exported model's outputs that pass on the embedded classifiers' probabilities: the registry
# takes them instead of running those classifiers a second time (models/registry.py)
PASSED_ON = {name: f"{name}_probabilities" for name in CLASSIFIERS}
EPS = 1e-4  # probabilities clipped to [EPS, 1 - EPS] before their log-odds: no infinities
OPSET = 17


def summed_z_scores(terms: list[tuple[str, float, float, float]], out: str) -> tuple[list, list]:
    """ONNX nodes and constants for `out` = the sum over `terms` (tensor, sign, centre, scale) of
    (sign * tensor - centre) / scale, each tensor as a column [N, 1]: the robust z-scores that both
    the two-view score and a feedback retrain add up."""
    nodes, consts = [], [_const("column", [-1, 1], np.int64)]
    for i, (tensor, sign, centre, scale) in enumerate(terms):
        consts += [_const(f"sign_{i}", sign), _const(f"centre_{i}", centre), _const(f"scale_{i}", scale)]
        nodes += [helper.make_node("Reshape", [tensor, "column"], [f"column_{i}"]),
                  helper.make_node("Mul", [f"column_{i}", f"sign_{i}"], [f"signed_{i}"]),
                  helper.make_node("Sub", [f"signed_{i}", f"centre_{i}"], [f"centred_{i}"]),
                  helper.make_node("Div", [f"centred_{i}", f"scale_{i}"], [f"z_{i}"])]
    nodes.append(helper.make_node("Sum", [f"z_{i}" for i in range(len(terms))], [out]))
    return nodes, consts


class RobustZ:
    """Scores as robust z-scores against a population, summed: (s - median) / interquartile range
    per score. The numpy side of `summed_z_scores`, fitted where the population's scores are known."""

    def __init__(self, *population_scores: np.ndarray):
        self.centre = np.array([np.median(s) for s in population_scores])
        self.scale = np.array([np.subtract(*np.percentile(s, [75, 25])) for s in population_scores])

    def sum(self, *scores: np.ndarray) -> np.ndarray:
        return sum((s - c) / k for s, c, k in zip(scores, self.centre, self.scale, strict=True))


def view_names(sn_class_ids: list[int]) -> list[str]:
    return ([f"logit_supernova_{c}" for c in sn_class_ids]
            + ["logit_rrlyrae", "supernova_entropy", "supernova_top_probability"])


def _const(name: str, values, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def join(parts: list[tuple[str, onnx.ModelProto, dict[str, str]]], nodes: list, initializers: list,
         inputs: list, outputs: list, name: str) -> onnx.ModelProto:
    """One graph from several models: each part's names get its prefix and its inputs are fed from
    the tensors `wiring` names ({its input: tensor}); then `nodes`. Parts come in the order their
    inputs become available (ONNX wants the nodes topologically sorted)."""
    all_nodes, all_inits, opsets, ir = [], list(initializers), {}, 8
    for prefix, model, wiring in parts:
        m = onnx.compose.add_prefix(model, prefix)
        all_nodes += [helper.make_node("Identity", [source], [prefix + name])
                      for name, source in wiring.items()]
        all_nodes += list(m.graph.node)
        all_inits += list(m.graph.initializer)
        for o in model.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
        ir = max(ir, model.ir_version)
    graph = helper.make_graph(all_nodes + nodes, name, inputs, outputs, all_inits)
    opset_imports = [helper.make_opsetid(domain, v) for domain, v in sorted(opsets.items())]
    out = helper.make_model(graph, opset_imports=opset_imports)
    out.ir_version = ir
    onnx.checker.check_model(out)
    return out


def _width(value: onnx.ValueInfoProto) -> int:
    return value.type.tensor_type.shape.dim[1].dim_value


def _features_input() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, len(features.FEATURE_NAMES)])


def view_graph(supernova: onnx.ModelProto, rrlyrae: onnx.ModelProto, supernova_class_ids: list[int],
               rrlyrae_class_ids: list[int], temperature: float = 1.0) -> onnx.ModelProto:
    """features -> view [N, supernova classes + 3]: the supernova model's class log-odds, the RR
    Lyrae log-odds, the supernova model's entropy and top probability. The supernova probabilities
    are taken before the model's temperature (softmax(temperature * log p)): a temperature is chosen
    for calibration, carries no information, and would move every coordinate of the view (anomaly
    1.5.1 on the selection half, real / simulated AUROC: 0.959 / 0.663 so, 0.926 / 0.622 reading
    2.6.1's tempered probabilities as they are)."""
    q = "rrl_probabilities"
    p = "view_sn_probabilities"
    col = rrlyrae_class_ids.index(RR_LYRAE)
    n = [
        helper.make_node("Add", ["sn_probabilities", "tiny"], ["view_p_t"]),
        helper.make_node("Log", ["view_p_t"], ["view_log_p"]),
        helper.make_node("Mul", ["view_log_p", "temperature"], ["view_logits"]),
        helper.make_node("Softmax", ["view_logits"], [p], axis=1),
        helper.make_node("Clip", [p, "eps", "one_minus_eps"], ["p_c"]),
        helper.make_node("Log", ["p_c"], ["log_p"]),
        helper.make_node("Sub", ["one", "p_c"], ["q_c"]),
        helper.make_node("Log", ["q_c"], ["log_q"]),
        helper.make_node("Sub", ["log_p", "log_q"], ["logit_sn"]),
        helper.make_node("Slice", [q, "rrl_start", "rrl_end", "axis_1"], ["r"]),
        helper.make_node("Clip", ["r", "eps", "one_minus_eps"], ["r_c"]),
        helper.make_node("Log", ["r_c"], ["log_r"]),
        helper.make_node("Sub", ["one", "r_c"], ["s_c"]),
        helper.make_node("Log", ["s_c"], ["log_s"]),
        helper.make_node("Sub", ["log_r", "log_s"], ["logit_rrl"]),
        helper.make_node("Add", [p, "tiny"], ["p_t"]),
        helper.make_node("Log", ["p_t"], ["log_pt"]),
        helper.make_node("Mul", [p, "log_pt"], ["plogp"]),
        helper.make_node("ReduceSum", ["plogp", "axis_1"], ["neg_entropy"], keepdims=1),
        helper.make_node("Neg", ["neg_entropy"], ["entropy"]),
        helper.make_node("ReduceMax", [p], ["top"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["logit_sn", "logit_rrl", "entropy", "top"], ["view"], axis=1),
    ]
    inits = [_const("eps", EPS), _const("one_minus_eps", 1 - EPS), _const("one", 1.0), _const("tiny", 1e-12),
             _const("temperature", temperature),
             _const("rrl_start", [col], np.int64), _const("rrl_end", [col + 1], np.int64),
             _const("axis_1", [1], np.int64)]
    out = helper.make_tensor_value_info("view", TensorProto.FLOAT, [None, len(supernova_class_ids) + 3])
    return join([("sn_", supernova, {"features": "features"}), ("rrl_", rrlyrae, {"features": "features"})],
                n, inits, [_features_input()], [out], "classifier_view")


@dataclass
class ClassifierView:
    graph: onnx.ModelProto  # features -> view
    names: list[str]
    classifiers: dict[str, dict]  # name -> version and sha256 of the graph embedded


def load_view(artifacts: Path, version: str, supernova_from: Path | None = None) -> ClassifierView:
    """The view of the classifiers at `artifacts/<name>/<version>/` (model.onnx and card.json); the
    supernova model's from `supernova_from` instead if given."""
    folders = {name: artifacts / name / version for name in CLASSIFIERS}
    if supernova_from is not None:
        folders["supernova"] = supernova_from / "supernova" / version
    cards = {name: json.loads((f / "card.json").read_text()) for name, f in folders.items()}
    blobs = {name: (f / "model.onnx").read_bytes() for name, f in folders.items()}
    graph = view_graph(onnx.load_from_string(blobs["supernova"]), onnx.load_from_string(blobs["rrlyrae"]),
                       cards["supernova"]["class_ids"], cards["rrlyrae"]["class_ids"],
                       cards["supernova"].get("calibration", {}).get("temperature", 1.0))
    return ClassifierView(graph, view_names(cards["supernova"]["class_ids"]),
                          {name: {"version": cards[name]["version"],
                                  "sha256": hashlib.sha256(blobs[name]).hexdigest()} for name in CLASSIFIERS})


def passed_on_outputs() -> list[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, None])
            for name in PASSED_ON.values()]


class TwoViewScore:
    """Unusualness = robust z-score of the feature mixture's unusualness + that of a Gaussian mixture
    over the classifier view (z against the population: (s - median) / interquartile range)."""

    def __init__(self, feature_model: Pipeline, view: ClassifierView, seed: int, n_components: int = 32):
        self.feature_model = feature_model
        self.view = view.graph
        self.names = view.names
        self.classifiers = view.classifiers
        self.seed = seed
        self.n_components = n_components
        self._session = ort.InferenceSession(self.view.SerializeToString(),
                                             providers=["CPUExecutionProvider"])

    def views(self, X: np.ndarray) -> np.ndarray:
        return self._session.run(["view"], {"features": np.ascontiguousarray(X, np.float32)})[0]

    def _parts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = -self.feature_model.score_samples(np.asarray(X, np.float32))
        b = -self.view_model_.score_samples(self.views(X))
        return a, b

    def fit(self, X: np.ndarray) -> TwoViewScore:
        self.feature_model.fit(X)
        self.view_model_ = Pipeline([("power", PowerTransformer()), ("model", GaussianMixture(
            self.n_components, covariance_type="full", reg_covar=1e-3, random_state=self.seed))])
        self.view_model_.fit(self.views(X))
        self.z_ = RobustZ(*self._parts(X))
        return self

    def unusualness(self, X: np.ndarray) -> np.ndarray:
        return self.z_.sum(*self._parts(X))

    def card(self) -> dict:
        """What the card says of the view: its columns and the classifiers it embeds."""
        return {"names": self.names, "classifiers": self.classifiers,
                "z_centre": self.z_.centre.round(6).tolist(), "z_scale": self.z_.scale.round(6).tolist()}

    def to_onnx(self, feature_onnx: onnx.ModelProto) -> onnx.ModelProto:
        """features -> score [N, 1] (the unusualness above) and view [N, 8]. `feature_onnx`: the
        feature mixture's own export (output `score_samples`)."""
        width = _width(self.view.graph.output[0])
        tail = to_onnx(self.view_model_, initial_types=[("view", FloatTensorType([None, width]))],
                       target_opset={"": OPSET, "ai.onnx.ml": 1},
                       options={id(self.view_model_[-1]): {"score_samples": True}})
        # the mixtures give log-likelihoods: unusualness is their negative
        n, inits = summed_z_scores([("f_score_samples", -1.0, self.z_.centre[0], self.z_.scale[0]),
                                    ("v_score_samples", -1.0, self.z_.centre[1], self.z_.scale[1])], "score")
        n += [helper.make_node("Identity", ["score"], ["static"]),  # what a feedback retrain builds on
              helper.make_node("Identity", ["c_view"], ["view"]),
              helper.make_node("Identity", ["c_sn_probabilities"], [PASSED_ON["supernova"]]),
              helper.make_node("Identity", ["c_rrl_probabilities"], [PASSED_ON["rrlyrae"]])]
        outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1]),
                   helper.make_tensor_value_info("static", TensorProto.FLOAT, [None, 1]),
                   helper.make_tensor_value_info("view", TensorProto.FLOAT, [None, width]),
                   *passed_on_outputs()]
        parts = [("f_", feature_onnx, {"features": "features"}), ("c_", self.view, {"features": "features"}),
                 ("v_", tail, {"view": "c_view"})]
        return join(parts, n, inits, [_features_input()], outputs, "anomaly")

