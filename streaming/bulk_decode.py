"""Bulk decode: a batch of Confluent-framed Avro packets -> alerts with their light curves.

The stream's hot path. A packet's body carries ~100 fields for each detection of its history, and a
light curve needs five of them. `avro_columns` compiles each shipped schema once into a program that
reads those fields, and the few the alert itself needs, from every body of a batch in one compiled
loop, stepping over the rest where they lie (no copy of the bodies); each light curve then comes
straight from the columns: the history flattened, deduplicated, checked and sorted once for the whole
batch, then cut per alert. The result equals `Decoder.decode` + `light_curve` exactly
(tests/test_bulk_decode.py checks every shipped schema version).

One corrupt body must not spoil its neighbours: the compiled reader checks each body as it reads it
and rejects any it cannot read exactly (bytes short or left over, a bad union branch, length or
varint), and a rejected packet is decoded alone by the full reader, which names what is wrong with
it: only the bad packet becomes a dead letter. JSON, unframed and registry-resolved packets, and a
schema with a construct the reader does not compile, take the per-message path (`Decoder.decode`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from itertools import pairwise

import numpy as np

from models.errors import DecodeError, InvalidValue
from models.features import radix_sortable
from streaming import avro_columns
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
from streaming.lightcurve import BAND_INDEX, BANDS, FLUX_MAX_NJY, LightCurve, light_curve

log = logging.getLogger(__name__)
HISTORY = "prvDiaSources"
# what an alert and each point of its light curve need, by `FieldNames` attribute where the name
# changed between schema versions
_SOURCE_FIELDS = ("diaSourceId", "diaObjectId", "ra", "dec", "time", "band", "flux", "flux_err")
_POINT_FIELDS = ("diaSourceId", "time", "flux", "flux_err", "band")


def _named(names: FieldNames, field: str) -> str:
    return getattr(names, field, field)


@cache
def _program(version: SchemaVersion) -> avro_columns.Program:
    names = field_names(version)
    definition = _shipped_definition(version)
    source = next(f["type"] for f in definition["fields"] if f["name"] == "diaSource")
    present = {f["name"] for f in source["fields"]}  # diaObjectId: not in every version
    wanted = [(names.alert_id,)]
    wanted += [("diaSource", _named(names, f)) for f in _SOURCE_FIELDS if _named(names, f) in present]
    wanted += [(HISTORY, "*", _named(names, f)) for f in _POINT_FIELDS]
    return avro_columns.compile_schema(definition, wanted, HISTORY, BANDS)


def warm_up() -> None:
    """Compile the reader (numba: ~2 s the first time on a machine, then read from its cache) by
    decoding one packet, so that a worker's first batch is not slow."""
    from streaming.simulate import simulate_alerts  # only here: the stream never simulates

    version = shipped_versions()[-1]
    decoder = Decoder()
    decode_batch(decoder.encode_batch(list(simulate_alerts(1, history=2, version=version, seed=0)), version),
                 decoder)


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
        _decode_group(values, idx, SchemaVersion.from_id(schema_id), decoder, out)
    return out  # type: ignore[return-value]  # every slot is filled


def _one(decoder: Decoder, data: bytes) -> Alert | DecodeError:
    try:
        alert = decoder.decode(data, lean=True)
    except DecodeError as exc:
        return exc
    alert.curve = light_curve(alert)
    return alert


def _decode_group(values: Sequence[bytes], idx: list[int], version: SchemaVersion, decoder: Decoder,
                  out: list) -> None:
    packets = [values[i] if isinstance(values[i], bytes) else bytes(values[i]) for i in idx]
    try:
        program = _program(version)
    except avro_columns.Unsupported:  # a schema with a construct the reader lacks: read per message
        log.warning("schema %s cannot be read in bulk; decoding its packets one by one", version,
                    exc_info=True)
        for i, packet in zip(idx, packets, strict=True):
            out[i] = _one(decoder, packet)
        return
    columns = avro_columns.read(program, packets, HEADER.size)
    rejected = np.flatnonzero(columns.status)
    for k in rejected.tolist():
        out[idx[k]] = _one(decoder, packets[k])  # says what is wrong with it
    good = np.flatnonzero(columns.status == 0)
    if len(good) == 0:
        return
    try:
        alerts = _alerts(version, decoder, columns, good, [packets[k] for k in good.tolist()])
    except Exception:  # never lose the alerts to a bug here
        log.exception("bulk decode of %d packets failed; decoding them one by one", len(good))
        alerts = [_one(decoder, packets[k]) for k in good.tolist()]
    for k, alert in zip(good.tolist(), alerts, strict=True):
        out[idx[k]] = alert


def _alerts(version: SchemaVersion, decoder: Decoder, columns: avro_columns.Columns, good: np.ndarray,
            packets: list[bytes]) -> list[Alert | DecodeError]:
    """The alerts of the bodies read (rows `good` of `columns`), with their light curves."""
    names = field_names(version)
    slots = _program(version).slots

    def source(field: str) -> tuple[np.ndarray, np.ndarray]:
        """A diaSource field's values and null mask, in the alerts' order."""
        return columns.alert(slots[("diaSource", _named(names, field))], good)

    def as_list(path: tuple[str, ...]) -> list:
        if path not in slots:
            return [None] * len(good)
        values, null = columns.alert(slots[path], good)
        if slots[path][1] == avro_columns.SPAN:
            return [None if o < 0 else p[HEADER.size + o:HEADER.size + o + n].decode()
                    for p, (o, n) in zip(packets, values.tolist(), strict=True)]
        return [None if m else x for x, m in zip(values.tolist(), null.tolist(), strict=True)]

    def point(field: str) -> np.ndarray:
        """Every history point's field (the bodies read are the only ones with items)."""
        return columns.item(slots[(HISTORY, "*", _named(names, field))])

    band = as_list(("diaSource", names.band))
    sid, sid_null = source("diaSourceId")
    curves = curves_from_points(
        np.concatenate([np.where(sid_null, 0, sid), point("diaSourceId")]),
        np.concatenate([source("time")[0], point("time")]),
        np.concatenate([source("flux")[0], point("flux")]),
        np.concatenate([source("flux_err")[0], point("flux_err")]),
        np.concatenate([np.array([BAND_INDEX.get(b, -1) for b in band], np.int8), point("band")]),
        columns.count[good])
    ids = [as_list(("diaSource", f)) for f in ("diaSourceId", "diaObjectId")]
    position = [as_list(("diaSource", f)) for f in ("ra", names.dec)]
    return alerts_from_columns(version, decoder, as_list((names.alert_id,)), *ids, *position,
                               as_list(("diaSource", names.time)), band, curves)


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
