"""JSON alerts decoded in bulk (`POST /v1/classify` with application/json): the HTTP path's
counterpart of `bulk_decode`.

msgspec parses the request body straight into types built from the alert's Avro schema, checking
every field as it goes: records and their required fields, arrays, strings, booleans, Avro int and
long ranges, and float/double ranges (a float32 field refuses what float32 cannot hold). The light
curves are then cut from flat arrays by `bulk_decode.curves_from_points`, Avro `float` fields
rounded to float32 as a packet would carry them. The alerts equal those of writing each JSON alert
as Avro and decoding it (tests/test_json_decode.py), at ~1/10 of the cost (cavro's writer took
~2 ms an alert of 30+30 points).

This path is stricter than the Avro writer, never laxer: it refuses bytes and logical-type values
(JSON has no bytes; nulls pass) and anything else it doubts, and returns None. The caller then
takes the per-alert path, which names the fault precisely and tries older schema versions.
"""

from __future__ import annotations

import keyword
from functools import cache
from operator import attrgetter
from typing import Annotated, Any, Union

import msgspec
import numpy as np

from models.errors import DecodeError
from streaming.bulk_decode import alerts_from_columns, curves_from_points
from streaming.decode import Alert, Decoder, SchemaVersion, _shipped_definition, field_names, shipped_versions
from streaming.lightcurve import BAND_INDEX

FLOAT32_MAX = float(np.finfo(np.float32).max)
DOUBLE_MAX = float(np.finfo(np.float64).max)
_NOTHING = Annotated[str, msgspec.Meta(pattern="(?!)")]  # matches no string: the caller's path decides
_PRIMITIVES: dict[str, Any] = {
    "null": None,
    "boolean": bool,
    "int": Annotated[int, msgspec.Meta(ge=-2**31, le=2**31 - 1)],
    "long": Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)],
    "float": Annotated[float, msgspec.Meta(ge=-FLOAT32_MAX, le=FLOAT32_MAX)],
    "double": Annotated[float, msgspec.Meta(ge=-DOUBLE_MAX, le=DOUBLE_MAX)],
    "string": str,
    "bytes": _NOTHING,
}


class _Unsupported(Exception):
    """A schema this path does not translate (the per-alert path handles its alerts)."""


def _struct_types(definition: dict) -> Any:
    """The msgspec type of an Avro record schema: a Struct per record (fields with an Avro default or
    a null branch may be absent, as the writer allows), lists, dicts, unions."""
    named: dict[str, Any] = {}

    def convert(t: Any, namespace: str | None) -> Any:
        if isinstance(t, str):
            if t in _PRIMITIVES:
                return _PRIMITIVES[t]
            found = named.get(t if "." in t else f"{namespace}.{t}") or named.get(t)
            if found is None:
                raise _Unsupported(f"unknown type {t}")
            return found
        if isinstance(t, list):
            return Union[tuple(convert(x, namespace) for x in t)]  # noqa: UP007 - built at run time
        kind = t["type"]
        if "logicalType" in t:
            # a timestamp is its long, as the Avro writer takes it from JSON; others, none here: refuse
            timestamp = kind == "long" and t["logicalType"] in ("timestamp-millis", "timestamp-micros")
            return _PRIMITIVES["long"] if timestamp else _NOTHING
        if kind == "record":
            ns = t.get("namespace", namespace)
            fields = []
            for f in t["fields"]:
                name = f["name"]
                if not name.isidentifier() or keyword.iskeyword(name):
                    raise _Unsupported(f"field name {name!r}")
                ftype = convert(f["type"], ns)
                if "default" in f:
                    fields.append((name, ftype, msgspec.field(default_factory=lambda d=f["default"]: d)))
                elif isinstance(f["type"], list) and "null" in f["type"]:
                    fields.append((name, ftype, None))
                else:
                    fields.append((name, ftype))
            struct = msgspec.defstruct(t["name"].rsplit(".", 1)[-1], fields, kw_only=True, gc=False)
            named[t["name"] if "." in t["name"] else f"{ns}.{t['name']}"] = struct
            return struct
        if kind == "array":
            return list[convert(t["items"], namespace)]
        if kind == "map":
            return dict[str, convert(t["values"], namespace)]
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        raise _Unsupported(f"type {kind}")  # enum, fixed: not in Rubin's alert schemas

    return convert(definition, definition.get("namespace"))


@cache
def _reader(version: SchemaVersion) -> tuple[msgspec.json.Decoder, frozenset[str]] | None:
    """The version's JSON decoder (one alert or a list) and its diaSource's float32 fields."""
    if version not in shipped_versions():
        return None  # a registry schema: the per-alert path reads it
    definition = _shipped_definition(version)
    try:
        alert_type = _struct_types(definition)
    except _Unsupported:
        return None
    source = next(f["type"] for f in definition["fields"] if f["name"] == "diaSource")
    float32 = frozenset(f["name"] for f in source["fields"]
                        if f["type"] == "float" or (isinstance(f["type"], list) and "float" in f["type"]))
    return msgspec.json.Decoder(list[alert_type] | alert_type), float32


def decode_json(body: bytes, version: SchemaVersion) -> tuple[bool, list[Any]] | None:
    """(is a list, its alerts as typed structs), or None when this path does not accept the body
    (invalid JSON, a value that does not fit, a schema it does not translate)."""
    reader = _reader(version)
    if reader is None:
        return None
    try:
        parsed = reader[0].decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return (True, parsed) if isinstance(parsed, list) else (False, [parsed])


def alerts(items: list[Any], version: SchemaVersion, decoder: Decoder) -> list[Alert | DecodeError]:
    """The decoded alerts (light curves built), InvalidValue for one whose values cannot be right:
    what writing each as Avro and bulk-decoding the packets gives."""
    names = field_names(version)
    float32 = _reader(version)[1]

    def column(values: list, field: str) -> np.ndarray:
        a = np.array(values, dtype=np.float64)  # None -> NaN, as polars reads a null
        return a.astype(np.float32).astype(np.float64) if field in float32 else a

    def scalars(values: list, field: str) -> list:
        return column(values, field).tolist() if field in float32 else values

    sources = [item.diaSource for item in items]
    history = [item.prvDiaSources or [] for item in items]
    counts = np.array([len(h) for h in history], dtype=np.int64)
    points = sources + [p for h in history for p in h]
    fields = ("diaSourceId", names.time, names.flux, names.flux_err, names.band)
    sid, t, flux, err, band = zip(*map(attrgetter(*fields), points), strict=True)
    curves = curves_from_points(np.array(sid, dtype=np.int64), column(t, names.time),
                                column(flux, names.flux), column(err, names.flux_err),
                                np.array([BAND_INDEX.get(b, -1) for b in band], dtype=np.int8), counts)
    n = len(items)
    return alerts_from_columns(
        version, decoder, [getattr(item, names.alert_id) for item in items], list(sid[:n]),
        [getattr(s, "diaObjectId", None) for s in sources], scalars([s.ra for s in sources], "ra"),
        scalars([getattr(s, names.dec) for s in sources], names.dec), scalars(list(t[:n]), names.time),
        list(band[:n]), curves)
