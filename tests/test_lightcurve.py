"""Light-curve assembly, property-tested over generated alerts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.decode import Alert, Decoder, latest_version, shipped_versions
from streaming.lightcurve import BANDS, LightCurve, light_curve, light_curves, unstored, with_history
from streaming.simulate import simulate_alerts
from tests.helpers import same

LATEST = latest_version()
TEMPLATE = next(simulate_alerts(1, history=0))

INF = math.inf
point = st.fixed_dictionaries({
    "id": st.integers(1, 40),  # small id space: duplicates happen
    # bad values in history points: infinite, NaN, Unix seconds for MJD
    "t": st.one_of(st.floats(60000, 61000, allow_nan=False), st.sampled_from([INF, -INF, math.nan, 1.7e9])),
    "flux": st.one_of(st.none(), st.sampled_from([math.nan, INF, -INF, 1e13]),
                      st.floats(-1e6, 1e6, allow_nan=False, width=32)),
    "err": st.one_of(st.none(), st.sampled_from([0.0, -1.0, math.nan, INF]),
                     st.floats(0.5, 1e4, allow_nan=False, width=32)),
    "band": st.one_of(st.sampled_from(BANDS), st.none()),
})


def _bad(p: dict) -> bool:
    """A point whose values cannot be right: the light curve drops it and counts it."""
    return (p["flux"] is None or not math.isfinite(p["flux"]) or abs(p["flux"]) > 1e12
            or p["err"] is None or not math.isfinite(p["err"]) or p["err"] <= 0
            or not (math.isfinite(p["t"]) and 33282 <= p["t"] <= 88069) or p["band"] is None)


def make_record(points: list[dict]) -> dict:
    base = TEMPLATE["diaSource"]

    def src(p: dict) -> dict:
        return {**base, "diaSourceId": p["id"], "midpointMjdTai": p["t"], "psfFlux": p["flux"],
                "psfFluxErr": p["err"], "band": p["band"]}

    return {**TEMPLATE, "diaSource": src(points[0]), "prvDiaSources": [src(p) for p in points[1:]]}


@settings(max_examples=150, deadline=None)
@given(st.lists(point, min_size=1, max_size=60))
def test_round_trip_and_light_curve_invariants(points):
    if not (math.isfinite(points[0]["t"]) and 60000 <= points[0]["t"] <= 61000):
        # the alert's own time is checked at decode (a bad one is a dead letter, tested there)
        points = [{**points[0], "t": 60500.0}, *points[1:]]
    decoder = Decoder()
    record = make_record(points)
    alert = decoder.decode(decoder.encode(record, LATEST))
    # round trip: what we decode encodes back to the same record
    assert same(decoder.decode(decoder.encode(alert.record, LATEST)).record, alert.record)

    lc = light_curve(alert)
    assert np.all(np.diff(lc.t) >= 0), "sorted by time"
    # no duplicates: each source id contributes at most one point
    distinct_ids = len({p["id"] for p in points})
    assert len(lc) <= distinct_ids
    assert lc.n_duplicates == len(points) - distinct_ids
    # counts add up: every input point is kept, dropped or a duplicate
    assert lc.n_input == len(points)
    assert len(lc) + lc.n_dropped + lc.n_duplicates == lc.n_input
    assert np.all(np.isfinite(lc.flux)) and np.all(np.isfinite(lc.flux_err))
    # dropped are exactly the first-seen points with a null/NaN flux, null error or no band
    first_seen: dict[int, dict] = {}
    for p in points:
        first_seen.setdefault(p["id"], p)
    assert lc.n_dropped == sum(1 for p in first_seen.values() if _bad(p))
    # each point keeps the id of the source it came from (the first seen with that id)
    assert sorted(lc.source_id.tolist()) == sorted({p["id"] for p in first_seen.values() if not _bad(p)})
    for sid, t in zip(lc.source_id, lc.t, strict=True):
        assert first_seen[int(sid)]["t"] == t


def test_light_curve_values_follow_the_packet():
    decoder = Decoder()
    [record] = simulate_alerts(1, history=20, seed=3)
    alert: Alert = decoder.decode(decoder.encode(record, LATEST))
    lc = light_curve(alert)
    assert len(lc) == 21
    sources = sorted([record["diaSource"], *record["prvDiaSources"]], key=lambda s: s["midpointMjdTai"])
    np.testing.assert_allclose(lc.t, [s["midpointMjdTai"] for s in sources])
    np.testing.assert_allclose(lc.flux, [s["psfFlux"] for s in sources], rtol=1e-6)
    assert [BANDS[b] for b in lc.band] == [s["band"] for s in sources]
    t, _, _ = lc.in_band("r")
    assert len(t) == sum(1 for s in sources if s["band"] == "r")


def test_forced_photometry_is_merged_without_double_counting():
    decoder = Decoder()
    [record] = simulate_alerts(1, history=10, forced=True, seed=5)
    alert = decoder.decode(decoder.encode(record, LATEST))
    plain, merged = light_curves([alert, alert], forced=False)[0], light_curve(alert, forced=True)
    # the simulator's forced points sit on the detections' epochs: all duplicates
    assert len(merged) == len(plain) == 11
    assert merged.n_duplicates == 10
    # a forced point on a new epoch is added
    extra = dict(record["prvDiaForcedSources"][0], diaForcedSourceId=999, midpointMjdTai=59000.0)
    record["prvDiaForcedSources"].append(extra)
    alert = decoder.decode(decoder.encode(record, LATEST))
    merged = light_curve(alert, forced=True)
    assert len(merged) == 12 and merged.t[0] == 59000.0


def test_old_schema_names_are_mapped():
    from streaming.decode import SchemaVersion

    decoder = Decoder()
    v3 = SchemaVersion(3, 0)
    [record] = simulate_alerts(1, history=4, version=v3)
    lc = light_curve(decoder.decode(decoder.encode(record, v3)))
    assert len(lc) == 5 and set(lc.band.tolist()) <= set(range(6))


@pytest.mark.parametrize("version", shipped_versions(), ids=str)
def test_lean_decode_gives_the_same_light_curve(version):
    decoder = Decoder()
    for record in simulate_alerts(4, history=15, version=version, forced=True, seed=7, cutout_bytes=64):
        packet = decoder.encode(record, version)
        full, lean = decoder.decode(packet), decoder.decode(packet, lean=True)
        assert lean.dia_source_id == full.dia_source_id and lean.mjd == full.mjd
        assert "cutoutDifference" not in lean.record and "diaObject" not in lean.record
        for forced in (False, True):
            a, b = light_curve(full, forced=forced), light_curve(lean, forced=forced)
            for name in ("t", "flux", "flux_err", "band"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def _packet_curve(ids: list[int], times: list[float]) -> LightCurve:
    decoder = Decoder()
    points = [{"id": i, "t": t, "flux": 100.0 + i % 7, "err": 5.0, "band": "r"}
              for i, t in zip(ids, times, strict=True)]
    # the triggering source is the latest; the packet lists the rest as its history
    points = points[-1:] + points[:-1]
    return light_curve(decoder.decode(decoder.encode(make_record(points), LATEST)))


def test_history_adds_older_detections_once_and_never_the_future():
    big = 2**62 + 12345  # 64-bit ids survive (a float64 array would round them)
    curve = _packet_curve([big + 3, big + 4, big + 5], [60400.0, 60410.0, 60420.0])
    stored = LightCurve(np.array([59800.0, 60000.0, 60400.0, 60500.0]), np.array([1.0, 2.0, 3.0, 4.0]),
                        np.full(4, 0.5), np.array([1, 2, 2, 3], np.int8),
                        source_id=np.array([big + 1, big + 2, big + 3, big + 9], np.int64))
    merged = with_history(curve, stored, until_mjd=60420.0)
    # the two older detections join; the shared one (big + 3) is the alert's own; 60500 is later
    assert merged.t.tolist() == [59800.0, 60000.0, 60400.0, 60410.0, 60420.0]
    assert merged.source_id.tolist() == [big + 1, big + 2, big + 3, big + 4, big + 5]
    assert merged.flux[:2].tolist() == [1.0, 2.0] and merged.flux[2] == curve.flux[0]
    assert merged.band[:2].tolist() == [1, 2] and merged.n_stored == 2
    # what the store lacks: the alert's detections it has not seen
    assert curve.source_id[unstored(curve, stored)].tolist() == [big + 4, big + 5]
    assert unstored(curve, None).tolist() == [True, True, True]
    assert with_history(curve, None, 60420.0) is curve


def test_forced_points_are_not_kept_in_the_history():
    decoder = Decoder()
    [record] = simulate_alerts(1, history=10, forced=True, seed=5)
    record["prvDiaForcedSources"].append(dict(record["prvDiaForcedSources"][0], diaForcedSourceId=999,
                                              midpointMjdTai=59000.0))
    curve = light_curve(decoder.decode(decoder.encode(record, LATEST)), forced=True)
    assert curve.source_id[0] == -1 and unstored(curve, None).sum() == len(curve) - 1


def test_alerts_of_one_object_in_one_batch_each_get_their_whole_past(tmp_path):
    """Two alerts of one object in a batch: each gets every earlier detection, none later than itself."""
    from service.store import Store
    from streaming.pipeline import curves_with_history
    from streaming.records import Detection
    from streaming.simulate import BANDS as NAMES
    from streaming.simulate import alert_at
    from tests.helpers import long_lived_object

    obj = long_lived_object()
    decoder = Decoder()
    alerts = [decoder.decode(decoder.encode(alert_at(obj, i), LATEST)) for i in (70, 89)]
    store = Store(tmp_path / "s.sqlite3")
    first_ids = [int(s) for s in light_curve(alerts[0]).source_id]
    base = first_ids[-1] - 70  # the simulator numbers an object's sources consecutively
    store.upsert([], [Detection(base + i, obj.dia_object_id, float(obj.t[i]), NAMES.index(obj.band[i]),
                                float(obj.flux[i]), float(obj.flux_err[i])) for i in range(60)])
    curves, new = curves_with_history(alerts, store)
    for curve, index in zip(curves, (70, 89), strict=True):
        assert curve.t.tolist() == obj.t[:index + 1].tolist()
    # the detections the store lacked: 60..89, once each (both packets carry 60..70)
    assert sorted(d.dia_source_id for d in new) == [base + i for i in range(60, 90)]
