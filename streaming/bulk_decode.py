"""Bulk columnar decode: a batch of Confluent-framed Avro packets -> alerts with their light curves.

The stream's hot path. Packets that share a shipped schema id are one Avro object-container block
waiting to happen: header (`Obj\\x01`, the schema, codec null, a sync marker), then one block of the
bodies, framing stripped. `polars.read_avro` reads that block column-wise in Rust (~4x faster than
the per-record decoder, bench/decode_bench.py), and each light curve comes straight from the
columns: the history lists exploded into flat arrays, deduplicated, checked and sorted once for the
whole batch, then cut per alert. The result equals `Decoder.decode` + `light_curve` exactly
(tests/test_bulk_decode.py checks every shipped schema version).

Two safeguards, because one corrupt body must not spoil or shift its neighbours:
- every body is followed by an 8-byte marker, read back as the last field of the record: a body
  with bytes left over (or missing) misaligns the marker, and that packet and the ones after it are
  decoded again without it (the bad one per message, which names the fault);
- when polars cannot read a block at all, it is split in halves until the bad packet is alone, and
  small groups are decoded per message: only the bad packet becomes a dead letter. (Some corrupt
  blocks make polars' Rust code panic: caught like an error, but Rust prints the panic on stderr.)

JSON, unframed and registry-resolved packets take the per-message path (`Decoder.decode`).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
from collections.abc import Sequence
from functools import cache
from itertools import pairwise

# One thread per process, as for onnxruntime: workers scale out as processes, and polars' own pool
# (a thread per core) fought the other worker over 2 cores: 2 workers at 30+30 points 609 / 665 ->
# 768 / 777 alerts/s, decode 711 / 569 -> 500 / 529 us per alert (bench/pipeline_bench.py, two
# interleaved pairs). Polars reads it once, when first imported.
os.environ.setdefault("POLARS_MAX_THREADS", "1")
# Polars' allocator (jemalloc) handed a batch's freed pages back to the kernel before the next batch
# took them again: ~8 page faults an alert, ~20 us of kernel time. jemalloc's own defaults (unused
# pages kept 10 s) reuse them; an idle worker still gives them back. Read when polars first allocates.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:10000,muzzy_decay_ms:10000")

import numpy as np
import polars as pl
from polars.exceptions import PanicException

from models.errors import DecodeError, InvalidValue
from models.features import radix_sortable
from streaming.decode import (
    HEADER,
    MAGIC,
    MJD_MAX,
    MJD_MIN,
    Alert,
    Decoder,
    FieldNames,
    SchemaVersion,
    _shipped_definition,
    field_names,
    shipped_versions,
)
from streaming.lightcurve import BAND_INDEX, FLUX_MAX_NJY, LightCurve, light_curve

END_FIELD = "_endMarker"
END_MARKER = b"\xa5\x17\x3c\xe2\x5a\x0f\xd1\x96"  # no proper prefix is also a suffix: shifts show
SYNC = b"alert-classifier"  # 16 bytes; any value works in a container we write and read ourselves
SMALL_GROUP = 4  # an unreadable block this small is decoded per message
log = logging.getLogger(__name__)
MAX_BLOCK_BYTES = 64 * 1024 * 1024


def _zigzag(n: int) -> bytes:
    """Avro's long encoding: zigzag, then a little-endian base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _avro_bytes(b: bytes) -> bytes:
    return _zigzag(len(b)) + b


def _written_out(definition: dict) -> dict:
    """The schema with every reference to a named type replaced by a full copy of that type, each
    copy renamed: polars' reader rejects references back to a named type (Rubin's `prvDiaSources`
    items are `lsst.v11_1.diaSource`)."""
    named: dict[str, dict] = {}
    copies = 0

    def full_name(name: str, namespace: str | None) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def walk(t, namespace):
        nonlocal copies
        if isinstance(t, str):
            found = named.get(full_name(t, namespace)) or named.get(t)
            if found is None:
                return t  # a primitive
            copies += 1
            dup = copy.deepcopy(found)
            dup["name"] = f"{dup['name'].rsplit('.', 1)[-1]}_copy{copies}"
            return dup
        if isinstance(t, list):
            return [walk(x, namespace) for x in t]
        t = dict(t)
        kind = t.get("type")
        if kind in ("record", "enum", "fixed"):
            ns = t.get("namespace", namespace)
            if kind == "record":
                t["fields"] = [dict(f, type=walk(f["type"], ns)) for f in t["fields"]]
            named[full_name(t["name"], ns)] = t
        elif kind == "array":
            t["items"] = walk(t["items"], namespace)
        elif kind == "map":
            t["values"] = walk(t["values"], namespace)
        return t

    return walk(definition, definition.get("namespace"))


@cache
def _container_header(version: SchemaVersion) -> bytes:
    schema = _written_out(_shipped_definition(version))
    schema["fields"].append({"name": END_FIELD, "type": {"type": "fixed", "name": "EndMarker",
                                                        "size": len(END_MARKER)}})
    meta = (_zigzag(2) + _avro_bytes(b"avro.schema") + _avro_bytes(json.dumps(schema).encode())
            + _avro_bytes(b"avro.codec") + _avro_bytes(b"null") + _zigzag(0))
    return b"Obj\x01" + meta + SYNC


def _read_block(version: SchemaVersion, bodies: list[memoryview], columns: list[str]) -> pl.DataFrame:
    pieces = [b""] * (2 * len(bodies))
    pieces[0::2] = bodies
    pieces[1::2] = [END_MARKER] * len(bodies)
    length = sum(len(b) for b in bodies) + len(END_MARKER) * len(bodies)
    # one copy of the bodies (this batch can be 100 MB with the cutouts)
    container = b"".join([_container_header(version), _zigzag(len(bodies)), _zigzag(length), *pieces, SYNC])
    return pl.read_avro(io.BytesIO(container), columns=columns)


def decode_batch(values: Sequence[bytes], decoder: Decoder) -> list[Alert | DecodeError]:
    """For each raw message, in order, an Alert whose `curve` holds its light curve (detections) or a
    DecodeError value: never raises for bad input, like `Decoder.decode_batch`."""
    out: list[Alert | DecodeError | None] = [None] * len(values)
    groups: dict[int, list[int]] = {}
    shipped = {v.schema_id for v in shipped_versions()}
    for i, data in enumerate(values):
        if len(data) > HEADER.size and data[0] == MAGIC and (sid := HEADER.unpack_from(data)[1]) in shipped:
            groups.setdefault(sid, []).append(i)
        else:
            out[i] = _one(decoder, data)
    for schema_id, idx in groups.items():
        for block in _blocks(values, idx):
            _decode_group(values, block, SchemaVersion.from_id(schema_id), decoder, out)
    return out  # type: ignore[return-value]  # every slot is filled


def _blocks(values: Sequence[bytes], idx: list[int]) -> list[list[int]]:
    """idx cut into runs of at most MAX_BLOCK_BYTES: the container is a copy of the bodies, and a
    10,000-alert batch of long histories would otherwise copy ~1.6 GB at once."""
    blocks: list[list[int]] = [[]]
    size = 0
    for i in idx:
        if blocks[-1] and size + len(values[i]) > MAX_BLOCK_BYTES:
            blocks.append([])
            size = 0
        blocks[-1].append(i)
        size += len(values[i])
    return blocks


def _one(decoder: Decoder, data: bytes) -> Alert | DecodeError:
    try:
        alert = decoder.decode(data, lean=True)
    except DecodeError as exc:
        return exc
    alert.curve = light_curve(alert)
    return alert


def _decode_group(values: Sequence[bytes], idx: list[int], version: SchemaVersion, decoder: Decoder,
                  out: list) -> None:
    names = field_names(version)
    columns = [names.alert_id, "diaSource", "prvDiaSources", END_FIELD]
    while idx:
        if len(idx) <= SMALL_GROUP:
            for i in idx:
                out[i] = _one(decoder, values[i])
            return
        try:
            frame = _read_block(version, [memoryview(values[i])[HEADER.size:] for i in idx], columns)
        except (Exception, PanicException):  # noqa: BLE001 - polars raises many types (and panics,
            # a BaseException) on a corrupt block: halve it
            half = len(idx) // 2
            _decode_group(values, idx[:half], version, decoder, out)
            _decode_group(values, idx[half:], version, decoder, out)
            return
        aligned = np.array([m == END_MARKER for m in frame[END_FIELD].to_list()], dtype=bool)
        good = len(idx) if aligned.all() else int(np.argmin(aligned))
        try:
            alerts = _alerts(frame.head(good), version, decoder)
        except Exception:  # columns this code did not expect: never lose the alerts
            log.exception("bulk decode of %d packets failed; decoding them one by one", good)
            alerts = [_one(decoder, values[i]) for i in idx[:good]]
        for i, alert in zip(idx[:good], alerts, strict=True):
            out[i] = alert
        if good == len(idx):
            return
        out[idx[good]] = _one(decoder, values[idx[good]])  # misaligned: says what is wrong with it
        idx = idx[good + 1:]  # read after it again: they were read from shifted bytes


def _band_index(series: pl.Series) -> np.ndarray:
    return series.replace_strict(BAND_INDEX, default=-1, return_dtype=pl.Int8).fill_null(-1).to_numpy()


def _alerts(frame: pl.DataFrame, version: SchemaVersion, decoder: Decoder) -> list[Alert | DecodeError]:
    names = field_names(version)
    source = frame["diaSource"].struct.unnest()  # one operation: each `struct.field` is a query
    return alerts_from_columns(
        version, decoder, frame[names.alert_id].to_list(), source["diaSourceId"].to_list(),
        source["diaObjectId"].to_list() if "diaObjectId" in source.columns else [None] * frame.height,
        source["ra"].to_list(), source[names.dec].to_list(), source[names.time].to_list(),
        source[names.band].to_list(), _curves(frame, source, names))


def alerts_from_columns(version: SchemaVersion, decoder: Decoder, alert_ids: list, source_ids: list,
                        object_ids: list, ra: list, dec: list, mjd: list, band: list,
                        curves: list[LightCurve]) -> list[Alert | DecodeError]:
    """Alerts (with their light curves) from per-alert columns; InvalidValue for one whose position,
    time or ids cannot be right, as `Decoder.decode` checks them."""
    names = field_names(version)
    out: list[Alert | DecodeError] = []
    for k, curve in enumerate(curves):
        alert = Alert(version=version, record={names.alert_id: alert_ids[k]}, alert_id=alert_ids[k],
                      dia_source_id=source_ids[k], dia_object_id=object_ids[k], ra=ra[k], dec=dec[k],
                      mjd=mjd[k], band=band[k], curve=curve)
        if decoder.check_values:
            problem = alert.invalid_value(names)
            if problem:
                out.append(InvalidValue(problem, schema_id=version.schema_id))
                continue
        out.append(alert)
    return out


def _curves(frame: pl.DataFrame, source: pl.DataFrame, names: FieldNames) -> list[LightCurve]:
    """Every alert's light curve from the columns (see `curves_from_points`); `source`: the
    diaSource column unnested."""
    fields = ["diaSourceId", names.time, names.flux, names.flux_err, names.band]
    current = source.select(fields)
    history = frame["prvDiaSources"]
    counts = history.list.len().fill_null(0).to_numpy().astype(np.int64)
    previous = (history.filter(pl.Series(counts > 0)).explode().struct.unnest().select(fields) if counts.any()
                else current.clear())
    points = pl.concat([current, previous], how="vertical_relaxed")
    return curves_from_points(points["diaSourceId"].to_numpy().astype(np.int64),
                              points[names.time].cast(pl.Float64).to_numpy(),
                              points[names.flux].cast(pl.Float64).to_numpy(),
                              points[names.flux_err].cast(pl.Float64).to_numpy(),
                              _band_index(points[names.band]), counts)


def curves_from_points(sid: np.ndarray, t: np.ndarray, flux: np.ndarray, err: np.ndarray, band: np.ndarray,
                       counts: np.ndarray) -> list[LightCurve]:
    """Every alert's light curve from flat arrays: the batch's n diaSources first, then each alert's
    history in order (`counts[k]` points for alert k); nulls as NaN, bands as `BAND_INDEX` (-1:
    unknown). The same points, order and counts as `lightcurve.light_curve` builds from one record
    (diaSource first, then the history in order; the first of each diaSourceId kept; unusable
    points dropped and counted; sorted by time)."""
    n = len(counts)
    owner = np.concatenate([np.arange(n), np.repeat(np.arange(n), counts)])

    # The rows are in (owner, position) order already (the diaSources first, each at position 0), so
    # stable sorts by id and then by owner order them as np.lexsort((position, sid, owner)) would.
    by_owner = radix_sortable(owner, n)
    by_sid = np.argsort(sid, kind="stable")
    order = by_sid[np.argsort(by_owner[by_sid], kind="stable")]  # an object's repeated id: the first counts
    first = np.ones(len(sid), bool)
    first[order[1:]] = (owner[order[1:]] != owner[order[:-1]]) | (sid[order[1:]] != sid[order[:-1]])
    with np.errstate(invalid="ignore"):
        usable = (np.isfinite(t) & (t >= MJD_MIN) & (t <= MJD_MAX) & np.isfinite(flux)
                  & (np.abs(flux) <= FLUX_MAX_NJY) & np.isfinite(err) & (err > 0) & (err <= FLUX_MAX_NJY)
                  & (band >= 0) & (sid > 0))
    kept = first & usable
    duplicates = np.bincount(owner[~first], minlength=n)
    dropped = np.bincount(owner[first & ~usable], minlength=n)

    rows = np.flatnonzero(kept)
    by_time = rows[np.argsort(t[rows], kind="stable")]  # as above: ties stay in packet order
    rows = by_time[np.argsort(by_owner[by_time], kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(owner[rows], minlength=n))])
    t, flux, err, band, sid = t[rows], flux[rows], err[rows], band[rows].astype(np.int8), sid[rows]
    return [LightCurve(t[a:b], flux[a:b], err[a:b], band[a:b], n_input=int(counts[k] + 1),
                       n_dropped=int(dropped[k]), n_duplicates=int(duplicates[k]), source_id=sid[a:b])
            for k, (a, b) in enumerate(pairwise(bounds))]
