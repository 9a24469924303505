"""Decode throughput, one core: alerts/s for 0, 30 and 300 history points (+ as many forced points,
three 9 kB cutouts, every diaSource field filled), fastavro vs our per-message decoder (cavro), full
vs lean, and the stream's bulk decoder (compiled per schema; light curves of the detections included)
against the lean decoder plus the same light curves.

    .venv/bin/python bench/decode_bench.py [--repeats 7]

Prints a table (median of the repeats) and, last, one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import fastavro
from timing import rate

from streaming import bulk_decode
from streaming.decode import Decoder, _shipped_schema, latest_version
from streaming.lightcurve import light_curves
from streaming.simulate import simulate_alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    version = latest_version()
    decoder = Decoder()
    schema = _shipped_schema(version)
    results = {}
    print(f"{'history':>8} {'bytes':>7} {'fastavro/s':>11} {'full/s':>9} {'lean/s':>9} "
          f"{'lean+lc/s':>10} {'bulk+lc/s':>10} {'bulk vs lean+lc':>15}")
    for history in (0, 30, 300):
        n = {0: 2000, 30: 400, 300: 60}[history]
        records = list(simulate_alerts(n, history=history, forced=True, cutout_bytes=9000, seed=history))
        packets = decoder.encode_batch(records, version)
        print(f"  ({history}: {n} alerts)", file=sys.stderr, flush=True)
        naive = rate(lambda ps: [fastavro.schemaless_reader(io.BytesIO(p[5:]), schema, None) for p in ps],
                     packets, args.repeats)
        full = rate(decoder.decode_batch, packets, args.repeats)
        lean = rate(lambda ps: decoder.decode_batch(ps, lean=True), packets, args.repeats)
        with_lc = rate(lambda ps: light_curves(decoder.decode_batch(ps, lean=True)), packets, args.repeats)
        bulk = rate(lambda ps: bulk_decode.decode_batch(ps, decoder), packets, args.repeats)
        size = sum(map(len, packets)) // n
        print(f"{history:>8} {size:>7} {naive:>11.0f} {full:>9.0f} {lean:>9.0f} {with_lc:>10.0f} "
              f"{bulk:>10.0f} {bulk / with_lc:>14.1f}x")
        results[str(history)] = {"bytes": size, "fastavro_per_s": round(naive), "full_per_s": round(full),
                                 "lean_per_s": round(lean), "lean_plus_lightcurve_per_s": round(with_lc),
                                 "bulk_plus_lightcurve_per_s": round(bulk)}
    print(json.dumps({"decode_alerts_per_s": results, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
