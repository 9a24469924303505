"""The object explorer (HTML): one object's light curve and classifications over time, a search by
id or cone, and notable recent objects. Rendered on the server (`service/explorer.py`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from service import explorer
from service.api.deps import core
from service.store import Cone
from service.store import Query as StoreQuery
from streaming.lightcurve import BANDS

router = APIRouter(tags=["explorer"])
MAX_POINTS = 10_000
# (label, classifier, class id) shown as notable when recently given p >= NOTABLE_P
NOTABLE = [("SN Ia", "supernova", 2222), ("SN II", "supernova", 2224), ("SN Ib/c", "supernova", 2223),
           ("SLSN", "supernova", 2242), ("RR Lyrae", "rrlyrae", 2323)]
NOTABLE_P = 0.8


def notable(store) -> list[dict]:
    """The latest high-probability object of each notable class (ids as strings: exact in browsers)."""
    out = []
    for label, classifier, class_id in NOTABLE:
        for oid, prob in store.notable(classifier, class_id, NOTABLE_P, limit=1):
            out.append({"label": label, "diaObjectId": str(oid), "probability": round(prob, 3)})
    return out


@router.get("/objects/{diaObjectId}", response_class=HTMLResponse, summary="The object explorer page")
def object_page(request: Request,
                dia_object_id: int = Path(alias="diaObjectId", ge=0, le=2**63 - 1)) -> HTMLResponse:
    store = core(request).store
    history = store.object_history(dia_object_id)
    rows = store.detections(dia_object_id, None, MAX_POINTS + 1)
    if not history and not rows:
        raise HTTPException(404, f"nothing stored for diaObjectId {dia_object_id}",
                            headers={"x-reason": "not_found"})
    points = [{"diaSourceId": sid, "mjd": t, "band": BANDS[b], "psfFlux": f, "psfFluxErr": e}
              for sid, t, b, f, e in rows[:MAX_POINTS]]
    return HTMLResponse(explorer.object_page(dia_object_id, history, points, len(rows) > MAX_POINTS,
                                             store.object_scores(dia_object_id)))


@router.get("/objects", response_class=HTMLResponse,
            summary="Find objects: an id, or `ra dec radius` (deg, deg, arcsec); none: notable recent ones")
def find(request: Request, q: str = Query("", max_length=200)):
    store = core(request).store
    words = q.replace(",", " ").split()
    if len(words) == 1 and words[0].isdigit():
        return RedirectResponse(f"/objects/{int(words[0])}", status_code=303)
    if len(words) == 3:
        try:
            ra, dec, radius = (float(w) for w in words)
        except ValueError:
            ra = dec = radius = None
        if ra is not None and 0 <= ra < 360 and -90 <= dec <= 90 and 0 < radius <= 36_000:
            rows = store.query(StoreQuery(cone=Cone(ra, dec, radius), limit=1000))
            latest: dict[int, dict[str, dict]] = {}
            for r in sorted(rows, key=lambda r: r["mjd"]):
                if r["dia_object_id"] is not None:
                    latest.setdefault(r["dia_object_id"], {})[r["classifier"]] = r
            return HTMLResponse(explorer.object_list_page(f"Objects within {radius:g}\" of {ra:g}, {dec:+g}",
                                                          sorted(latest.items()), q))
    if q:
        raise HTTPException(422, "search for a diaObjectId, or `ra dec radius` (degrees, degrees, arcsec)",
                            headers={"x-reason": "validation_error"})
    hits = []
    for item in notable(store):
        oid = int(item["diaObjectId"])
        latest = {}
        for r in store.object_history(oid):
            latest[r["classifier"]] = r
        hits.append((oid, latest))
    return HTMLResponse(explorer.object_list_page(f"Notable recent objects (p ≥ {NOTABLE_P})", hits))
