"""The batch pipeline: alerts -> light curves -> features -> every model -> result objects.

Pure apart from the registry's ONNX sessions; the CLI, the HTTP API and the stream all call it,
so they return the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.registry import Registry
from streaming.decode import Alert
from streaming.lightcurve import light_curves


def classify_alerts(alerts: Sequence[Alert], registry: Registry, *, forced: bool = False) -> list[dict]:
    """One result object per alert, in order:
    {"diaSourceId", "diaObjectId", "results": [{"classifier", "version", "classifications", "reason"}]}."""
    curves = light_curves(alerts, forced=forced)
    per_alert = registry.classify(curves)
    return [{"diaSourceId": a.dia_source_id, "diaObjectId": a.dia_object_id,
             "results": [r.as_dict() for r in results]}
            for a, results in zip(alerts, per_alert, strict=True)]
