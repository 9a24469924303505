"""Alert files: single Avro packets (framed or unframed), Avro container files, JSON alerts, or
directories of them. Each file yields alerts or a DecodeError naming the file; nothing stops the walk."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from models.errors import AlertClassifierError, DecodeError, UnknownSchema
from streaming.decode import Alert, Decoder, container_schema_name, read_container

CONTAINER_MAGIC = b"Obj\x01"
SUFFIXES = {".avro", ".json", ".avsc_packet", ".bin"}


def alert_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
        else:
            yield p


def read_alerts(path: Path, decoder: Decoder) -> list[Alert | DecodeError]:
    """Every alert in one file, or one DecodeError if the file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [DecodeError(f"{path}: cannot read: {exc.strerror}")]
    if data.startswith(CONTAINER_MAGIC):
        try:
            version, records = read_container(path)
        except Exception as exc:  # noqa: BLE001 - any container corruption is a decode error
            return [DecodeError(f"{path}: not a readable Avro container: {exc}")]
        if version is None:
            name = container_schema_name(path) or "unnamed"
            return [UnknownSchema(f"{path}: an Avro container of {name!r} records, not Rubin alerts "
                                  "(lsst.v<major>_<minor>.alert): this service classifies Rubin alerts only")]
        out: list[Alert | DecodeError] = []
        for record in records:
            try:
                alert = Alert.from_record(record, version)
                out.append(alert.check_values() if decoder.check_values else alert)
            except AlertClassifierError as exc:
                out.append(exc)
        return out
    try:
        return [decoder.decode(data)]
    except DecodeError as exc:
        exc.message = f"{path}: {exc.message}"
        exc.args = (exc.message,)
        return [exc]
