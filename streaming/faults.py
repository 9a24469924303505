"""Bad packets on purpose: the kinds of malformed alert a stream carries sooner or later, and random
structural mutations of valid packets.

For the tests, the soak and fuzz commands (`bench/soak.py`, `bench/fuzz.py`), and for operators who
want to watch a deployment's dead-letter path (`alert-classifier simulate --malformed 0.1`). Each
kind says what the service must make of it: a dead letter with a given reason, or an alert that is
still classified or declined (a duplicate, a history with bad points, no usable points at all).
"""

from __future__ import annotations

import copy
import math
import struct
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from streaming.decode import Decoder, SchemaVersion


class Expected(NamedTuple):
    outcome: str  # "dead_lettered" or "classified_or_declined"
    reason: str | None = None  # the dead-letter reason


DEAD = "dead_lettered"
JUDGED = "classified_or_declined"


def _values(**changes) -> Callable[[dict], dict]:
    def change(record: dict) -> dict:
        out = copy.deepcopy(record)
        out["diaSource"].update(changes)
        if isinstance(out.get("diaObject"), dict):
            out["diaObject"].update({k: v for k, v in changes.items() if k in out["diaObject"]})
        return out
    return change


def _bad_history(record: dict) -> dict:
    out = copy.deepcopy(record)
    for i, src in enumerate(out.get("prvDiaSources") or []):
        if i % 2 == 0:
            src["psfFlux"] = math.nan
        else:
            src["psfFluxErr"] = 0.0
    return out


def _nothing_usable(record: dict) -> dict:
    out = copy.deepcopy(record)
    out["prvDiaSources"] = []
    out["diaSource"]["psfFlux"] = math.nan
    return out


# kind -> (how to make it from a valid record's packet, what must become of it)
BYTES_KINDS: dict[str, tuple[Callable[[bytes], bytes], Expected]] = {
    "empty": (lambda p: b"", Expected(DEAD, "empty")),
    "too_short": (lambda p: p[:3], Expected(DEAD, "too_short")),
    "wrong_magic_byte": (lambda p: b"\x07" + p[1:], Expected(DEAD, "wrong_magic_byte")),
    "unknown_schema_id": (lambda p: b"\x00" + struct.pack(">I", 9999) + p[5:],
                          Expected(DEAD, "unknown_schema_id")),
    "truncated": (lambda p: p[:len(p) // 2], Expected(DEAD, "corrupt_avro")),
    "garbage_body": (lambda p: p[:5] + b"\xff" * 64, Expected(DEAD, "corrupt_avro")),
    "trailing_bytes": (lambda p: p + b"\x00\x02", Expected(DEAD, "corrupt_avro")),
    "invalid_json": (lambda p: b"{not json", Expected(DEAD, "invalid_json")),
    "missing_field": (lambda p: b'{"diaSourceId": 1}', Expected(DEAD, "missing_field")),
}
VALUE_KINDS: dict[str, tuple[Callable[[dict], dict], Expected]] = {
    "nan_ra": (_values(ra=math.nan), Expected(DEAD, "invalid_value")),
    "inf_ra": (_values(ra=math.inf), Expected(DEAD, "invalid_value")),
    "huge_coordinates": (_values(ra=1e300, dec=-1e300), Expected(DEAD, "invalid_value")),
    "dec_out_of_range": (_values(dec=-91.0), Expected(DEAD, "invalid_value")),
    "inf_time": (_values(midpointMjdTai=math.inf), Expected(DEAD, "invalid_value")),
    "nan_time": (_values(midpointMjdTai=math.nan), Expected(DEAD, "invalid_value")),
    "absurd_id": (_values(diaSourceId=-(2**62)), Expected(DEAD, "invalid_value")),
    "nan_history_fluxes": (_bad_history, Expected(JUDGED)),
    # declined on its own; classified where the store kept the object's earlier detections
    "empty_history": (_nothing_usable, Expected(JUDGED)),
}
DUPLICATE = "duplicate"  # the same packet again: upserted, one set of store rows
KINDS = (*BYTES_KINDS, *VALUE_KINDS, DUPLICATE)


def expected(kind: str) -> Expected:
    if kind == DUPLICATE:
        return Expected(JUDGED)
    return (BYTES_KINDS.get(kind) or VALUE_KINDS[kind])[1]


def malformed(kind: str, record: dict, version: SchemaVersion, decoder: Decoder | None = None) -> bytes:
    """A bad packet of `kind`, made from a valid alert record."""
    decoder = decoder or Decoder()
    if kind in VALUE_KINDS:
        return decoder.encode(VALUE_KINDS[kind][0](record), version)
    packet = decoder.encode(record, version)
    if kind == DUPLICATE:
        return packet
    return BYTES_KINDS[kind][0](packet)


# --- random structural mutations (fuzzing) --------------------------------------------------------

def _flip_bits(p: bytearray, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(p)))
        p[i] ^= 1 << int(rng.integers(8))


def _truncate(p: bytearray, rng: np.random.Generator) -> None:
    del p[int(rng.integers(len(p))):]


def _long_varint(p: bytearray, rng: np.random.Generator) -> None:
    """A varint that never ends, or ends far too late (continuation bits set)."""
    i = int(rng.integers(5, len(p))) if len(p) > 5 else 0
    p[i:i + 1] = b"\xff" * int(rng.integers(1, 12))


def _length_prefix(p: bytearray, rng: np.random.Generator) -> None:
    """A zig-zag length where a string, bytes or array count might be: huge or negative."""
    i = int(rng.integers(5, len(p))) if len(p) > 5 else 0
    value = int(rng.choice([2**40, 2**62, 10**9, -1, -(2**31), 0x7FFFFFFF]))
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    zigzag &= (1 << 64) - 1
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        out.append(byte | (0x80 if zigzag else 0))
        if not zigzag:
            break
    p[i:i + 1] = out


def _union_branch(p: bytearray, rng: np.random.Generator) -> None:
    """A union index out of range where a nullable field's branch byte may be."""
    i = int(rng.integers(5, len(p))) if len(p) > 5 else 0
    p[i] = int(rng.choice([0x04, 0x06, 0x7E, 0x01, 0x03]))


def _repeat_block(p: bytearray, rng: np.random.Generator) -> None:
    i = int(rng.integers(len(p)))
    j = min(len(p), i + int(rng.integers(1, 200)))
    p[j:j] = p[i:j] * int(rng.integers(1, 4))


def _nan_double(p: bytearray, rng: np.random.Generator) -> None:
    i = int(rng.integers(5, max(6, len(p) - 8)))
    p[i:i + 8] = struct.pack("<d", float(rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0])))


def _other_schema(p: bytearray, rng: np.random.Generator) -> None:
    """The body read with another shipped schema's id."""
    p[1:5] = struct.pack(">I", int(rng.choice([300, 401, 501, 602, 703, 800, 900, 1000, 1100, 1101])))


MUTATIONS: dict[str, Callable[[bytearray, np.random.Generator], None]] = {
    "bit_flips": _flip_bits, "truncation": _truncate, "long_varint": _long_varint,
    "length_prefix": _length_prefix, "union_branch": _union_branch, "repeated_block": _repeat_block,
    "nan_double": _nan_double, "other_schema_id": _other_schema,
}


def mutate(packet: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random structural mutation (sometimes two) of a valid packet, and its name."""
    out = bytearray(packet)
    names = list(MUTATIONS)
    chosen = [names[int(rng.integers(len(names)))] for _ in range(1 + int(rng.random() < 0.25))]
    for name in chosen:
        if out:
            MUTATIONS[name](out, rng)
    return bytes(out), "+".join(chosen)
