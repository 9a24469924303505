"""Model status: what is loaded, from which card, and how it is doing."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from models.registry import LoadedModel
from service.api.deps import core
from service.api.schemas import ModelStatus, errors

router = APIRouter(prefix="/v1", tags=["models"])


def describe(model: LoadedModel) -> dict:
    card = model.card
    return {"name": model.name, "version": model.version, "description": card.get("description"),
            "sha256": card["sha256"], "opset": card.get("opset"), "features": card["feature_names"],
            "class_ids": model.class_ids, "class_labels": card.get("class_labels"),
            "min_points": model.min_points, "metrics": card.get("metrics"),
            "training_data": card.get("training_data"), "created": card.get("created"),
            "load_seconds": round(model.load_seconds, 4), "ready": True,
            "rows_scored": model.rows_scored, "declined": model.declined,
            "inference_latency_ms": model.latency_ms(), "inference_shared_with": model.shared_with}


@router.get("/models", summary="Every loaded model", response_model=list[ModelStatus])
def list_models(request: Request) -> list[dict]:
    return [describe(m) for m in core(request).registry.models.values()]


@router.get("/models/{name}", summary="One model: card, held-out metrics, live counts and latency",
            response_model=ModelStatus, responses=errors(404))
def get_model(request: Request, name: str) -> dict:
    models = core(request).registry.models
    if name not in models:
        raise HTTPException(404, f"no model named {name!r}; loaded: {', '.join(sorted(models))}",
                            headers={"x-reason": "not_found"})
    return describe(models[name])
