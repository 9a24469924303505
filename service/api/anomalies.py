"""The anomaly model's views: the top objects of a time window by anomaly score, and the experts'
feedback on them (which `alert-classifier anomaly retrain` learns from)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from service.anomaly_store import Label, Ranking
from service.api.deps import core, reject_unknown_query_parameters, require_write_access
from service.api.queries import _public
from service.api.schemas import AnomalyPage, FeedbackAnswer, errors

router = APIRouter(prefix="/v1", tags=["anomalies"], dependencies=[Depends(reject_unknown_query_parameters)])

NIGHT_D = 1.0  # the default window: the day of observations up to the newest scored alert


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Label


def _cursor(text: str | None) -> tuple[float, int] | None:
    if text is None:
        return None
    score, _, oid = text.partition(":")
    try:
        return float(score), int(oid)
    except ValueError:
        raise HTTPException(422, f"cursor {text!r} is not a next_cursor this endpoint gave",
                            headers={"x-reason": "validation_error"}) from None


@router.get("/anomalies", summary="The objects with the highest anomaly scores in a time window",
            description="Objects with alerts observed in [since, until] (MJD, TAI; default: the day "
                        "up to the newest scored alert), ranked by the anomaly score of their latest "
                        "scored alert in the window (`rank=latest`, the default: it has seen the most "
                        "of the light curve) or by their highest (`rank=highest`), with each object's "
                        "latest result per classifier. Cursor-paginated.",
            response_model=AnomalyPage, responses=errors(422))
def anomalies(request: Request,
              since: float | None = Query(None, ge=0, le=1e6, description="MJD (TAI), inclusive"),
              until: float | None = Query(None, ge=0, le=1e6, description="MJD (TAI), inclusive"),
              cursor: str | None = Query(None, max_length=60, pattern=r"^[0-9.eE+-]+:[0-9]+$",
                                         description="`next_cursor` of the previous page"),
              rank: Ranking = Query(
                  "latest", description="an object's score in the window: its latest scored alert's, "
                                        "or its highest"),
              limit: int = Query(100, ge=1, le=1000)) -> Response:
    store = core(request).store
    if until is None:
        newest = store.newest_scored_mjd()
        until = newest if newest is not None else 0.0
    if since is None:
        since = until - NIGHT_D
    if since > until:
        raise HTTPException(422, "since is after until", headers={"x-reason": "validation_error"})
    ranked = store.top_anomalies(since, until, limit, _cursor(cursor), by=rank)
    items = []
    for obj in ranked:
        latest = {row["classifier"]: _public(row) for row in store.latest_results(obj.dia_object_id)}
        items.append({"diaObjectId": obj.dia_object_id, "score": obj.score, "mjd": obj.mjd,
                      "classifier": obj.classifier, "version": obj.version, "latest": latest})
    next_cursor = f"{ranked[-1].score!r}:{ranked[-1].dia_object_id}" if len(ranked) == limit else None
    page = {"since": since, "until": until, "rank": rank, "items": items, "next_cursor": next_cursor}
    return Response(orjson.dumps(page), media_type="application/json")


@router.post("/anomalies/{diaObjectId}/feedback", summary="An expert's label for an object",
             description="`anomaly` (worth a look) or `normal`; the latest label per object is kept. "
                         "`alert-classifier anomaly retrain` learns from them. Needs `X-API-Key` when "
                         "the service has one.",
             response_model=FeedbackAnswer, responses=errors(401, 403, 404, 422))
def feedback(request: Request, body: Feedback,
             dia_object_id: int = Path(alias="diaObjectId", ge=0, le=2**63 - 1)) -> Response:
    require_write_access(request)
    store = core(request).store
    if not store.knows_object(dia_object_id):
        raise HTTPException(404, f"diaObjectId {dia_object_id} has nothing stored: only objects the "
                                 "service has seen can be labelled", headers={"x-reason": "not_found"})
    store.add_feedback(dia_object_id, body.label)
    return Response(orjson.dumps({"diaObjectId": dia_object_id, "label": body.label,
                                  "labelled_objects": store.count_feedback()}),
                    media_type="application/json")
