"""Feature extraction throughput, one core: light curves/s for 6-band curves of 30 and 300 points
per band (and 30 points in all, a typical alert), median of repeats, with the cost of each part.

    .venv/bin/python bench/feature_bench.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from timing import rate

from models import feature_groups, features, templates
from streaming.lightcurve import LightCurve
from streaming.simulate import BANDS, simulate_object


def curves(n: int, points: int, seed: int) -> list[LightCurve]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        obj = simulate_object(rng, points, ("rrlyrae", "supernova", "agn")[i % 3])
        band = np.array(BANDS * (points // 6 + 1))[:points]  # every band equally sampled
        out.append(LightCurve.from_arrays(obj.t, obj.flux, obj.flux_err, rng.permutation(band)))
    return out




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    print(f"{'case':>22} {'curves/s':>9} {'us/curve':>9}   parts (us/curve)")
    for label, points, n in (("30 points in all", 30, 600), ("6 bands x 30", 180, 400),
                             ("6 bands x 300", 1800, 100)):
        cs = curves(n, points, points)
        total = rate(lambda c: features.extract(c, n_jobs=1), cs, args.repeats)
        prepared, b = features._prepare_batch(cs)
        std = [(p.t, p.std_flux, p.std_err) for p in prepared]
        peaks = features.periodogram_peaks(b.t, b.std_flux, b.std_err, b.bounds)
        bazin = np.full((len(cs), 6), np.nan)  # the groups' cost hardly depends on the Bazin fit's values
        parts = {
            "prepare": rate(features._prepare_batch, cs, args.repeats),
            "periodogram": rate(
                lambda c, b=b: features.periodogram_peaks(b.t, b.std_flux, b.std_err, b.bounds),
                cs, args.repeats),
            "period candidates": rate(
                lambda c, b=b, peaks=peaks: features.period_fits(b.t, b.std_flux, b.std_err, b.bounds,
                                                                 peaks[:, 0::2]), cs, args.repeats),
            "shape": rate(lambda s: features._SHAPE.many(s, fill_value=np.nan, sorted=True, check=False,
                                                         n_jobs=1), std, args.repeats),
            "template fits": rate(lambda c, b=b: templates.fit_many(b.t, b.flux, b.err, b.band, b.bounds),
                                  cs, args.repeats),
            "compiled groups": rate(lambda c, b=b, z=bazin: feature_groups.curve_groups(
                b.t, b.flux, b.band, b.bounds, b.t_by_band, b.flux_by_band, b.seg_start, b.counts, b.abs_max,
                b.flux_max, b.p05, b.p95, z, features._PAIR_A, features._PAIR_B), cs, args.repeats),
        }
        us = {k: round(1e6 / v, 1) for k, v in parts.items()}
        print(f"{label:>22} {total:>9,.0f} {1e6 / total:>9.0f}   {us}")
        results[label] = {"curves_per_s": round(total), "parts_us": us}
    print(json.dumps({"feature_curves_per_s": results}))


if __name__ == "__main__":
    main()
