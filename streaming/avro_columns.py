"""Read the few fields the pipeline needs from many Avro bodies at once, compiled.

An alert's body carries ~100 fields for each detection of its history, and the pipeline needs five
of them. A general reader (polars, cavro) materialises or at least visits every field through its
own machinery; here the writer's schema is compiled once into a flat program (one instruction per
field), and one numba loop walks every body of a batch with it, reading the wanted fields into
arrays and stepping over the others (a varint, or a length and its bytes). Every body is checked as
it is read: a read past its end, a bad union branch, a negative length or block count, an overlong
varint, a boolean that is not 0 or 1, a string that is not UTF-8 or bytes left over make that body
*rejected*, never a wrong value; the caller decodes a rejected body with the full reader, which
names what is wrong with it. So this reader is stricter than the full one, never looser.

Wanted fields are named by path: ("diaSource", "ra") in the alert, ("prvDiaSources", "*",
"psfFlux") in each item of an array. Numbers come out as float64 (NaN for null) or int64 (with a null
mask); strings as (offset, length) into the body, or, in array items, as an index into a table of
one-character strings (the band; -1 for null or any other string).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

_jit = numba.njit(cache=True, nogil=True)

# Instructions: (op, a, slot, null, run). Value ops read or step over `run` fields in a row of the
# same kind (a: a fixed type's size); `null`: which union branch is null for a field typed
# [null, T] (the common case, one instruction), -1 for a plain T; `slot`: the column a wanted
# field is written to (-1: stepped over). UNION: a other branches, a JUMP table after it.
(END, FLOAT, BOOLEAN, DOUBLE, LONG, INT, STRING, BYTES, FIXED, ENUM, NULL,
 UNION, JUMP, ARRAY, ARRAY_END) = range(15)
_PRIMITIVES = {"null": NULL, "boolean": BOOLEAN, "int": INT, "long": LONG, "float": FLOAT, "double": DOUBLE,
               "string": STRING, "bytes": BYTES}
# kinds of wanted values: where the walker writes them
F64, I64, SPAN, CODE = range(4)
_KIND_OF_OP = {INT: I64, LONG: I64, FLOAT: F64, DOUBLE: F64, STRING: SPAN}

# why a body was rejected (0: read)
OK, PAST_END, BAD_VARINT, BAD_UNION, BAD_LENGTH, BAD_BOOLEAN, BAD_UTF8, LEFT_OVER = range(8)


class Unsupported(ValueError):
    """The schema has a construct this reader does not compile (a map, a recursive type)."""


@dataclass(frozen=True)
class Program:
    """A schema compiled for `read`: the instructions, and where each wanted path lands."""

    code: np.ndarray  # int64 [n + 256, 5]: the instructions, then the string code table
    slots: dict[tuple[str, ...], tuple[int, int, int]]  # path -> (level 0 alert / 1 item, kind, column)
    widths: tuple[int, ...]  # columns per (level, kind): alert F64, I64, SPAN, item F64, I64, CODE
    item_bytes: int  # the fewest bytes an item of the tracked array takes (so at most len / this items)


def compile_schema(definition: dict, wanted: Sequence[tuple[str, ...]], items: str,
                   codes: Sequence[str]) -> Program:
    """`definition`: the writer's record schema; `wanted`: paths of fields to read; `items`: the one
    array whose items are read row by row (level 1); `codes`: the one-character strings that array
    items' string fields are coded as (their index)."""
    named: dict[str, dict] = {}
    code: list[list[int]] = []
    slots: dict[tuple[str, ...], tuple[int, int, int]] = {}
    counts = [0] * 6
    item_bytes = [1]
    want = {tuple(p) for p in wanted}

    def emit(op: int, a: int = 0, slot: int = -1, null: int = -1) -> int:
        if slot < 0 and op < UNION and code and code[-1][:4] == [op, a, slot, null]:
            code[-1][4] += 1  # one more field of the same kind in a row, stepped over
        else:
            code.append([op, a, slot, null, 1])
        return len(code) - 1

    def mark() -> int:
        """A no-op to jump to: what follows a jump target never merges into what precedes it."""
        code.append([NULL, 0, -1, -1, 1])
        return len(code) - 1

    def slot_for(path: tuple[str, ...], op: int) -> int:
        if path not in want:
            return -1
        level = 1 if path[:2] == (items, "*") else 0
        kind = _KIND_OF_OP.get(op)
        if kind is None:
            raise Unsupported(f"field {'.'.join(path)}: only numbers and strings can be read")
        if level == 1 and kind == SPAN:
            kind = CODE
        index = 3 * level + (kind if level == 0 else {F64: 0, I64: 1, CODE: 2}[kind])
        slots[path] = (level, kind, counts[index])
        counts[index] += 1
        return slots[path][2]

    def full_name(name: str, namespace: str | None) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def resolve(t, namespace: str | None):
        """A named type's definition for a reference to it, else t."""
        if isinstance(t, str) and t not in _PRIMITIVES:
            name = full_name(t, namespace) if full_name(t, namespace) in named else t
            if name not in named:
                raise Unsupported(f"unknown type {t}")
            return named[name]
        if isinstance(t, dict) and t.get("type") not in ("record", "enum", "fixed", "array", "map"):
            return resolve(t["type"], namespace)  # {"type": "long", "logicalType": ...}
        return t

    def fewest_bytes(t, namespace: str | None) -> int:
        t = resolve(t, namespace)
        if isinstance(t, str):
            return {"null": 0, "float": 4, "double": 8}.get(t, 1)
        if isinstance(t, list):
            return 1 + min(fewest_bytes(b, namespace) for b in t)
        if t["type"] == "record":
            return sum(fewest_bytes(f["type"], t.get("namespace", namespace)) for f in t["fields"])
        return int(t["size"]) if t["type"] == "fixed" else 1

    def walk(t, path: tuple[str, ...], namespace: str | None, stack: tuple[str, ...], null: int = -1) -> None:
        t = resolve(t, namespace)
        if isinstance(t, str):
            op = _PRIMITIVES[t]
            emit(op, 0, slot_for(path, op) if op != NULL else -1, null)
            return
        if isinstance(t, list):
            branches = [resolve(b, namespace) for b in t]
            if len(t) == 2 and "null" in branches:
                other = branches[1 - branches.index("null")]
                if isinstance(other, str) or other.get("type") in ("enum", "fixed"):
                    walk(other, path, namespace, stack, branches.index("null"))
                    return
            emit(UNION, len(t))
            table = [emit(JUMP) for _ in t]
            ends = []
            for k, branch in enumerate(t):
                code[table[k]][1] = mark()
                walk(branch, path, namespace, stack)
                ends.append(emit(JUMP))
            after = mark()
            for e in ends:
                code[e][1] = after
            return
        kind = t["type"]
        ns = t.get("namespace", namespace)
        name = full_name(t.get("name", ""), ns)
        if kind in ("record", "enum", "fixed"):
            if name in stack:
                raise Unsupported(f"recursive type {name}")
            named[name] = t
        if kind == "record":
            for f in t["fields"]:
                walk(f["type"], (*path, f["name"]), ns, (*stack, name))
        elif kind == "enum":
            emit(ENUM, len(t["symbols"]), -1, null)
        elif kind == "fixed":
            emit(FIXED, int(t["size"]), -1, null)
        elif kind == "array":
            start = emit(ARRAY, 0, 1 if path == (items,) else 0)
            mark()
            walk(t["items"], (*path, "*"), namespace, stack)
            if path == (items,):
                item_bytes[0] = max(fewest_bytes(t["items"], namespace), 1)
            emit(ARRAY_END, start)
            code[start][1] = mark()
        else:
            raise Unsupported(f"type {kind}")

    walk(definition, (), definition.get("namespace"), ())
    emit(END)
    missing = want - slots.keys()
    if missing:
        raise Unsupported(f"fields not in the schema: {sorted(missing)}")
    table = np.zeros((256, 5), np.int64)
    table[:, 0] = -1
    for i, s in enumerate(codes):
        table[ord(s), 0] = i
    return Program(np.vstack([np.array(code, dtype=np.int64), table]), slots, tuple(counts), item_bytes[0])


@dataclass
class Columns:
    """What `read` found. Alert level: one row per body; item level: one row per item of the tracked
    array, `owner` its body, in body then item order; `count` items per body (0 for null)."""

    status: np.ndarray  # per body: OK or why it was rejected
    f64: np.ndarray
    f64_null: np.ndarray
    i64: np.ndarray
    i64_null: np.ndarray
    span: np.ndarray  # [body, column, (offset in the body, length)], offset -1 for null
    item_f64: np.ndarray
    item_i64: np.ndarray
    item_code: np.ndarray
    owner: np.ndarray
    count: np.ndarray

    def alert(self, slot: tuple[int, int, int], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An alert-level field's values and null mask at `rows` (a string: [row, (offset, length)])."""
        _, kind, j = slot
        if kind == F64:
            return self.f64[rows, j], self.f64_null[rows, j]
        if kind == I64:
            return self.i64[rows, j], self.i64_null[rows, j]
        return self.span[rows, j], self.span[rows, j, 0] < 0

    def item(self, slot: tuple[int, int, int]) -> np.ndarray:
        """An item-level field's values (null: NaN, 0, or code -1)."""
        _, kind, j = slot
        return {F64: self.item_f64, I64: self.item_i64, CODE: self.item_code}[kind][:, j]


def read(program: Program, bodies: Sequence[bytes], skip: int = 0) -> Columns:
    """Body k is bodies[k][skip:] (bytes: read where they are, not copied)."""
    address = np.array([ctypes.cast(b, ctypes.c_void_p).value for b in bodies], dtype=np.int64) + skip
    length = np.array([len(b) for b in bodies], dtype=np.int64) - skip
    if (length < 0).any():
        raise ValueError(f"a body shorter than the {skip} bytes to skip")
    w = program.widths
    rows = int(length.sum()) // program.item_bytes + 1  # room for every item there can be (untouched
    # pages cost nothing): growing arrays inside the loop made every step of it ~2x slower
    out = _read(program.code, len(program.code) - 256, address, length, w[0], w[1], w[2],
                np.empty((rows, w[3])), np.empty((rows, w[4]), np.int64), np.empty((rows, w[5]), np.int8),
                np.empty(rows, np.int64))
    return Columns(*out)


@intrinsic
def _bytes_at(typingctx, address):
    """The uint8 pointer at an address (the caller keeps the bytes alive)."""
    sig = types.CPointer(types.uint8)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.uint8)))

    return sig, codegen


@_jit
def _varint(data, pos, end):
    """(value, new position, OK or why not): a zigzag long."""
    shift = 0
    acc = np.uint64(0)
    while True:
        if pos >= end:
            return 0, pos, PAST_END
        if shift > 63:
            return 0, pos, BAD_VARINT
        byte = data[pos]
        pos += 1
        if shift == 63 and byte > 1:  # past 64 bits
            return 0, pos, BAD_VARINT
        acc |= np.uint64(byte & 0x7F) << np.uint64(shift)
        if byte < 0x80:
            break
        shift += 7
    value = np.int64(acc >> np.uint64(1)) ^ -np.int64(acc & np.uint64(1))
    return value, pos, OK


@_jit
def _length(data, pos, end):
    """(a byte length or a block's item count, new position, OK or why not). Never negative (a
    negative count announces a block with its byte size, which the writers here never write) nor
    more than the bytes left (for items, stricter than Avro needs: a null item takes none)."""
    n, pos, why = _varint(data, pos, end)
    if why == OK and (n < 0 or n > end - pos):
        why = BAD_LENGTH
    return n, pos, why


@_jit
def _utf8(data, pos, end):
    """Whether data[pos:end] is well-formed UTF-8 (no overlongs, surrogates or code points past 10FFFF)."""
    while pos < end:
        b = data[pos]
        if b < 0x80:
            pos += 1
            continue
        if 0xC2 <= b <= 0xDF:
            n, lo, hi = 1, 0x80, 0xBF
        elif b == 0xE0:
            n, lo, hi = 2, 0xA0, 0xBF
        elif 0xE1 <= b <= 0xEC or 0xEE <= b <= 0xEF:
            n, lo, hi = 2, 0x80, 0xBF
        elif b == 0xED:
            n, lo, hi = 2, 0x80, 0x9F
        elif b == 0xF0:
            n, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= b <= 0xF3:
            n, lo, hi = 3, 0x80, 0xBF
        elif b == 0xF4:
            n, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if pos + n >= end:
            return False
        c = data[pos + 1]
        if c < lo or c > hi:
            return False
        for k in range(2, n + 1):
            c = data[pos + k]
            if c < 0x80 or c > 0xBF:
                return False
        pos += n + 1
    return True


@_jit
def _read(code, n_code, address, length, n_f64, n_i64, n_span, item_f64, item_i64, item_code, owner):
    """`read`'s loop: body k is `length[k]` bytes at `address[k]`; the item arrays have room for
    every item; returns Columns' fields."""
    n = len(address)
    status = np.zeros(n, np.int8)
    f64 = np.full((n, n_f64), np.nan)
    f64_null = np.ones((n, n_f64), np.bool_)
    i64 = np.zeros((n, n_i64), np.int64)
    i64_null = np.ones((n, n_i64), np.bool_)
    span = np.full((n, n_span, 2), -1, np.int64)
    count = np.zeros(n, np.int64)
    bits32 = np.zeros(1, np.uint32)
    as_f32 = bits32.view(np.float32)
    bits64 = np.zeros(1, np.uint64)
    as_f64 = bits64.view(np.float64)
    stack_pc = np.zeros(16, np.int64)  # open arrays: first instruction of an item,
    stack_left = np.zeros(16, np.int64)  # items left in the current block
    rows = 0
    for k in range(n):
        data = numba.carray(_bytes_at(address[k]), (length[k],))
        pos = 0
        end = length[k]
        rows_before = rows
        depth = 0
        row = -1  # the tracked array's current item (-1: outside it)
        tracked_depth = -1
        pc = 0
        bad = OK
        while bad == OK:
            op = code[pc, 0]
            size = code[pc, 1]
            slot = code[pc, 2]
            null = code[pc, 3]
            run = code[pc, 4]
            pc += 1
            if op == END:
                break
            if op <= DOUBLE and slot < 0 and null >= 0:
                # the common case, fast: step over nullable floats, booleans and doubles without a
                # branch on the null (a branch on a random null costs more than the field)
                width = 4 if op == FLOAT else 8 if op == DOUBLE else 1
                null_byte = 2 * null
                boolean = op == BOOLEAN
                for _ in range(run):
                    if pos >= end:
                        bad = PAST_END
                        break
                    branch = data[pos]
                    present = branch != null_byte
                    after = data[pos + 1] if pos + 1 < end else 0  # a boolean's value if present
                    if (branch | 2 != 2) | (boolean & present & (after > 1)):
                        bad = BAD_UNION if branch | 2 != 2 else BAD_BOOLEAN
                        break
                    pos += 1 + width * present
                if pos > end:
                    bad = PAST_END
            elif op <= NULL:  # a value, `run` of them
                for _ in range(run):
                    if null >= 0:  # [null, T]: the branch index, one byte (0: 0x00, 1: 0x02)
                        if pos >= end:
                            bad = PAST_END
                            break
                        branch = data[pos]
                        pos += 1
                        if branch != 0 and branch != 2:
                            bad = BAD_UNION
                            break
                        if branch == 2 * null:
                            continue
                    if op in (FLOAT, DOUBLE, FIXED):
                        width = 4 if op == FLOAT else 8 if op == DOUBLE else size
                        if pos + width > end:
                            bad = PAST_END
                            break
                        if slot >= 0:
                            if op == FLOAT:
                                bits32[0] = (np.uint32(data[pos]) | (np.uint32(data[pos + 1]) << np.uint32(8))
                                             | (np.uint32(data[pos + 2]) << np.uint32(16))
                                             | (np.uint32(data[pos + 3]) << np.uint32(24)))
                                value_f = np.float64(as_f32[0])
                            else:
                                acc = np.uint64(0)
                                for i in range(8):
                                    acc |= np.uint64(data[pos + i]) << np.uint64(8 * i)
                                bits64[0] = acc
                                value_f = as_f64[0]
                            if row >= 0:
                                item_f64[row, slot] = value_f
                            else:
                                f64[k, slot] = value_f
                                f64_null[k, slot] = False
                        pos += width
                    elif op == BOOLEAN:
                        if pos >= end:
                            bad = PAST_END
                            break
                        if data[pos] > 1:
                            bad = BAD_BOOLEAN
                            break
                        pos += 1
                    elif op in (LONG, INT, ENUM):
                        value, pos, why = _varint(data, pos, end)
                        if why != OK or (op == INT and (value > 2147483647 or value < -2147483648)):
                            bad = why if why != OK else BAD_VARINT
                            break
                        if op == ENUM and (value < 0 or value >= size):
                            bad = BAD_UNION
                            break
                        if slot >= 0:
                            if row >= 0:
                                item_i64[row, slot] = value
                            else:
                                i64[k, slot] = value
                                i64_null[k, slot] = False
                    elif op in (STRING, BYTES):
                        n_bytes, pos, why = _length(data, pos, end)
                        if why != OK:
                            bad = why
                            break
                        if op == STRING and not _utf8(data, pos, pos + n_bytes):
                            bad = BAD_UTF8
                            break
                        if slot >= 0:
                            if row >= 0:
                                item_code[row, slot] = code[n_code + data[pos], 0] if n_bytes == 1 else -1
                            else:
                                span[k, slot, 0] = pos
                                span[k, slot, 1] = n_bytes
                        pos += n_bytes
            elif op == JUMP:
                pc = size
            elif op == UNION:
                value, pos, why = _varint(data, pos, end)
                if why != OK:
                    bad = why
                elif value < 0 or value >= size:
                    bad = BAD_UNION
                else:
                    pc = code[pc + value, 1]
            else:  # ARRAY, ARRAY_END
                if op == ARRAY:
                    if depth == 16:
                        bad = BAD_LENGTH
                        break
                    stack_pc[depth] = pc
                    stack_left[depth] = 0
                    if slot == 1:
                        tracked_depth = depth
                    depth += 1
                else:
                    stack_left[depth - 1] -= 1
                if stack_left[depth - 1] == 0:  # a new block: its item count
                    items, pos, why = _length(data, pos, end)
                    if why != OK:
                        bad = why
                        break
                    stack_left[depth - 1] = items
                if stack_left[depth - 1] == 0:  # the array ends
                    depth -= 1
                    if tracked_depth == depth:
                        tracked_depth = -1
                        row = -1
                    pc = size if op == ARRAY else code[size, 1]
                    continue
                pc = stack_pc[depth - 1]
                if tracked_depth == depth - 1:
                    row = rows
                    rows += 1
                    owner[row] = k
                    count[k] += 1
                    item_f64[row] = np.nan
                    item_i64[row] = 0
                    item_code[row] = -1
        if bad == OK and pos != end:
            bad = LEFT_OVER
        if bad != OK:
            status[k] = bad
            rows = rows_before  # its items go with it
            count[k] = 0
    return (status, f64, f64_null, i64, i64_null, span, item_f64[:rows], item_i64[:rows], item_code[:rows],
            owner[:rows], count)
