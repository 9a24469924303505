"""Model registry: load every ONNX artefact once, check it against its card and the extractor,
score batches of feature rows.

A model whose card disagrees with the feature extractor (names, order, count), with the ONNX
input shape, or with the file's sha256 is refused with a ModelError naming the mismatch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models import features
from models.errors import ModelError
from models.taxonomy import NOT_CLASSIFIED

ARTIFACTS = Path(__file__).with_name("artifacts")


@dataclass
class Result:
    """One classifier's verdict on one alert (the shape the CLI, HTTP API and stream all return)."""

    classifier: str
    version: str
    classifications: list[dict]  # [{"classId": int, "probability": float}], probabilities sum to 1
    reason: str | None = None  # why the classifier declined, else None

    def as_dict(self) -> dict:
        return {"classifier": self.classifier, "version": self.version,
                "classifications": self.classifications, "reason": self.reason}


@dataclass
class LoadedModel:
    name: str
    version: str
    card: dict
    session: ort.InferenceSession
    class_ids: list[int]
    min_points: int
    load_seconds: float
    input_name: str = field(init=False)
    #: recent ONNX calls (seconds, rows), for latency percentiles; totals since start
    calls: deque = field(default_factory=lambda: deque(maxlen=2000))
    rows_scored: int = 0
    declined: int = 0
    on_inference: Callable[[float, int], None] | None = None

    def __post_init__(self) -> None:
        self.input_name = self.session.get_inputs()[0].name

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty((0, len(self.class_ids)), np.float32)
        t0 = time.perf_counter()
        proba = self.session.run(None, {self.input_name: np.ascontiguousarray(X, np.float32)})[1]
        seconds = time.perf_counter() - t0
        self.calls.append((seconds, len(X)))
        self.rows_scored += len(X)
        if self.on_inference is not None:
            self.on_inference(seconds, len(X))
        return proba

    def latency_ms(self) -> dict:
        """Percentiles of recent ONNX calls, per call and per row."""
        if not self.calls:
            return {"calls": 0}
        secs = np.array([c[0] for c in self.calls])
        per_row = secs / np.array([c[1] for c in self.calls])
        return {"calls": len(secs), "p50_call": round(float(np.percentile(secs, 50)) * 1e3, 3),
                "p99_call": round(float(np.percentile(secs, 99)) * 1e3, 3),
                "p50_per_row": round(float(np.percentile(per_row, 50)) * 1e3, 4)}

    def classify(self, X: np.ndarray, n_points: np.ndarray) -> list[Result]:
        """Score a batch; rows with too few points are declined (class 300, probability 1)."""
        ok = n_points >= self.min_points
        self.declined += int((~ok).sum())
        proba = self.predict_proba(X[ok])
        results, j = [], 0
        for i in range(len(X)):
            if not ok[i]:
                declined = [{"classId": NOT_CLASSIFIED, "probability": 1.0}]
                results.append(Result(self.name, self.version, declined,
                                      f"too few points: {int(n_points[i])} < {self.min_points}"))
                continue
            p = proba[j].astype(np.float64)
            j += 1
            if not np.isfinite(p).all() or p.sum() <= 0:  # features beyond what the model can judge
                results.append(Result(self.name, self.version,
                                      [{"classId": NOT_CLASSIFIED, "probability": 1.0}],
                                      "the model gave no finite probabilities for these features"))
                continue
            p = p / p.sum()
            results.append(Result(self.name, self.version,
                                  [{"classId": c, "probability": round(float(v), 6)}
                                   for c, v in zip(self.class_ids, p, strict=True)]))
        return results


def _session(blob: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # One thread per session: scale with processes, threads only fight over 2 cores.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])


def load_model(folder: Path) -> LoadedModel:
    t0 = time.monotonic()
    try:
        card = json.loads((folder / "card.json").read_text())
        blob = (folder / "model.onnx").read_bytes()
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model artefact in {folder}: {exc}") from None
    where = f"{card.get('name')}/{card.get('version')} ({folder})"
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card.get("sha256"):
        raise ModelError(f"{where}: model.onnx sha256 {digest[:12]}... differs from the card's "
                         f"{str(card.get('sha256'))[:12]}...: re-export with `alert-classifier train`")
    expected = list(features.FEATURE_NAMES)
    if card.get("feature_names") != expected:
        card_names = card.get("feature_names") or []
        diff = [f"{i}: card {a!r} vs extractor {b!r}"
                for i, (a, b) in enumerate(zip(card_names, expected, strict=False)) if a != b][:3]
        raise ModelError(f"{where}: the card lists {len(card_names)} features, the extractor "
                         f"{len(expected)}; first differences: {diff or 'length only'}")
    session = _session(blob)
    shape = session.get_inputs()[0].shape
    if len(shape) != 2 or shape[1] != len(expected):
        raise ModelError(f"{where}: ONNX input shape {shape} does not take {len(expected)} features")
    n_out = session.get_outputs()[1].shape[-1] if len(session.get_outputs()) > 1 else None
    if n_out not in (None, len(card["class_ids"])) and isinstance(n_out, int):
        raise ModelError(f"{where}: ONNX gives {n_out} probabilities, the card lists "
                         f"{len(card['class_ids'])} classes")
    return LoadedModel(card["name"], card["version"], card, session, [int(c) for c in card["class_ids"]],
                       int(card.get("min_points", 1)), time.monotonic() - t0)


class Registry:
    """Every model under an artefacts directory (`<name>/<version>/`), newest version per name."""

    def __init__(self, root: Path = ARTIFACTS, names: list[str] | None = None) -> None:
        self.models: dict[str, LoadedModel] = {}
        for card in sorted(root.glob("*/*/card.json")):
            name = card.parent.parent.name
            if names and name not in names:
                continue
            model = load_model(card.parent)
            current = self.models.get(name)
            if current is None or _version_key(model.version) > _version_key(current.version):
                self.models[name] = model
        if not self.models:
            raise ModelError(f"no model artefacts under {root}: run `alert-classifier train`")

    def classify(self, curves) -> list[list[Result]]:
        """Features once for the batch, then one ONNX call per model. Returns per-curve result lists."""
        return self.score(features.extract(curves), np.array([len(c.t) for c in curves]))

    def score(self, X: np.ndarray, n_points: np.ndarray) -> list[list[Result]]:
        """Every model on a feature matrix: one ONNX call per model for the whole batch."""
        per_model = [m.classify(X, n_points) for m in self.models.values()]
        return [list(rs) for rs in zip(*per_model, strict=True)] if len(X) else []


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))
