"""Model registry: load every ONNX artefact once, check it against its card and the extractor,
score batches of feature rows.

A model whose card disagrees with the feature extractor (names, order, count), with the ONNX
input shape, or with the file's sha256 is refused with a ModelError naming the mismatch.
"""

from __future__ import annotations

import hashlib
import json
import logging
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

log = logging.getLogger(__name__)

ARTIFACTS = Path(__file__).with_name("artifacts")


@dataclass
class Result:
    """One model's verdict on one alert (the shape the CLI, HTTP API and stream all return): a
    classifier's class probabilities, or the anomaly model's score (no classifications)."""

    classifier: str
    version: str
    classifications: list[dict]  # [{"classId": int, "probability": float}], probabilities sum to 1
    reason: str | None = None  # why the model declined, else None
    score: float | None = None  # anomaly models: the population percentile (0.99 = top 1%)

    @property
    def is_anomaly(self) -> bool:
        return not self.classifications

    def as_dict(self) -> dict:
        if self.is_anomaly:
            return {"classifier": self.classifier, "version": self.version, "score": self.score,
                    "reason": self.reason}
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
    folder: Path | None = None  # where its artefacts are (the anomaly retrain reads its reference rows)
    shared_with: str | None = None  # the model whose ONNX call scores this one too (Registry.shared)

    def __post_init__(self) -> None:
        self.input_name = self.session.get_inputs()[0].name

    @property
    def is_anomaly(self) -> bool:
        return self.card.get("kind") == "anomaly"

    def run(self, X: np.ndarray, outputs: list[str] | None) -> list[np.ndarray]:
        """One timed ONNX call (`outputs` None: every output)."""
        t0 = time.perf_counter()
        out = self.session.run(outputs, {self.input_name: np.ascontiguousarray(X, np.float32)})
        seconds = time.perf_counter() - t0
        self.calls.append((seconds, len(X)))
        if self.on_inference is not None:
            self.on_inference(seconds, len(X))
        return out

    def _run(self, X: np.ndarray, output: str | None) -> np.ndarray:
        out = self.run(X, [output] if output else None)
        self.rows_scored += len(X)
        return out[0] if output else out[1]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty((0, len(self.class_ids)), np.float32)
        return self._run(X, None)

    def percentiles(self, X: np.ndarray) -> np.ndarray:
        """Anomaly models: the fraction of the training population that looks less unusual than each
        row (the card keeps the population's raw scores at fixed percentile levels)."""
        if len(X) == 0:
            return np.empty(0)
        return self._percentiles_of(self._run(X, self.card["raw_score"]["output"]))

    def _percentiles_of(self, out: np.ndarray) -> np.ndarray:
        raw_card = self.card["raw_score"]
        out = out.min(axis=1) if raw_card["reduce"] == "min" else out.reshape(len(out))
        raw = raw_card["sign"] * out.astype(np.float64)
        pct = np.interp(raw, raw_card["population_scores"], raw_card["percentile_levels"])
        return np.where(np.isfinite(raw), pct, np.nan)

    def latency_ms(self) -> dict:
        """Percentiles of recent ONNX calls, per call and per row."""
        if not self.calls:
            return {"calls": 0}
        secs = np.array([c[0] for c in self.calls])
        per_row = secs / np.array([c[1] for c in self.calls])
        return {"calls": len(secs), "p50_call": round(float(np.percentile(secs, 50)) * 1e3, 3),
                "p99_call": round(float(np.percentile(secs, 99)) * 1e3, 3),
                "p50_per_row": round(float(np.percentile(per_row, 50)) * 1e3, 4)}

    def classify(self, X: np.ndarray, n_points: np.ndarray,
                 computed: np.ndarray | None = None) -> list[Result]:
        """Score a batch; rows with too few points are declined (class 300, probability 1).
        `computed`: this model's ONNX output for every row, from a call another model made
        (Registry.score), instead of a call of its own."""
        ok = n_points >= self.min_points
        self.declined += int((~ok).sum())
        if computed is not None:
            self.rows_scored += int(ok.sum())
        if self.is_anomaly:
            return self._anomaly(X, n_points, ok, computed)
        proba = (computed[ok] if computed is not None else self.predict_proba(X[ok])).astype(np.float64)
        total = proba.sum(axis=1)
        usable = (np.isfinite(proba).all(axis=1) & (total > 0)).tolist()
        rows = iter(zip((proba / np.where(total > 0, total, 1.0)[:, None]).tolist(), usable, strict=True))
        results = []
        for i, fine in enumerate(ok.tolist()):
            if not fine:
                declined = [{"classId": NOT_CLASSIFIED, "probability": 1.0}]
                results.append(Result(self.name, self.version, declined, self._too_few(int(n_points[i]))))
                continue
            p, finite = next(rows)
            if not finite:  # features beyond what the model can judge
                results.append(Result(self.name, self.version,
                                      [{"classId": NOT_CLASSIFIED, "probability": 1.0}],
                                      "the model gave no finite probabilities for these features"))
                continue
            results.append(Result(self.name, self.version,
                                  [{"classId": c, "probability": round(v, 6)}
                                   for c, v in zip(self.class_ids, p, strict=True)]))
        return results

    def _too_few(self, n_points: int) -> str:
        return f"too few points: {n_points} < {self.min_points}"

    def _anomaly(self, X: np.ndarray, n_points: np.ndarray, ok: np.ndarray,
                 computed: np.ndarray | None) -> list[Result]:
        score = np.full(len(X), np.nan)
        if ok.any():
            score[ok] = (self._percentiles_of(computed[ok]) if computed is not None
                         else self.percentiles(X[ok]))
        results = []
        for i in range(len(X)):
            if not ok[i]:
                why = self._too_few(int(n_points[i]))
            elif not np.isfinite(score[i]):
                why = "the model gave no finite score for these features"
            else:
                results.append(Result(self.name, self.version, [], score=round(float(score[i]), 6)))
                continue
            results.append(Result(self.name, self.version, [], why))
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
    if card.get("kind") == "anomaly":
        outputs = [o.name for o in session.get_outputs()]
        if card.get("raw_score", {}).get("output") not in outputs:
            raise ModelError(f"{where}: the card's raw score output is not among the ONNX outputs {outputs}")
        return LoadedModel(card["name"], card["version"], card, session, [], int(card.get("min_points", 1)),
                           time.monotonic() - t0, folder=folder)
    n_out = session.get_outputs()[1].shape[-1] if len(session.get_outputs()) > 1 else None
    if n_out not in (None, len(card["class_ids"])) and isinstance(n_out, int):
        raise ModelError(f"{where}: ONNX gives {n_out} probabilities, the card lists "
                         f"{len(card['class_ids'])} classes")
    return LoadedModel(card["name"], card["version"], card, session, [int(c) for c in card["class_ids"]],
                       int(card.get("min_points", 1)), time.monotonic() - t0, folder=folder)


class Registry:
    """Every model under the artefacts directories (`<name>/<version>/`), newest version per name:
    the shipped ones, and those `alert-classifier anomaly retrain` writes under the data directory."""

    def __init__(self, root: Path = ARTIFACTS, names: list[str] | None = None,
                 extra: Path | None = None, share_calls: bool = True) -> None:
        self.models: dict[str, LoadedModel] = {}
        shipped = sorted(root.glob("*/*/card.json"))
        retrained = sorted(extra.glob("*/*/card.json")) if extra else []
        for card in shipped + retrained:
            name = card.parent.parent.name
            if names and name not in names:
                continue
            try:
                model = load_model(card.parent)
            except ModelError as exc:
                if card not in retrained:
                    raise
                # a retrain of an older release (its features changed since): the shipped one serves
                log.warning("skipping the retrained model %s: %s; run `alert-classifier anomaly retrain` "
                            "again to learn from the feedback with the current features", card.parent, exc)
                continue
            current = self.models.get(name)
            if current is None or _version_key(model.version) > _version_key(current.version):
                self.models[name] = model
        # classifiers first, then anomaly models: the order of every result list
        self.models = dict(sorted(self.models.items(), key=lambda item: (item[1].is_anomaly, item[0])))
        if not self.models:
            raise ModelError(f"no model artefacts under {root}: run `alert-classifier train`")
        anomaly = [m for m in self.models.values() if m.is_anomaly]
        # the model whose one call also scores the classifiers it embeds, and which ones
        self.sharer = anomaly[0] if len(anomaly) == 1 and share_calls else None
        self.shared = self._shared_outputs()
        for name in self.shared:
            self.models[name].shared_with = self.sharer.name

    def _shared_outputs(self) -> dict[str, str]:
        """{classifier: anomaly model output}: the classifiers whose very graphs (same sha256) the
        anomaly model embeds and passes on; one ONNX call then scores all of them (its time is
        counted on the anomaly model)."""
        if self.sharer is None:
            return {}
        outputs = {o.name for o in self.sharer.session.get_outputs()}
        embedded = self.sharer.card.get("classifier_view", {}).get("classifiers", {})
        return {name: f"{name}_probabilities" for name, e in embedded.items()
                if name in self.models and self.models[name].card.get("sha256") == e.get("sha256")
                and f"{name}_probabilities" in outputs}

    def classify(self, curves) -> list[list[Result]]:
        """Features once for the batch, then one ONNX call per model. Returns per-curve result lists."""
        return self.score(features.extract(curves), np.array([len(c.t) for c in curves]))

    def score(self, X: np.ndarray, n_points: np.ndarray) -> list[list[Result]]:
        """Every model on a feature matrix: one ONNX call per model for the whole batch, or one for
        the anomaly model and the classifiers it embeds."""
        if not len(X):
            return []
        computed: dict[str, np.ndarray] = {}
        if self.shared:
            outputs = [self.sharer.card["raw_score"]["output"], *self.shared.values()]
            computed = dict(zip([self.sharer.name, *self.shared], self.sharer.run(X, outputs), strict=True))
            for name in self.shared:  # the call that scored them, for their latency figures
                self.models[name].calls.append(self.sharer.calls[-1])
        per_model = [m.classify(X, n_points, computed.get(name)) for name, m in self.models.items()]
        return [list(rs) for rs in zip(*per_model, strict=True)]


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))
