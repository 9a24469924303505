"""Tables in the formats astronomers load: CSV, Parquet (pyarrow) and VOTable (astropy), with
units and descriptions where the format keeps them (flux in nJy, MJD TAI in days, degrees).
Nulls: empty in CSV, null in Parquet, masked numbers and empty strings in VOTable."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response

MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet",
               "votable": "application/x-votable+xml"}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "int64", "float64", "str"
    unit: str | None
    description: str


def table_response(fmt: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]], *, name: str,
                   headers: dict[str, str] | None = None) -> Response:
    """`rows` (tuples in `columns` order) as CSV, Parquet or VOTable."""
    body = {"csv": _csv, "parquet": _parquet, "votable": _votable}[fmt](columns, rows, name)
    disposition = {"Content-Disposition": f'inline; filename="{name}.{"vot" if fmt == "votable" else fmt}"'}
    return Response(body, media_type=MEDIA_TYPES[fmt], headers={**disposition, **(headers or {})})


def _csv(columns: Sequence[Column], rows: Sequence[Sequence[Any]], _name: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.name for c in columns])
    writer.writerows(rows)
    return buf.getvalue().encode()


def _parquet(columns: Sequence[Column], rows: Sequence[Sequence[Any]], name: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"int64": pa.int64(), "float64": pa.float64(), "str": pa.string()}
    fields = [pa.field(c.name, types[c.kind], metadata={"unit": c.unit or "", "description": c.description})
              for c in columns]
    arrays = [pa.array([r[i] for r in rows], type=types[c.kind]) for i, c in enumerate(columns)]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={"name": name}))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _votable(columns: Sequence[Column], rows: Sequence[Sequence[Any]], name: str) -> bytes:
    import numpy as np
    from astropy.io.votable import from_table
    from astropy.table import MaskedColumn, Table

    dtypes = {"int64": np.int64, "float64": np.float64, "str": object}
    table = Table()
    for i, c in enumerate(columns):
        values = [r[i] for r in rows]
        missing = [v is None for v in values]
        filled = [("" if c.kind == "str" else 0) if m else v for v, m in zip(values, missing, strict=True)]
        data = np.array(filled, dtype=dtypes[c.kind]) if rows else np.array([], dtype=dtypes[c.kind])
        if c.kind == "str":
            data = data.astype(str) if rows else np.array([], dtype=str)
        table[c.name] = MaskedColumn(data, mask=missing or None, unit=c.unit, description=c.description)
    table.meta["name"] = name
    vot = from_table(table)
    vot.resources[0].tables[0].name = name
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()
