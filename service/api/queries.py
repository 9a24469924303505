"""Queries over stored classifications: one object's history and light curve, and filtered, paginated
listings."""

from __future__ import annotations

import csv
import io
from typing import Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from service.api.deps import core, reject_unknown_query_parameters
from service.store import Cone
from service.store import Query as StoreQuery
from streaming.lightcurve import BANDS

router = APIRouter(prefix="/v1", tags=["queries"], dependencies=[Depends(reject_unknown_query_parameters)])

CSV_COLUMNS = ("id", "dia_source_id", "dia_object_id", "classifier", "version", "ra", "dec", "mjd",
               "top_class", "top_probability", "reason")


def _public(row: dict) -> dict:
    return {"id": row["id"], "diaSourceId": row["dia_source_id"], "diaObjectId": row["dia_object_id"],
            "classifier": row["classifier"], "version": row["version"], "ra": row["ra"], "dec": row["dec"],
            "mjd": row["mjd"], "classifications": row["classifications"], "reason": row["reason"],
            "topClass": row["top_class"], "topProbability": row["top_probability"],
            "alertTimestampMs": row["alert_timestamp_ms"], "ingestTimestampMs": row["ingest_timestamp_ms"]}


@router.get("/objects/{diaObjectId}", summary="Latest classification per classifier, and the history")
def object_classifications(request: Request,
                           dia_object_id: int = Path(alias="diaObjectId", ge=0, le=2**63 - 1)) -> Response:
    rows = core(request).store.object_history(dia_object_id)
    if not rows:
        raise HTTPException(404, f"no classifications stored for diaObjectId {dia_object_id}",
                            headers={"x-reason": "not_found"})
    latest: dict[str, dict] = {}
    for row in rows:  # ordered by mjd: the last one wins
        latest[row["classifier"]] = _public(row)
    return Response(orjson.dumps({"diaObjectId": dia_object_id, "latest": latest,
                                  "history": [_public(r) for r in rows]}), media_type="application/json")


@router.get("/objects/{diaObjectId}/lightcurve",
            summary="The object's detections the store kept, in time order, a page at a time")
def object_light_curve(request: Request,
                       dia_object_id: int = Path(alias="diaObjectId", ge=0, le=2**63 - 1),
                       cursor: str | None = Query(None, max_length=60, pattern=r"^[0-9.eE+-]+:[0-9]+$",
                                                  description="`next_cursor` of the previous page"),
                       limit: int = Query(1000, ge=1, le=10_000)) -> Response:
    after = None
    if cursor is not None:
        mjd, source_id = cursor.split(":")
        try:
            after = (float(mjd), int(source_id))
        except ValueError:
            raise HTTPException(422, f"cursor {cursor!r} is not a next_cursor this endpoint gave",
                                headers={"x-reason": "validation_error"}) from None
    rows = core(request).store.detections(dia_object_id, after, limit)
    if not rows and after is None:
        raise HTTPException(404, f"no detections stored for diaObjectId {dia_object_id} (the store keeps "
                                 "them when KEEP_HISTORY is on)", headers={"x-reason": "not_found"})
    points = [{"diaSourceId": sid, "mjd": t, "band": BANDS[b], "psfFlux": f, "psfFluxErr": e}
              for sid, t, b, f, e in rows]
    next_cursor = f"{rows[-1][1]!r}:{rows[-1][0]}" if len(rows) == limit else None
    body = {"diaObjectId": dia_object_id, "points": points, "next_cursor": next_cursor}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/classifications", summary="Stored classifications, filtered, with cursor pagination")
def classifications(
    request: Request,
    classifier: str | None = Query(None, max_length=100, description="e.g. rrlyrae, supernova"),
    class_id: int | None = Query(None, alias="classId", ge=0, le=100_000, description="ELAsTiCC2 class id"),
    min_probability: float | None = Query(None, ge=0, le=1,
                                          description="of classId if given, else of the top class"),
    since: float | None = Query(None, ge=0, le=1e6, description="MJD (TAI) of the alert, inclusive"),
    until: float | None = Query(None, ge=0, le=1e6, description="MJD (TAI) of the alert, inclusive"),
    ra: float | None = Query(None, ge=0, le=360, description="cone centre, degrees"),
    dec: float | None = Query(None, ge=-90, le=90, description="cone centre, degrees"),
    radius: float | None = Query(None, gt=0, le=36_000, description="cone radius, arcsec"),
    cursor: int = Query(0, ge=0, le=2**62, description="`next_cursor` of the previous page"),
    limit: int = Query(100, ge=1, le=1000),
    format: Literal["json", "csv"] = Query("json"),
) -> Response:
    cone_args = (ra, dec, radius)
    if any(a is not None for a in cone_args) and not all(a is not None for a in cone_args):
        raise HTTPException(422, "a cone search needs ra, dec and radius together",
                            headers={"x-reason": "validation_error"})
    if since is not None and until is not None and since > until:
        raise HTTPException(422, "since is after until", headers={"x-reason": "validation_error"})
    q = StoreQuery(classifier=classifier, class_id=class_id, min_probability=min_probability,
                   since_mjd=since, until_mjd=until,
                   cone=Cone(ra, dec, radius) if radius is not None else None,
                   after_id=cursor, limit=limit)
    rows = core(request).store.query(q)
    next_cursor = rows[-1]["id"] if len(rows) == limit else None
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([r[c] for c in CSV_COLUMNS])
        headers = {"X-Next-Cursor": str(next_cursor)} if next_cursor is not None else {}
        return Response(buf.getvalue(), media_type="text/csv", headers=headers)
    return Response(orjson.dumps({"items": [_public(r) for r in rows], "next_cursor": next_cursor}),
                    media_type="application/json")
