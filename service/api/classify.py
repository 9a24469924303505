"""POST /v1/classify: one Avro packet, or one JSON alert or a list of them -> result objects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import anyio.to_thread
import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from models.errors import DecodeError
from service.api.deps import core, reject_unknown_query_parameters, require_write_access
from service.api.schemas import AlertResult, errors
from streaming import bulk_decode, json_decode
from streaming.decode import Alert, Decoder, SchemaVersion, latest_version, shipped_versions
from streaming.pipeline import classify_with_records

router = APIRouter(prefix="/v1", tags=["classify"], dependencies=[Depends(reject_unknown_query_parameters)])

AVRO_TYPES = {"application/avro", "application/vnd.apache.avro+binary", "avro/binary"}


def _fail(status: int, reason: str, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message, headers={"x-reason": reason})


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _fail(413, "body_too_large", f"request body of {declared} bytes exceeds the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _fail(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


def _version(schema: str | None) -> SchemaVersion | None:
    if schema is None:
        return None
    try:
        version = SchemaVersion.parse(schema)
    except ValueError as exc:
        raise _fail(422, "validation_error", f"schema: {exc}") from None
    if version not in shipped_versions():
        known = ", ".join(str(v) for v in shipped_versions())
        raise _fail(422, "validation_error", f"schema: {version} is not a known Rubin schema ({known})")
    return version


@router.post(
    "/classify",
    summary="Classify one Avro packet, or one JSON alert or a list of them",
    description="`Content-Type: application/avro`: one packet, Confluent-framed, or unframed with "
                "`?schema=11.1`. `application/json`: one alert object (as in lsst-alert-packet's "
                "alert.json) or a list of them; the answer is then a list. Light curves include the "
                "store's earlier detections of each object. `store=true` keeps the results and the "
                "alerts' detections (needs `X-API-Key` when the service has one).",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array",
                                                                        "items": {"type": "object"}}]}},
        "application/avro": {"schema": {"type": "string", "format": "binary"}}}}},
    response_model=AlertResult | list[AlertResult],
    responses=errors(401, 403, 413, 415, 422, 500, 503),
)
async def classify(request: Request,
                   schema: str | None = Query(None, description="schema version of an unframed Avro "
                                                                "packet, or of JSON alerts, e.g. 11.1"),
                   store: bool = Query(False, description="keep the results in the store")) -> Response:
    state = core(request)
    if store:
        require_write_access(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in AVRO_TYPES | {"application/json"}:
        raise _fail(415, "unsupported_media_type",
                    f"Content-Type {content_type or '(none)'} is not accepted: send application/avro "
                    "(one packet) or application/json (an alert object or a list)")
    body = await _body(request, state.settings.max_body_bytes)
    version = _version(schema)
    # Decoding, features, models and the store are CPU and I/O work: a worker thread does them, so
    # the event loop keeps answering probes and metrics. A bounded number at once; beyond, 503.
    slots = state.classify_slots
    if not slots.acquire(blocking=False):
        raise HTTPException(503, f"{state.settings.max_concurrent_classify} classify requests are in "
                                 "progress; retry shortly", headers={"x-reason": "busy", "Retry-After": "1"})
    state.metrics.classify_in_progress.inc()
    try:
        payload = await anyio.to_thread.run_sync(_classify, state, content_type, body, version, store)
    finally:
        state.metrics.classify_in_progress.dec()
        slots.release()
    return Response(payload, media_type="application/json")


def _classify(state, content_type: str, body: bytes, version: SchemaVersion | None, store: bool) -> bytes:
    decoder = Decoder(version or state.decoder.default_version, state.decoder.registry_url)
    if content_type == "application/json":
        alerts, many = _json_alerts(body, decoder, version, state.settings.max_batch_alerts)
    else:
        if not body:
            raise _fail(422, "empty", "the request body is empty: send one Avro packet")
        alerts, many = [decoder.decode(body, lean=True)], False
    history = state.store if state.settings.keep_history else None
    objects, records, detections = classify_with_records(alerts, state.registry, history)
    if store:
        state.store.upsert(records, detections)
    return orjson.dumps(objects if many else objects[0])


def _json_alerts(body: bytes, decoder: Decoder, version: SchemaVersion | None,
                 max_alerts: int) -> tuple[list[Alert], bool]:
    """The request's alerts, checked against their schema. Typed in bulk by `json_decode` when the
    body fits the schema (the usual case); otherwise one element at a time, each written as Avro,
    which names the fault precisely and tries older schema versions."""
    target = version or decoder.default_version or latest_version()
    fast = json_decode.decode_json(body, target) if len(body) <= ONE_CALL_MAX_BYTES else None
    if fast is None:
        alerts, many = _checked_one_by_one(body, decoder, version, max_alerts)
    else:
        many, items = fast
        if len(items) > max_alerts:
            raise _fail(413, "too_many_alerts", f"more than {max_alerts} alerts in one request")
        if not items:
            raise _fail(422, "validation_error", "the list of alerts is empty")
        alerts = json_decode.alerts(items, target, decoder)
    for i, alert in enumerate(alerts):
        if isinstance(alert, DecodeError):
            raise _fail(422, alert.reason, f"{f'[{i}]: ' if many else ''}{alert}")
    return alerts, many


def _checked_one_by_one(body: bytes, decoder: Decoder, version: SchemaVersion | None,
                        max_alerts: int) -> tuple[list[Alert | DecodeError], bool]:
    """Alerts checked against their schema and written as Avro one element at a time (a 500-alert
    request never holds the whole parsed JSON: millions of objects a garbage collection would walk
    while the probes wait), then decoded together by the bulk decoder, as the stream does."""
    try:
        many, items = iter_json(body)
        packets = []
        for i, item in enumerate(items):
            if i == max_alerts:
                raise _fail(413, "too_many_alerts", f"more than {max_alerts} alerts in one request")
            try:
                packets.append(decoder.json_to_avro(item, version))  # a non-object: SchemaMismatch
            except DecodeError as exc:
                raise _fail(422, exc.reason, f"{f'[{i}]: ' if many else ''}{exc}") from None
    except ValueError as exc:
        raise _fail(422, "invalid_json", f"not valid JSON: {exc}") from None
    if not packets:
        raise _fail(422, "validation_error", "the list of alerts is empty")
    return bulk_decode.decode_batch(packets, decoder), many


_JSON = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


# Bodies up to this size are parsed by orjson in one call (8 MB, 100 alerts with 30+30-point
# histories: 45 ms against 170 ms for json); larger ones element by element (below).
ONE_CALL_MAX_BYTES = 10 * 2**20


def iter_json(body: bytes) -> tuple[bool, Iterator]:
    """(is a list, its elements) of the request's JSON. A large list is parsed one element at a time,
    as it is consumed: a parser holds the GIL for its whole call, and one call over a 40 MB list would
    stall the event loop, and with it the probes, for ~250 ms. What orjson refuses goes to Python's
    parser, which names the fault, or parses NaN and Infinity for the value checks to refuse, naming
    the field."""
    if len(body) <= ONE_CALL_MAX_BYTES:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            return (True, iter(parsed)) if isinstance(parsed, list) else (False, iter([parsed]))
    text = body.decode()
    i = _SPACE.match(text).end()
    if not text.startswith("[", i):
        return False, iter([_JSON.decode(text)])
    return True, _elements(text, i + 1)


def _elements(text: str, i: int) -> Iterator:
    i = _SPACE.match(text, i).end()
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            item, i = _JSON.raw_decode(text, i)
            yield item
            i = _SPACE.match(text, i).end()
            if text.startswith(",", i):
                i = _SPACE.match(text, i + 1).end()
            elif text.startswith("]", i):
                i += 1
                break
            else:
                raise ValueError(f"expected ',' or ']' at character {i}")
    if _SPACE.match(text, i).end() != len(text):
        raise ValueError(f"extra data after the list at character {i}")
