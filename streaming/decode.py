"""Rubin alert codec: Avro (Confluent-framed or unframed) and JSON, every schema `lsst-alert-packet` ships.

Schemas are loaded from the `lsst-alert-packet` package, never copied. Rubin's Confluent schema id
is `major*100 + minor` (11.1 -> 1101) and fixed forever, so parsed schemas are cached by id.

Reading uses `cavro` (same dicts as fastavro, 2.5x faster, measured in bench/decode_bench.py);
writing and JSON validation use `fastavro`. The stream's hot path can decode *lean*: a reader
schema with only the fields the light curve needs, so the rest is skipped without building objects.

The batch API (`Decoder.decode_batch`) never raises for bad input: each message yields either an
`Alert` or a `DecodeError` value, so one bad packet cannot spoil a batch.
"""

from __future__ import annotations

import copy
import io
import json
import math
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import cavro
import fastavro
import fastavro.validation
import lsst.alert.packet as alert_packet

from models.errors import (
    CorruptAvro,
    DecodeError,
    EmptyPacket,
    InvalidJson,
    InvalidValue,
    MissingField,
    SchemaMismatch,
    SchemaRegistryUnavailable,
    TooShort,
    UnknownSchema,
    WrongMagicByte,
)

MAGIC = 0
REGISTRY_RETRY_S = 60.0
HEADER = struct.Struct(">bI")  # magic byte, big-endian schema id
# Plausible observation times, MJD TAI: 1950-01-01 to 2100-01-01 (archival surveys replayed as
# alerts start in the 1990s; anything outside is a broken value, not an old observation).
MJD_MIN, MJD_MAX = 33282.0, 88069.0


class SchemaVersion(NamedTuple):
    major: int
    minor: int

    @property
    def schema_id(self) -> int:
        return self.major * 100 + self.minor

    @classmethod
    def parse(cls, text: str) -> SchemaVersion:
        """'11.1' -> SchemaVersion(11, 1); raises ValueError with the accepted form."""
        try:
            major, minor = (int(p) for p in str(text).split("."))
        except ValueError:
            raise ValueError(f"schema version must look like '11.1', got {text!r}") from None
        return cls(major, minor)

    @classmethod
    def from_id(cls, schema_id: int) -> SchemaVersion:
        return cls(*divmod(schema_id, 100))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True)
class FieldNames:
    """Names that changed between schema versions (3.x/4.x used the DPDD's older spellings)."""

    alert_id: str
    time: str
    band: str
    flux: str
    flux_err: str
    dec: str


OLD_NAMES = FieldNames("alertId", "midPointTai", "filterName", "psFlux", "psFluxErr", "decl")
V5_NAMES = FieldNames("alertId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr", "dec")
V8_NAMES = FieldNames("diaSourceId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr", "dec")


def field_names(version: SchemaVersion) -> FieldNames:
    if version.major < 5:
        return OLD_NAMES
    return V5_NAMES if version.major < 8 else V8_NAMES


def _schema_root() -> Path:
    return Path(alert_packet.get_schema_root())


@cache
def shipped_versions() -> tuple[SchemaVersion, ...]:
    """Every schema version inside the installed `lsst-alert-packet`, oldest first."""
    found = []
    for alert_avsc in _schema_root().glob("*/*/lsst.v*_*.alert.avsc"):
        found.append(SchemaVersion(int(alert_avsc.parent.parent.name), int(alert_avsc.parent.name)))
    return tuple(sorted(found))


def latest_version() -> SchemaVersion:
    return SchemaVersion(*alert_packet.get_latest_schema_version())


@cache
def _shipped_definition(version: SchemaVersion) -> dict:
    path = Path(alert_packet.get_schema_path(version.major, version.minor))
    return alert_packet.Schema.from_file(
        str(path / f"lsst.v{version.major}_{version.minor}.alert.avsc")).definition


@cache
def _shipped_schema(version: SchemaVersion) -> dict:
    """fastavro's parsed form (writing, validation)."""
    return fastavro.parse_schema(_shipped_definition(version))


def _lean_definition(definition: dict, names: FieldNames) -> dict:
    """The alert schema cut down to what a light curve needs; a cavro reader schema."""
    source_fields = {"diaSourceId", "diaForcedSourceId", "diaObjectId", "ra", names.dec, names.time,
                     names.band, names.flux, names.flux_err}
    lean = copy.deepcopy(definition)
    lean["fields"] = [f for f in lean["fields"]
                      if f["name"] in (names.alert_id, "diaSource", "prvDiaSources", "prvDiaForcedSources")]
    for f in lean["fields"]:
        types = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for t in types:
            record = t.get("items", t) if isinstance(t, dict) else None
            if isinstance(record, dict) and record.get("type") == "record":
                record["fields"] = [g for g in record["fields"] if g["name"] in source_fields]
    return lean


@dataclass(frozen=True)
class _Readers:
    full: Any
    lean: Any


_END = cavro.Schema({"type": "fixed", "name": "end", "size": 1})  # reads 1 byte iff any are left


def _make_readers(definition: dict, version: SchemaVersion) -> _Readers:
    full = cavro.Schema(definition, record_decodes_to_dict=True, parse_json=False)
    lean_schema = cavro.Schema(_lean_definition(definition, field_names(version)),
                               record_decodes_to_dict=True, parse_json=False)
    return _Readers(full, lean_schema.reader_for_writer(full))


@cache
def _shipped_readers(version: SchemaVersion) -> _Readers:
    return _make_readers(_shipped_definition(version), version)


def sample_paths(version: SchemaVersion) -> tuple[Path, Path]:
    """(fakeAlert.avro, alert.json) shipped with `lsst-alert-packet` for this version."""
    base = Path(alert_packet.get_schema_path(version.major, version.minor)) / "sample_data"
    return base / "fakeAlert.avro", base / "alert.json"


@dataclass(slots=True)
class Alert:
    """One decoded alert: the full record plus the identifiers every stage needs, typed."""

    version: SchemaVersion
    record: dict[str, Any]
    alert_id: int
    dia_source_id: int
    dia_object_id: int | None
    ra: float
    dec: float
    mjd: float
    band: str | None
    #: the light curve (detections), when the bulk decoder built it from columns (then `record`
    #: holds only the alert id); None: `lightcurve.light_curve` builds it from `record`
    curve: Any = None

    @property
    def previous_count(self) -> int:
        """How many earlier detections the packet carried (0: the object's first alert)."""
        if self.curve is not None:
            return self.curve.n_input - 1  # the diaSource and its history, counted as read
        return len(self.record.get("prvDiaSources") or [])

    @classmethod
    def from_record(cls, record: dict[str, Any], version: SchemaVersion) -> Alert:
        names = field_names(version)
        try:
            src = record["diaSource"]
            alert = cls(version=version, record=record, alert_id=int(record[names.alert_id]),
                        dia_source_id=int(src["diaSourceId"]), dia_object_id=src.get("diaObjectId"),
                        ra=float(src["ra"]), dec=float(src[names.dec]), mjd=float(src[names.time]),
                        band=src.get(names.band))
        except KeyError as exc:
            raise MissingField(f"required field {exc.args[0]!r} is missing",
                               schema_id=version.schema_id) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaMismatch(f"diaSource has a field of the wrong type: {exc}",
                                 schema_id=version.schema_id) from None
        return alert

    def check_values(self) -> Alert:
        """The alert itself, or InvalidValue naming the first field whose value cannot be right."""
        problem = self.invalid_value(field_names(self.version))
        if problem:
            raise InvalidValue(problem, schema_id=self.version.schema_id)
        return self

    def invalid_value(self, names: FieldNames) -> str | None:
        """What is wrong with the values every stage relies on (position, time, ids), naming the
        field and value; None when they are sound. Schema types cannot say this: NaN is a double."""
        # the messages are formatted only for a value that fails (this runs for every alert)
        if not (math.isfinite(self.ra) and 0.0 <= self.ra < 360.0):
            return f"diaSource.ra = {self.ra!r}: must be finite, in [0, 360) degrees"
        if not (math.isfinite(self.dec) and -90.0 <= self.dec <= 90.0):
            return f"diaSource.{names.dec} = {self.dec!r}: must be finite, in [-90, 90] degrees"
        if not (math.isfinite(self.mjd) and MJD_MIN <= self.mjd <= MJD_MAX):
            return (f"diaSource.{names.time} = {self.mjd!r}: must be a finite MJD in [{MJD_MIN:.0f}, "
                    f"{MJD_MAX:.0f}] (1950-2100)")
        if not self.dia_source_id > 0:
            return f"diaSource.diaSourceId = {self.dia_source_id}: must be positive"
        if not self.alert_id > 0:
            return f"{names.alert_id} = {self.alert_id}: must be positive"
        object_id = self.dia_object_id
        if not (object_id is None or (isinstance(object_id, int) and object_id > 0)):
            return f"diaSource.diaObjectId = {self.dia_object_id}: must be positive or null"
        return None


@dataclass
class Decoder:
    """Decodes and encodes Rubin alerts; one per process, its schema cache shared by all calls.

    default_version: the schema of unframed Avro packets (ELAsTiCC-era streams had no framing);
    None means an unframed packet is an error. registry_url: an optional Confluent schema registry
    that resolves ids the package does not ship. check_values: refuse alerts whose position, time or
    ids cannot be right (`InvalidValue`); off only to test the codec on lsst-alert-packet's fake
    samples (schemas before 8.0 carry Unix seconds as MJD there).
    """

    default_version: SchemaVersion | None = None
    registry_url: str | None = None
    check_values: bool = True
    _registry_cache: dict[int, dict] = field(default_factory=dict, repr=False)
    _registry_readers: dict[int, _Readers] = field(default_factory=dict, repr=False)
    # ids the registry could not resolve, with when: asked again only after REGISTRY_RETRY_S, so a
    # stream of such packets does not cost one HTTP request each
    _registry_misses: dict[int, tuple[float, UnknownSchema]] = field(default_factory=dict, repr=False)

    # --- schemas ------------------------------------------------------------------------------

    def _definition(self, schema_id: int) -> dict:
        version = SchemaVersion.from_id(schema_id)
        if version in shipped_versions():
            return _shipped_definition(version)
        if schema_id not in self._registry_cache:
            if not self.registry_url:
                known = ", ".join(str(v.schema_id) for v in shipped_versions())
                raise UnknownSchema(f"schema id {schema_id} is not shipped by lsst-alert-packet "
                                    f"(known: {known}) and no schema registry is configured",
                                    schema_id=schema_id)
            miss = self._registry_misses.get(schema_id)
            if miss is not None and time.monotonic() - miss[0] < REGISTRY_RETRY_S:
                raise miss[1]
            try:
                self._registry_cache[schema_id] = self._fetch_from_registry(schema_id)
            except UnknownSchema as exc:
                self._registry_misses[schema_id] = (time.monotonic(), exc)
                raise
        return self._registry_cache[schema_id]

    def schema(self, schema_id: int) -> dict:
        """fastavro's parsed schema for an id (shipped, or from the registry)."""
        version = SchemaVersion.from_id(schema_id)
        if version in shipped_versions():
            return _shipped_schema(version)
        return fastavro.parse_schema(self._definition(schema_id))

    def _readers(self, schema_id: int) -> _Readers:
        version = SchemaVersion.from_id(schema_id)
        if version in shipped_versions():
            return _shipped_readers(version)
        if schema_id not in self._registry_readers:
            self._registry_readers[schema_id] = _make_readers(self._definition(schema_id), version)
        return self._registry_readers[schema_id]

    def _fetch_from_registry(self, schema_id: int) -> dict:
        """A 404 (or an answer that is not a schema) is permanent: `UnknownSchema`, a dead letter.
        A network error, timeout or 5xx is transient: `SchemaRegistryUnavailable`, the batch is retried."""
        url = f"{self.registry_url.rstrip('/')}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code in (408, 429):
                raise SchemaRegistryUnavailable(f"schema registry {url} answered {exc.code}: "
                                                "retrying") from None
            raise UnknownSchema(f"schema id {schema_id} is unknown to the registry ({url} answered "
                                f"{exc.code})", schema_id=schema_id) from None
        except (urllib.error.URLError, OSError) as exc:
            raise SchemaRegistryUnavailable(f"schema registry {url} cannot be reached ({exc}): "
                                            "retrying; check ALERT_CLASSIFIER_SCHEMA_REGISTRY_URL") from None
        except ValueError as exc:
            raise UnknownSchema(f"schema id {schema_id}: {url} did not answer JSON: {exc}",
                                schema_id=schema_id) from None
        try:
            return json.loads(body["schema"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UnknownSchema(f"schema id {schema_id}: {url} answered no usable schema: {exc}",
                                schema_id=schema_id) from None

    # --- decoding -----------------------------------------------------------------------------

    def decode(self, data: bytes, *, lean: bool = False) -> Alert:
        """Decode one Avro packet (framed, or unframed with the default version) or JSON alert.

        lean=True keeps only the fields a light curve needs (ids, position, photometry).
        """
        if not data:
            raise EmptyPacket("the packet is empty (0 bytes)")
        first = data[0]
        if first == MAGIC:
            if len(data) < HEADER.size:
                raise TooShort(f"the packet has {len(data)} bytes, shorter than the 5-byte "
                               "Confluent header (magic byte + schema id)")
            schema_id = HEADER.unpack_from(data)[1]
            return self._decode_avro(memoryview(data)[HEADER.size:], schema_id, lean)
        if first in b"{[ \t\r\n":
            return self.decode_json(data)
        if self.default_version is not None:
            return self._decode_avro(memoryview(data), self.default_version.schema_id, lean)
        raise WrongMagicByte(f"first byte is 0x{first:02x}, not the Confluent magic byte 0x00, "
                             "and no default schema version is configured for unframed packets")

    def _decode_avro(self, body: memoryview, schema_id: int, lean: bool = False) -> Alert:
        readers = self._readers(schema_id)
        if len(body) == 0:
            raise TooShort("the packet has a header but no Avro body", schema_id=schema_id)
        reader = cavro.MemoryReader(body)
        try:
            record = (readers.lean if lean else readers.full).binary_read(reader)
        except EOFError:
            raise CorruptAvro(f"the Avro body ({len(body)} bytes) ends before the record does: "
                              "truncated packet, or the wrong schema id", schema_id=schema_id) from None
        except Exception as exc:  # noqa: BLE001 - the decoder raises many types on garbage bytes
            raise CorruptAvro(f"the Avro body does not decode with schema {schema_id}: "
                              f"{type(exc).__name__}: {exc}", schema_id=schema_id) from None
        try:
            _END.binary_read(reader)
        except EOFError:
            pass  # exactly at the end: the packet is one whole record
        else:
            raise CorruptAvro("bytes left after the record: corrupt packet or the wrong schema id",
                              schema_id=schema_id)
        alert = Alert.from_record(record, SchemaVersion.from_id(schema_id))
        return alert.check_values() if self.check_values else alert

    def decode_json(self, data: bytes | str | dict, version: SchemaVersion | None = None, *,
                    lean: bool = False) -> Alert:
        """A JSON alert in the shape of the package's `alert.json` samples (text, or already parsed).

        Without a version (argument or default), the newest shipped schema it fits is used.
        lean=True keeps only the fields a light curve needs, as for Avro.
        """
        try:
            record = data if isinstance(data, dict) else json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidJson(f"not valid JSON: {exc}") from None
        return self.decode(self.json_to_avro(record, version), lean=lean)

    def json_to_avro(self, record: Any, version: SchemaVersion | None = None) -> bytes:
        """A parsed JSON alert as the framed Avro packet of its schema: `version`, else the default
        version, else the newest shipped schema it fits. Raises the DecodeError of a record that
        fits none (the newest schema's complaint: the most useful one)."""
        if version or self.default_version:
            return self._write_checked(record, version or self.default_version)
        first_error: DecodeError | None = None
        for candidate in reversed(shipped_versions()):
            try:
                return self._write_checked(record, candidate)
            except DecodeError as exc:
                first_error = first_error or exc
        raise first_error

    def alert_from_dict(self, record: Any, version: SchemaVersion | None = None, *,
                        lean: bool = False) -> Alert:
        """Validate a dict against the schema and normalise it as Avro decoding would."""
        return self.decode(self._write_checked(record, version or self.default_version or latest_version()),
                           lean=lean)

    def _write_checked(self, record: Any, version: SchemaVersion) -> bytes:
        if not isinstance(record, dict):
            raise SchemaMismatch(f"an alert must be a JSON object, got {type(record).__name__}")
        schema = self.schema(version.schema_id)
        missing = [f["name"] for f in schema["fields"]
                   if f["name"] not in record and "default" not in f and not _nullable(f["type"])]
        if missing:
            raise MissingField(f"required field(s) missing for schema {version}: {', '.join(missing)}",
                               schema_id=version.schema_id)
        # Round-trip through Avro so JSON alerts look exactly like decoded packets (defaults filled
        # in, same types). Writing checks the types too (cavro: the same bytes as fastavro, 2.5x
        # faster); fastavro's full validator runs only to explain a failure precisely.
        try:
            body = self._readers(version.schema_id).full.binary_encode(record)
        except Exception as write_error:  # noqa: BLE001 - the writer raises several types
            raise SchemaMismatch(f"does not fit schema {version}: {_explain(record, schema, write_error)}",
                                 schema_id=version.schema_id) from None
        return HEADER.pack(MAGIC, version.schema_id) + body

    def decode_batch(self, messages: Iterable[bytes], *, lean: bool = False) -> list[Alert | DecodeError]:
        """Many raw messages in; for each an Alert or a DecodeError value. Never raises for bad input;
        raises `SchemaRegistryUnavailable` (transient) when the registry cannot answer: the caller
        retries the batch rather than dead-letter alerts that are fine."""
        out: list[Alert | DecodeError] = []
        for data in messages:
            try:
                out.append(self.decode(data, lean=lean))
            except DecodeError as exc:
                out.append(exc)
        return out

    # --- encoding (simulator, replay, tests) --------------------------------------------------

    def encode(self, record: dict, version: SchemaVersion, *, framed: bool = True) -> bytes:
        buf = io.BytesIO()
        if framed:
            buf.write(HEADER.pack(MAGIC, version.schema_id))
        fastavro.schemaless_writer(buf, self.schema(version.schema_id), record)
        return buf.getvalue()

    def encode_batch(self, records: Sequence[dict], version: SchemaVersion, *,
                     framed: bool = True) -> list[bytes]:
        return [self.encode(r, version, framed=framed) for r in records]


def read_container(path: Path | str) -> tuple[SchemaVersion | None, list[dict]]:
    """Records of an Avro container file (e.g. the package's fakeAlert.avro) and its schema version
    (None: not a Rubin alert schema)."""
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        name = _schema_name(reader.writer_schema)
        records = list(reader)
    return _version_from_schema_name(name), records


def container_schema_name(path: Path | str) -> str:
    """The full name of an Avro container file's schema (e.g. `ztf.alert`); "" if it has none."""
    with open(path, "rb") as fh:
        return _schema_name(fastavro.reader(fh).writer_schema)


def _schema_name(schema: Any) -> str:
    return str(schema.get("name", "")) if isinstance(schema, dict) else ""


def _version_from_schema_name(name: str) -> SchemaVersion | None:
    # 'lsst.v11_1.alert' -> 11.1
    for part in name.split("."):
        if part.startswith("v") and "_" in part:
            major, minor = part[1:].split("_", 1)
            if major.isdigit() and minor.isdigit():
                return SchemaVersion(int(major), int(minor))
    return None


def _nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _explain(record: dict, schema: dict, write_error: Exception) -> str:
    """The validator's precise account of a value that does not fit, else the writer's."""
    try:
        fastavro.validation.validate(record, schema, raise_errors=True)
    except fastavro.validation.ValidationError as detail:
        return _first_lines(detail)
    return _first_lines(write_error)


def _first_lines(exc: Exception, n: int = 3) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(lines[:n])
