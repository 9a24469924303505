"""Fuzzing, short: mutated packets (and the malformed kinds) through decode and the pipeline. The long
run is `python bench/fuzz.py --count 100000` (figures in docs/operations.md)."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from models.registry import Registry
from streaming.decode import Decoder, latest_version
from streaming.faults import DEAD, KINDS, expected, malformed, mutate
from streaming.pipeline import process_batch
from streaming.records import Message
from streaming.simulate import simulate_alerts

LATEST = latest_version()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


@pytest.fixture
def hang_bound():
    """A batch that takes minutes is a hang: fail it rather than wait (a bound, not a speed claim)."""
    def on_alarm(*_):
        raise TimeoutError("a batch took over 120 s: a hang")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    yield lambda: signal.alarm(120)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _outcomes(out) -> dict[int, str]:
    got = {m.offset: "classified" for m in out.classified}
    got.update({m.offset: "declined" for m, _ in out.declined})
    got.update({d.message.offset: f"dead_lettered:{d.reason}" for d in out.dead_letters})
    return got


def test_mutated_packets_end_classified_declined_or_dead_lettered(registry, hang_bound):
    decoder = Decoder()
    seeds = [decoder.encode(r, LATEST) for r in simulate_alerts(30, history=20, seed=5)]
    seeds += [decoder.encode(r, LATEST) for r in simulate_alerts(10, history=10, seed=6, forced=True)]
    rng = np.random.default_rng(7)
    for _ in range(6):  # 6 batches of 250: 1,500 mutated packets
        packets = [mutate(seeds[int(rng.integers(len(seeds)))], rng)[0] for _ in range(250)]
        packets[::50] = seeds[:5]  # valid packets among them go through untouched
        messages = [Message(p, "fuzz", 0, i) for i, p in enumerate(packets)]
        hang_bound()
        assert len(decoder.decode_batch(packets, lean=True)) == len(packets)
        out = process_batch(messages, decoder, registry)
        got = _outcomes(out)
        assert sorted(got) == list(range(len(packets))), "every packet has exactly one outcome"
        assert out.n_messages == len(packets)
        for i in range(0, len(packets), 50):
            assert not got[i].startswith("dead_lettered"), "a bad packet spoiled a valid one"


def test_every_malformed_kind_ends_as_it_must(registry):
    decoder = Decoder()
    records = list(simulate_alerts(len(KINDS), history=12, seed=8))
    packets = [malformed(kind, r, LATEST, decoder) for kind, r in zip(KINDS, records, strict=True)]
    out = process_batch([Message(p, "t", 0, i) for i, p in enumerate(packets)], decoder, registry)
    got = _outcomes(out)
    assert len(KINDS) >= 12
    for i, kind in enumerate(KINDS):
        want = expected(kind)
        if want.outcome == DEAD:
            assert got[i] == f"dead_lettered:{want.reason}", (kind, got[i])
        else:
            assert got[i] in ("classified", "declined"), (kind, got[i])
