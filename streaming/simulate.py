"""Built-in generator of realistic Rubin alerts (any shipped schema, default the latest).

Works without `../shared`: records are shaped from the `alert.json` sample that
`lsst-alert-packet` ships, light curves come from simple physical models (an asymmetric RR Lyrae
pulsation, a Bazin supernova, a stochastic AGN-like variable) observed with an LSST-like cadence.
Fluxes are difference-image fluxes in nJy, as in real alerts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from streaming.decode import SchemaVersion, _shipped_schema, field_names, latest_version, sample_paths

BANDS = ("u", "g", "r", "i", "z", "y")
BAND_WEIGHTS = np.array([0.07, 0.10, 0.22, 0.22, 0.20, 0.19])  # LSST visit mix per band
KINDS = ("rrlyrae", "supernova", "agn")
NJY_AT_MAG0 = 3631e9  # AB zero point in nJy


def mag_to_njy(mag: np.ndarray | float) -> np.ndarray | float:
    return NJY_AT_MAG0 * 10 ** (-0.4 * np.asarray(mag))


@dataclass(frozen=True)
class SimulatedObject:
    kind: str
    dia_object_id: int
    ra: float
    dec: float
    t: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray  # band names


def _cadence(rng: np.random.Generator, n: int, t_end: float, span: float) -> np.ndarray:
    # Visits come in nights; within a night up to two visits ~30 min apart.
    nights = np.sort(rng.uniform(t_end - span, t_end, size=max(1, (n + 1) // 2)))
    t = np.concatenate([nights, nights + rng.uniform(0.015, 0.04, size=len(nights))])[:n]
    return np.sort(t)


def _model_flux(kind: str, rng: np.random.Generator, t: np.ndarray, band: np.ndarray) -> np.ndarray:
    colour = {b: i for i, b in enumerate(BANDS)}
    bi = np.array([colour[b] for b in band])
    if kind == "rrlyrae":
        period = rng.uniform(0.3, 0.85)
        amp = rng.uniform(0.4, 1.1) * (1.25 - 0.1 * bi)  # larger in blue bands
        mean_mag = rng.uniform(16.5, 20.5) + 0.05 * (bi - 2)
        phase = ((t - rng.uniform(0, period)) / period) % 1.0
        # Fast rise (10% of the cycle), slow decline: the RRab saw-tooth.
        shape = np.where(phase < 0.12, phase / 0.12, 1.0 - (phase - 0.12) / 0.88)
        mag = mean_mag + amp * (0.5 - shape)
        mean_flux = mag_to_njy(mean_mag)
        return mag_to_njy(mag) - mean_flux  # difference flux against the template
    if kind == "supernova":
        peak_mag = rng.uniform(18.5, 22.5)
        t0 = t.max() - rng.uniform(-5, 40)
        rise, fall = rng.uniform(2, 7), rng.uniform(15, 60)
        colour_term = 1.0 - 0.08 * np.abs(bi - 2)
        shape = np.exp(-(t - t0) / fall) / (1 + np.exp(-(t - t0) / rise))
        return mag_to_njy(peak_mag) * colour_term * shape / 0.8
    # AGN-like: a damped random walk in magnitude (timescale ~months, ~0.2 mag rms).
    tau, sigma = rng.uniform(50, 300), rng.uniform(0.1, 0.3)
    mag = np.empty(len(t))
    mag[0] = rng.normal(0, sigma)
    for i in range(1, len(t)):
        decay = np.exp(-(t[i] - t[i - 1]) / tau)
        mag[i] = mag[i - 1] * decay + sigma * np.sqrt(1 - decay**2) * rng.normal()
    mag += rng.uniform(18, 21)
    return mag_to_njy(mag) - mag_to_njy(np.median(mag))


def simulate_object(rng: np.random.Generator, n_points: int, kind: str | None = None,
                    dia_object_id: int | None = None, t_end: float = 61100.0) -> SimulatedObject:
    kind = kind or KINDS[rng.integers(len(KINDS))]
    span = 90.0 if kind == "supernova" else 365.0
    n_epochs = 3 * n_points  # more visits than detections: alerts only carry detections
    t = _cadence(rng, n_epochs, t_end, span)
    band = rng.choice(BANDS, size=n_epochs, p=BAND_WEIGHTS)
    truth = _model_flux(kind, rng, t, band)
    # 5-sigma depth ~24.5 mag: a noise floor plus photon noise from the source.
    err = np.sqrt(mag_to_njy(24.5) / 5 ** 2 * mag_to_njy(24.5) + 0.002 ** 2 * truth ** 2) + 1.0
    flux = truth + rng.normal(0, err)
    # The first n_points detections (|S/N| > 5); if too few, the strongest other epochs fill in.
    snr = np.abs(flux) / err
    detected = np.flatnonzero(snr > 5)[:n_points]
    if len(detected) < n_points:
        rest = np.setdiff1d(np.arange(n_epochs), detected)
        detected = np.concatenate([detected, rest[np.argsort(-snr[rest])][:n_points - len(detected)]])
    keep = np.sort(detected)
    t, band, flux, err = t[keep], band[keep], flux[keep], err[keep]
    oid = int(dia_object_id if dia_object_id is not None else rng.integers(1, 2**62))
    dec = float(np.degrees(np.arcsin(rng.uniform(-1, 0.3))))  # Rubin's sky: mostly south
    return SimulatedObject(kind, oid, float(rng.uniform(0, 360)), dec, t,
                           flux.astype(np.float32), err.astype(np.float32), band)


@cache
def _template(version: SchemaVersion) -> dict:
    with open(sample_paths(version)[1]) as fh:
        return json.load(fh)


def _forced_template(version: SchemaVersion) -> dict | None:
    """A minimal forced-source record: required fields only (the sample has none)."""
    alert_schema = _shipped_schema(version)
    for f in alert_schema["fields"]:
        if f["name"] == "prvDiaForcedSources":
            arr = next(t for t in f["type"] if isinstance(t, dict))
            item = arr["items"]
            if isinstance(item, str):
                return None
            return {fld["name"]: _filler(fld["type"]) for fld in item["fields"]}
    return None


def _filler(avro_type: object) -> object:
    """A neutral value for a field the generator does not model: null where allowed, else NaN / 0."""
    if isinstance(avro_type, list) and "null" in avro_type:
        return None
    return {"float": float("nan"), "double": float("nan"), "string": ""}.get(str(avro_type), 0)


def _record_schema(version: SchemaVersion, field: str) -> dict | None:
    for f in _shipped_schema(version)["fields"]:
        if f["name"] == field:
            types = f["type"] if isinstance(f["type"], list) else [f["type"]]
            rec = next(t for t in types if isinstance(t, dict))
            return rec if rec.get("type") == "record" else None
    return None


@cache
def _full_source(version: SchemaVersion) -> dict:
    """The sample diaSource with every field present; nullable ones the sample leaves out get a
    neutral value (Rubin fills almost all of them, and decode cost grows with the field count)."""
    template = _template(version)["diaSource"]
    schema = _record_schema(version, "diaSource")
    full = {}
    for fld in schema["fields"]:
        name, avro_type = fld["name"], fld["type"]
        if name in template:
            full[name] = template[name]
            continue
        base_type = next((t for t in avro_type if t != "null"), "null") if isinstance(avro_type, list) \
            else avro_type
        full[name] = {"float": 0.5, "double": 0.5, "int": 1, "long": 1, "boolean": False,
                      "string": "x"}.get(str(base_type))
    return full


def alert_record(obj: SimulatedObject, index: int, *, version: SchemaVersion | None = None,
                 forced: bool = False, first_source_id: int = 0, cutout_bytes: int = 0) -> dict:
    """The alert sent when point `index` of the object is detected; earlier points are its history.

    cutout_bytes > 0 attaches three stamp-sized byte blobs (real alerts carry ~3 x 10 kB FITS cutouts).
    """
    version = version or latest_version()
    names = field_names(version)
    template = _template(version)
    base = _full_source(version)
    base_id = first_source_id or _source_base(obj)

    def source(i: int) -> dict:
        src = dict(base)
        src.update({"diaSourceId": base_id + i, "diaObjectId": obj.dia_object_id, "ra": obj.ra,
                    names.dec: obj.dec, names.time: float(obj.t[i]), names.band: str(obj.band[i]),
                    names.flux: float(obj.flux[i]), names.flux_err: float(obj.flux_err[i])})
        if "snr" in src:
            src["snr"] = float(abs(obj.flux[i]) / obj.flux_err[i])
        return src

    record = copy.deepcopy({k: v for k, v in template.items() if k not in ("prvDiaSources", "diaSource")})
    record[names.alert_id] = base_id + index
    record["diaSource"] = source(index)
    record["prvDiaSources"] = [source(i) for i in range(index)]
    if "diaObject" in record and isinstance(record["diaObject"], dict):
        record["diaObject"] = {**record["diaObject"], "diaObjectId": obj.dia_object_id,
                               "ra": obj.ra, names.dec: obj.dec}
    ftemplate = _forced_template(version) if forced else None
    if ftemplate is not None:
        forced_rows = []
        for i in range(index):
            row = {**ftemplate, "ra": obj.ra, names.dec: obj.dec}
            row.update({"diaForcedSourceId": base_id + 500 + i, "diaObjectId": obj.dia_object_id,
                        names.time: float(obj.t[i]), names.band: str(obj.band[i]),
                        names.flux: float(obj.flux[i]), names.flux_err: float(obj.flux_err[i])})
            forced_rows.append({k: v for k, v in row.items() if k in ftemplate})
        record["prvDiaForcedSources"] = forced_rows
    if cutout_bytes:
        blob = bytes(np.random.default_rng(index).integers(0, 256, cutout_bytes, dtype=np.uint8))
        for key in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
            if any(f["name"] == key for f in _shipped_schema(version)["fields"]):
                record[key] = blob
    return record


def simulate_alerts(n: int, *, history: int = 30, seed: int = 0, version: SchemaVersion | None = None,
                    kinds: tuple[str, ...] = KINDS, forced: bool = False,
                    cutout_bytes: int = 0) -> Iterator[dict]:
    """n alert records, each the latest detection of a distinct object with `history` earlier points."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        obj = simulate_object(rng, history + 1, kind=kinds[rng.integers(len(kinds))])
        yield alert_record(obj, history, version=version, forced=forced, cutout_bytes=cutout_bytes)


HISTORY_WINDOW_D = 365.0  # Rubin's prvDiaSources reach back 12 months


def alert_at(obj: SimulatedObject, index: int, *, version: SchemaVersion | None = None,
             cutout_bytes: int = 0) -> dict:
    """The alert of the object's detection `index`, carrying the year of detections before it
    (older ones are only in a store that kept the object's earlier alerts)."""
    first = int(np.searchsorted(obj.t, obj.t[index] - HISTORY_WINDOW_D))
    return alert_record(_window(obj, first, index + 1), index - first, version=version,
                        cutout_bytes=cutout_bytes, first_source_id=_source_base(obj) + first)


class NightSimulator:
    """A stream of alerts from a pool of objects, each alert the next detection of its object with
    the previous year of detections as history, so history lengths vary as in a real survey.

    `make_object(rng)` supplies new objects: the built-in generator, or real light curves
    (see `objects_from_curves`). Alert ids are unique within one simulator."""

    def __init__(self, seed: int = 0, *, make_object=None, pool_size: int = 2000,
                 version: SchemaVersion | None = None, cutout_bytes: int = 0,
                 points: tuple[int, int] = (5, 120)) -> None:
        self.rng = np.random.default_rng(seed)
        self.version = version or latest_version()
        self.cutout_bytes = cutout_bytes
        self.points = points
        self.make_object = make_object or self._builtin
        self.pool = [self._fresh() for _ in range(pool_size)]

    def _builtin(self, rng: np.random.Generator) -> SimulatedObject:
        return simulate_object(rng, int(rng.integers(*self.points)), KINDS[rng.integers(len(KINDS))])

    def _fresh(self) -> list:
        obj = self.make_object(self.rng)
        return [obj, 0]  # object, index of its next detection

    def alerts(self, n: int) -> Iterator[dict]:
        for _ in range(n):
            slot = int(self.rng.integers(len(self.pool)))
            obj, index = self.pool[slot]
            yield alert_at(obj, index, version=self.version, cutout_bytes=self.cutout_bytes)
            self.pool[slot][1] += 1
            if self.pool[slot][1] >= len(obj.t):
                self.pool[slot] = self._fresh()


def _source_base(obj: SimulatedObject) -> int:
    return (obj.dia_object_id % (2**40)) * 1000


def _window(obj: SimulatedObject, start: int, stop: int) -> SimulatedObject:
    s = slice(start, stop)
    return SimulatedObject(obj.kind, obj.dia_object_id, obj.ra, obj.dec, obj.t[s], obj.flux[s],
                           obj.flux_err[s], obj.band[s])


def objects_from_curves(curves: list, rng_ids: np.random.Generator | None = None):
    """A `make_object` drawing real light curves (objects with t, flux, flux_err, band indices)."""

    def make(rng: np.random.Generator) -> SimulatedObject:
        c = curves[int(rng.integers(len(curves)))]
        shift = 61000.0 - c.t[-1]  # move the curve to Rubin's era; cadence and shape unchanged
        dec = float(np.degrees(np.arcsin(rng.uniform(-1, 0.3))))
        return SimulatedObject(getattr(c, "source", "real"), int(rng.integers(1, 2**62)),
                               float(rng.uniform(0, 360)), dec, c.t + shift,
                               np.asarray(c.flux, np.float32), np.asarray(c.flux_err, np.float32),
                               np.array([BANDS[b] for b in c.band]))
    return make
