"""Fuzz the decoder and the batch pipeline with mutated Rubin packets.

Valid v11.1 packets (and unframed, older-schema and forced-photometry ones) are mutated by
`streaming.faults.mutate` (bit flips, truncations, endless varints, huge or negative length
prefixes, bad union branches, repeated blocks, NaN doubles, another schema's id) and pushed in
batches, beside valid packets, through `Decoder.decode_batch` and `process_batch`. Every packet must
end classified, declined or dead-lettered; an uncaught exception or a batch over `--hang-s` counts
as a failure. The last line is one JSON object.

    python bench/fuzz.py --count 100000            # structural mutations, seeded
    python bench/fuzz.py --engine atheris --count 100000   # coverage-guided (libFuzzer), same mutator
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter

import numpy as np

from models.registry import Registry
from streaming.decode import Decoder, SchemaVersion, latest_version
from streaming.faults import mutate
from streaming.pipeline import process_batch
from streaming.records import Message
from streaming.simulate import simulate_alerts


class Hang(Exception):
    pass


def seeds(decoder: Decoder) -> list[bytes]:
    """Valid packets to mutate: the latest schema with and without forced photometry, and 7.0."""
    latest = latest_version()
    out = [decoder.encode(r, latest) for r in simulate_alerts(40, history=20, seed=1)]
    out += [decoder.encode(r, latest) for r in simulate_alerts(20, history=12, seed=2, forced=True)]
    old = SchemaVersion(7, 0)
    out += [decoder.encode(r, old) for r in simulate_alerts(10, history=8, seed=3, version=old)]
    return out


class Fuzzer:
    def __init__(self, hang_s: float) -> None:
        self.decoder = Decoder()
        self.registry = Registry()
        self.seeds = seeds(self.decoder)
        self.hang_s = hang_s
        self.counts: Counter = Counter()
        self.mutations: Counter = Counter()
        self.failures: list[str] = []
        self.max_batch_s = 0.0

    def run_batch(self, packets: list[bytes]) -> None:
        """One batch through decode and the pipeline; accounting checked; failures recorded."""
        messages = [Message(p, "fuzz", 0, i) for i, p in enumerate(packets)]
        signal.setitimer(signal.ITIMER_REAL, self.hang_s)
        t0 = time.perf_counter()
        try:
            self.decoder.decode_batch(packets, lean=True)
            out = process_batch(messages, self.decoder, self.registry)
        except Hang:
            self.failures.append(f"hang: a batch of {len(packets)} took over {self.hang_s} s")
            self.counts["hang"] += 1
            return
        except Exception as exc:  # noqa: BLE001 - the finding we are looking for
            self.failures.append(f"uncaught {type(exc).__name__}: {exc}")
            self.counts["uncaught"] += 1
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        self.max_batch_s = max(self.max_batch_s, time.perf_counter() - t0)
        seen = ([m.offset for m in out.classified] + [m.offset for m, _ in out.declined]
                + [d.message.offset for d in out.dead_letters])
        if sorted(seen) != list(range(len(packets))):
            self.failures.append(f"accounting: {len(seen)} outcomes for {len(packets)} messages")
            self.counts["accounting"] += 1
        self.counts["classified"] += len(out.classified)
        self.counts["declined"] += len(out.declined)
        for d in out.dead_letters:
            self.counts[f"dead_lettered:{d.reason}"] += 1

    def mutated(self, rng: np.random.Generator) -> bytes:
        packet, name = mutate(self.seeds[int(rng.integers(len(self.seeds)))], rng)
        self.mutations.update(name.split("+"))
        return packet

    def report(self, total: int, seconds: float) -> dict:
        return {"mutated_packets": total, "seconds": round(seconds, 1),
                "uncaught_exceptions": self.counts["uncaught"], "hangs": self.counts["hang"],
                "accounting_errors": self.counts["accounting"], "max_batch_s": round(self.max_batch_s, 3),
                "outcomes": {k: v for k, v in sorted(self.counts.items())
                             if k not in ("uncaught", "hang", "accounting")},
                "mutations": dict(self.mutations.most_common()), "first_failures": self.failures[:5]}


def random_engine(f: Fuzzer, count: int, batch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    done, t0 = 0, time.monotonic()
    while done < count:
        n = min(batch, count - done)
        packets = [f.mutated(rng) for _ in range(n)]
        # a few valid packets in every batch: a bad one must not spoil them
        packets[::25] = [f.seeds[int(rng.integers(len(f.seeds)))] for _ in packets[::25]]
        f.run_batch(packets)
        done += n
        print(f"\rfuzz {done}/{count} ({done / (time.monotonic() - t0):,.0f}/s), failures "
              f"{len(f.failures)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def atheris_engine(f: Fuzzer, count: int, seed: int) -> None:
    """Coverage-guided: libFuzzer mutates (half of the time through our structural mutator) and
    keeps inputs that reach new Python code (decoder, light curves, pipeline, features)."""
    import atheris

    atheris.instrument_all()  # every Python function loaded: the decoder, light curves, pipeline
    rng = np.random.default_rng(seed)
    runs = [0]
    t0 = time.monotonic()

    def custom_mutator(data: bytes, max_size: int, _seed: int) -> bytes:
        if rng.random() < 0.5 or not data:
            return f.mutated(rng)[:max_size]
        return atheris.Mutate(data, max(len(data), max_size))

    def one_input(data: bytes) -> None:
        runs[0] += 1
        # valid neighbours now and then: a bad packet must not spoil them
        f.run_batch([f.seeds[0], data, f.seeds[1]] if runs[0] % 100 == 0 else [data])
        if f.failures:
            raise RuntimeError(f.failures[-1])
        if runs[0] == count:  # libFuzzer ends the process itself after the last run
            print(json.dumps(f.report(count, time.monotonic() - t0)), flush=True)

    for packet in f.seeds[:3]:
        f.run_batch([packet])
    atheris.Setup([sys.argv[0], f"-runs={count}", f"-seed={seed + 1}", "-max_len=200000"], one_input,
                  custom_mutator=custom_mutator)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=30.0, help="a batch slower than this is a hang")
    parser.add_argument("--engine", choices=["random", "atheris"], default="random")
    args = parser.parse_args()

    def on_alarm(*_):
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    fuzzer = Fuzzer(args.hang_s)
    t0 = time.monotonic()
    if args.engine == "atheris":
        atheris_engine(fuzzer, args.count, args.seed)  # prints its report and exits
    else:
        random_engine(fuzzer, args.count, args.batch, args.seed)
    report = fuzzer.report(args.count, time.monotonic() - t0)
    print(json.dumps(report))
    return 1 if fuzzer.failures else 0


if __name__ == "__main__":
    sys.exit(main())
