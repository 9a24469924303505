"""Nightly statistics from the store's counters: they survive restarts and cost a few dozen rows per
night, however many alerts the night brought."""

from __future__ import annotations

import datetime as dt
import time

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from service.api.deps import core, reject_unknown_query_parameters
from service.api.schemas import NightlyStats, errors
from streaming.nightly import day_obs, summarise

router = APIRouter(prefix="/v1", tags=["statistics"], dependencies=[Depends(reject_unknown_query_parameters)])
DATE = r"^\d{4}-\d{2}-\d{2}$"


@router.get("/stats/nightly", response_model=list[NightlyStats], responses=errors(422),
            summary="Per night (Rubin dayObs, UTC-12h): alerts consumed, classified, declined, "
                    "dead-lettered by reason, new objects, classes at p >= 0.5, latency percentiles")
def nightly(request: Request,
            start: str | None = Query(None, pattern=DATE, description="first night, YYYY-MM-DD; "
                                      "default: a week before `end`"),
            end: str | None = Query(None, pattern=DATE,
                                    description="last night, YYYY-MM-DD; default: tonight")) -> list[dict]:
    try:
        last = dt.date.fromisoformat(end or day_obs(time.time()))
        first = dt.date.fromisoformat(start) if start else last - dt.timedelta(days=6)
    except ValueError as exc:
        raise HTTPException(422, f"not a date: {exc}", headers={"x-reason": "validation_error"}) from None
    if first > last:
        raise HTTPException(422, "start is after end", headers={"x-reason": "validation_error"})
    if (last - first).days > 3660:
        raise HTTPException(422, "at most ten years at a time", headers={"x-reason": "validation_error"})
    counters = core(request).store.nightly(first.isoformat(), last.isoformat())
    return [summarise(night, metrics) for night, metrics in sorted(counters.items())]
