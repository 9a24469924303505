"""What every endpoint answers, as pydantic models: `/openapi.json` documents them and the
schemathesis run checks the answers against them. Handlers still encode with orjson (fast); these
describe the bytes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ClassProbability(BaseModel):
    classId: int = Field(description="ELAsTiCC2 class id, e.g. 2323 RR Lyrae, 2222 SN Ia, 300 NotClassified")
    probability: float = Field(ge=0, le=1)


class ClassifierResult(BaseModel):
    classifier: str
    version: str
    classifications: list[ClassProbability] = Field(description="probabilities of one classifier sum to 1")
    reason: str | None = Field(description="why the classifier declined (class 300); null when it judged")


class AnomalyResult(BaseModel):
    classifier: str = Field(description="the anomaly model, e.g. anomaly")
    version: str
    score: float | None = Field(ge=0, le=1, description="fraction of the model's reference population that "
                                "looks less unusual (0.99 = top 1%); null when it declined")
    reason: str | None = Field(description="why the model declined; null when it scored")


class AlertResult(BaseModel):
    diaSourceId: int
    diaObjectId: int | None
    results: list[ClassifierResult | AnomalyResult]


class StoredClassification(BaseModel):
    id: int = Field(description="row id, the pagination cursor")
    diaSourceId: int
    diaObjectId: int | None
    classifier: str
    version: str
    ra: float = Field(description="degrees")
    dec: float = Field(description="degrees")
    mjd: float = Field(description="midpointMjdTai of the alert's diaSource (MJD, TAI)")
    classifications: list[ClassProbability]
    reason: str | None
    topClass: int
    topProbability: float
    alertTimestampMs: int | None
    ingestTimestampMs: int | None


class ObjectClassifications(BaseModel):
    diaObjectId: int
    latest: dict[str, StoredClassification] = Field(description="per classifier, its latest result")
    history: list[StoredClassification] = Field(description="every stored result, oldest first")


class ClassificationPage(BaseModel):
    items: list[StoredClassification]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page; null on the last")


class RankedAnomaly(BaseModel):
    diaObjectId: int
    score: float = Field(description="the object's anomaly score in the window: its latest scored alert's "
                                     "(`rank=latest`) or its highest (`rank=highest`)")
    mjd: float = Field(description="observation time (MJD, TAI) of the alert that gave the score")
    classifier: str
    version: str
    latest: dict[str, StoredClassification] = Field(description="per classifier, its latest result")


class AnomalyPage(BaseModel):
    since: float = Field(description="window start, MJD (TAI)")
    until: float = Field(description="window end, MJD (TAI)")
    rank: str = Field(description="`latest` or `highest`: which of an object's scores in the window ranks it")
    items: list[RankedAnomaly]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class FeedbackAnswer(BaseModel):
    diaObjectId: int
    label: str
    labelled_objects: int = Field(description="objects with a label in the store")


class LightCurvePoint(BaseModel):
    diaSourceId: int
    mjd: float = Field(description="MJD, TAI")
    band: str
    psfFlux: float = Field(description="nJy")
    psfFluxErr: float = Field(description="nJy")


class LightCurvePage(BaseModel):
    diaObjectId: int
    points: list[LightCurvePoint]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class ModelStatus(BaseModel):
    name: str
    version: str
    description: str | None
    sha256: str
    opset: int | None
    features: list[str]
    class_ids: list[int]
    class_labels: list[str] | dict[str, str] | None
    min_points: int
    metrics: dict[str, Any] | None = Field(description="held-out metrics from the model card")
    training_data: Any
    created: str | None
    load_seconds: float
    ready: bool
    rows_scored: int
    declined: int
    inference_latency_ms: dict[str, float | int]
    inference_shared_with: str | None = Field(
        None, description="the model whose ONNX call also scores this one (it embeds this model's graph); "
                          "the latency is that call's")


class Live(BaseModel):
    status: str


class Check(BaseModel):
    ok: bool
    detail: Any
    stalled_s: float | None = None


class Ready(BaseModel):
    status: str = Field(description="ready or not ready (then 503)")
    checks: dict[str, Check]


class LatencyPercentiles(BaseModel):
    p50: float | None
    p90: float | None
    p99: float | None


class ModelLoad(BaseModel):
    name: str
    version: str
    rows_scored: int
    latency_ms: dict[str, float | int]


class NotableObject(BaseModel):
    label: str
    diaObjectId: str = Field(description="as text: exact in JavaScript, which loses integers beyond 2**53")
    probability: float


class ServiceStatus(BaseModel):
    alerts_per_s_last_minute: float
    alerts_per_s_series: list[float]
    series_step_s: int
    latency_ms: LatencyPercentiles
    totals: dict[str, int]
    class_mix: dict[str, int]
    lag: dict[str, int]
    uptime_s: float
    consuming: bool
    stored: int
    stalled_s: float
    stall_reason: str | None
    notable: list[NotableObject] = Field(
        description="the latest high-probability object of each notable class")
    models: list[ModelLoad]


class NightlyStats(BaseModel):
    night: str = Field(description="Rubin dayObs (the UTC-12h date) the alerts were processed on")
    consumed: int
    classified: int
    declined: int
    dead_lettered: int
    dead_lettered_by_reason: dict[str, int]
    new_objects: int = Field(description="alerts that were their object's first detection")
    classes_p_ge_0_5: dict[str, dict[str, int]] = Field(
        description="per classifier, per class id: results with that class at probability >= 0.5")
    anomalous_score_ge_0_99: dict[str, int] = Field(
        description="per anomaly model: alerts scored >= 0.99 (the population's top 1%)")
    latency_ms: LatencyPercentiles = Field(
        description="Kafka timestamp -> stored; upper bounds of histogram buckets")


class ErrorDetail(BaseModel):
    status: int
    reason: str = Field(description="stable code, e.g. unknown_schema_id, invalid_value, busy")
    message: str
    field: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


def errors(*codes: int) -> dict:
    """OpenAPI `responses` for these error statuses: all share ErrorBody."""
    return {code: {"model": ErrorBody} for code in codes}
