"""Queries over stored classifications: one object's history and light curve, and filtered, paginated
listings."""

from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from service.api.deps import core, reject_unknown_query_parameters
from service.api.formats import MEDIA_TYPES, Column, table_response
from service.api.schemas import ClassificationPage, LightCurvePage, ObjectClassifications, errors
from service.store import Cone
from service.store import Query as StoreQuery
from streaming.lightcurve import BANDS

router = APIRouter(prefix="/v1", tags=["queries"], dependencies=[Depends(reject_unknown_query_parameters)])

# The table formats' columns: (store row key, column), in order.
CLASSIFICATION_COLUMNS = [
    ("id", Column("id", "int64", None, "row id; the cursor of the next page")),
    ("dia_source_id", Column("diaSourceId", "int64", None, "Rubin diaSourceId of the alert")),
    ("dia_object_id", Column("diaObjectId", "int64", None,
                             "Rubin diaObjectId (null for solar-system sources)")),
    ("classifier", Column("classifier", "str", None, "classifier name")),
    ("version", Column("version", "str", None, "classifier version")),
    ("ra", Column("ra", "float64", "deg", "right ascension of the diaSource (ICRS)")),
    ("dec", Column("dec", "float64", "deg", "declination of the diaSource (ICRS)")),
    ("mjd", Column("mjd", "float64", "d", "midpointMjdTai of the diaSource (MJD, TAI)")),
    ("top_class", Column("topClass", "int64", None, "ELAsTiCC2 class id with the highest probability")),
    ("top_probability", Column("topProbability", "float64", None, "its probability")),
    ("classifications", Column("classifications", "str", None,
                               "every class id and probability, JSON [{classId, probability}]")),
    ("reason", Column("reason", "str", None, "why the classifier declined; null when it judged")),
]
LIGHT_CURVE_COLUMNS = [
    Column("diaSourceId", "int64", None, "Rubin diaSourceId of the detection"),
    Column("mjd", "float64", "d", "midpointMjdTai (MJD, TAI)"),
    Column("band", "str", None, "Rubin filter: u, g, r, i, z or y"),
    Column("psfFlux", "float64", "nJy", "PSF difference flux"),
    Column("psfFluxErr", "float64", "nJy", "uncertainty of psfFlux"),
]
TABLE_FORMATS = ("csv", "parquet", "votable")
# the other formats' media types beside JSON, for the OpenAPI description
TABLE_RESPONSES = {200: {"content": {MEDIA_TYPES[f]: {} for f in TABLE_FORMATS}}}


def _public(row: dict) -> dict:
    return {"id": row["id"], "diaSourceId": row["dia_source_id"], "diaObjectId": row["dia_object_id"],
            "classifier": row["classifier"], "version": row["version"], "ra": row["ra"], "dec": row["dec"],
            "mjd": row["mjd"], "classifications": row["classifications"], "reason": row["reason"],
            "topClass": row["top_class"], "topProbability": row["top_probability"],
            "alertTimestampMs": row["alert_timestamp_ms"], "ingestTimestampMs": row["ingest_timestamp_ms"]}


@router.get("/objects/{diaObjectId}", summary="Latest classification per classifier, and the history",
            response_model=ObjectClassifications, responses=errors(404, 422))
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
            summary="The object's detections the store kept, in time order, a page at a time",
            response_model=LightCurvePage, responses={**TABLE_RESPONSES, **errors(404, 422)})
def object_light_curve(request: Request,
                       dia_object_id: int = Path(alias="diaObjectId", ge=0, le=2**63 - 1),
                       cursor: str | None = Query(None, max_length=60, pattern=r"^[0-9.eE+-]+:[0-9]+$",
                                                  description="`next_cursor` of the previous page"),
                       limit: int = Query(1000, ge=1, le=10_000),
                       format: Literal["json", "csv", "parquet", "votable"] = Query("json")) -> Response:
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
    next_cursor = f"{rows[-1][1]!r}:{rows[-1][0]}" if len(rows) == limit else None
    if format in TABLE_FORMATS:
        return table_response(format, LIGHT_CURVE_COLUMNS,
                              [(sid, t, BANDS[b], f, e) for sid, t, b, f, e in rows],
                              name=f"lightcurve_{dia_object_id}",
                              headers={"X-Next-Cursor": next_cursor} if next_cursor else None)
    points = [{"diaSourceId": sid, "mjd": t, "band": BANDS[b], "psfFlux": f, "psfFluxErr": e}
              for sid, t, b, f, e in rows]
    body = {"diaObjectId": dia_object_id, "points": points, "next_cursor": next_cursor}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/classifications", summary="Stored classifications, filtered, with cursor pagination",
            response_model=ClassificationPage, responses={**TABLE_RESPONSES, **errors(422)})
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
    format: Literal["json", "csv", "parquet", "votable"] = Query("json"),
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
    if format in TABLE_FORMATS:
        table = [tuple(orjson.dumps(r[key]).decode() if key == "classifications" else r[key]
                       for key, _ in CLASSIFICATION_COLUMNS) for r in rows]
        columns = [c for _, c in CLASSIFICATION_COLUMNS]
        if format == "csv":  # as it always was: store names, without the classifications list
            columns = [Column(key, c.kind, c.unit, c.description) for key, c in CLASSIFICATION_COLUMNS]
            columns, table = columns[:-2] + columns[-1:], [t[:-2] + t[-1:] for t in table]
        cursor_header = {"X-Next-Cursor": str(next_cursor)} if next_cursor is not None else None
        return table_response(format, columns, table, name="classifications", headers=cursor_header)
    return Response(orjson.dumps({"items": [_public(r) for r in rows], "next_cursor": next_cursor}),
                    media_type="application/json")
