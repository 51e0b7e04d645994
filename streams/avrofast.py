"""Avro binary for one schema, compiled: an encoder and a decoder that do only what the schema needs.

fastavro's schemaless writer and reader walk the schema on every call, several µs per record of
ours, once or twice per event. Here a parsed schema (what `fastavro.parse_schema` returns) becomes
straight-line Python source, compiled once. It covers the Avro our schemas use: records, enums,
maps, arrays, strings, bytes, int/long, float/double, boolean, null, and unions of null with one
primitive or enum. `encoder` and `decoder` return None for anything else (fixed, logical types,
wider unions) and the codec keeps fastavro for it.

Encoding takes the exact Python types of a valid record (str, int, float, bytes, bool, dict, list)
and raises on the rest: fastavro is lenient in ways that are costly to mirror (it truncates a float
given for a long, takes an int or a numeric string for a double, a bytearray for bytes), so the
codec hands such a record to fastavro, which writes exactly its own bytes or raises its own error.
For the types it takes, the bytes are fastavro's.

Decoding rejects, as `BodyError`, everything fastavro rejects, and reads what it accepts into the
same record, except bodies that are not Avro but that fastavro reads by accident. Those are
rejected because a dead letter is better than a guessed record: a negative enum or union index
(Python negative indexing in fastavro), a boolean byte other than 0 or 1 (fastavro reads True, the
Java reader False), a varint longer than 10 bytes or beyond 64 bits (fastavro wraps it), a block
count of -2**63. A negative block count followed by a byte size is valid Avro and is read, the size
ignored as fastavro and the Java reader do. An `int` is read and written with 64 bits, as fastavro
does, so our own bytes read back.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
# A union branch is taken for a value only when fastavro's union matching would take it too.
UNION_GUARDS = {
    "string": "type({v}) is str", "bytes": "type({v}) is bytes", "boolean": "type({v}) is bool",
    "long": "type({v}) is int", "int": "type({v}) is int and INT_MIN <= {v} <= INT_MAX",
    "float": "type({v}) is float", "double": "type({v}) is float", "enum": "type({v}) is str",
}


class BodyError(ValueError):
    """The bytes are not an Avro body of the schema."""


class Truncated(BodyError):
    """The body ends before the schema says it does."""


class Unsupported(TypeError):
    """A schema this module does not compile, or a value its encoder leaves to fastavro."""


# -- varints ---------------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    """The varint of an already zigzagged (non-negative) number."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_varint(n) for n in range(0x80)]
LENGTH = [_varint(n << 1) for n in range(2048)]  # most strings: a lookup, no arithmetic
_MARKS = [0] + [int.from_bytes(b"\x80" * (k - 1), "little") for k in range(1, 9)]  # continuation bits


def write_long(v: Any) -> bytes:
    """Zigzag varint of a signed 64-bit int; anything else (bool, float, out of range) is fastavro's."""
    if type(v) is not int or not LONG_MIN <= v <= LONG_MAX:
        raise Unsupported(f"{v!r} is not a 64-bit int")
    n = (v << 1) ^ (v >> 63)
    if n < 0x80:
        return _SMALL[n]
    if n >> 56:
        return _varint(n)
    # Up to 8 bytes (timestamps take 6): spread the 7-bit groups one per byte in three steps, not a
    # byte-at-a-time loop, then set the continuation bits.
    k = (n.bit_length() + 6) // 7
    n = (n & 0x0FFFFFFF) | (n & 0x00FFFFFFF0000000) << 4
    n = (n & 0x00003FFF00003FFF) | (n & 0x0FFFC0000FFFC000) << 2
    n = (n & 0x007F007F007F007F) | (n & 0x3F803F803F803F80) << 1
    return (n | _MARKS[k]).to_bytes(k, "little")


def write_length(n: int) -> bytes:
    return LENGTH[n] if n < 2048 else _varint(n << 1)


class _MapKeys(dict):
    """Map key -> its length and UTF-8 bytes. Keys repeat (rule names in explanations, criteria),
    so most are a lookup instead of an encode and a length; bounded, for keys that do not repeat."""

    def __missing__(self, key: str) -> bytes:
        if len(self) >= 4096:
            self.clear()
        data = key.encode()  # not a str: fastavro decides (AttributeError)
        self[key] = value = write_length(len(data)) + data
        return value


_MAP_KEYS = _MapKeys()


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the zigzag varint at `pos`: at most 10 bytes and 64 bits. Unrolled
    for the 6 bytes of a millisecond timestamp, in + and * (which CPython specialises for ints, and
    not | and <<); longer ones loop."""
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n = b - 0x80
    b = data[pos + 1]
    if b < 0x80:
        n += b * 0x80
        return (n >> 1) ^ -(n & 1), pos + 2
    n += (b - 0x80) * 0x80
    b = data[pos + 2]
    if b < 0x80:
        n += b * 0x4000
        return (n >> 1) ^ -(n & 1), pos + 3
    n += (b - 0x80) * 0x4000
    b = data[pos + 3]
    if b < 0x80:
        n += b * 0x200000
        return (n >> 1) ^ -(n & 1), pos + 4
    n += (b - 0x80) * 0x200000
    b = data[pos + 4]
    if b < 0x80:
        n += b * 0x10000000
        return (n >> 1) ^ -(n & 1), pos + 5
    n += (b - 0x80) * 0x10000000
    b = data[pos + 5]
    if b < 0x80:
        n += b * 0x800000000
        return (n >> 1) ^ -(n & 1), pos + 6
    n += (b - 0x80) * 0x800000000
    pos += 6
    shift = 42
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:
                raise BodyError("varint beyond 64 bits")
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift == 70:
            raise BodyError("varint longer than 10 bytes")


def read_bytes(data: bytes, pos: int, where: str) -> tuple[bytes, int]:
    """Bytes whose length the one-byte lookup did not cover: long, overlong, negative, or absurd."""
    n, pos = read_long(data, pos)
    if n < 0:
        raise BodyError(f"{where}: negative length {n}")
    if n > len(data) - pos:
        raise BodyError(f"{where}: length {n} with {len(data) - pos} bytes left")
    return data[pos:pos + n], pos + n


def read_string(data: bytes, pos: int, where: str) -> tuple[str, int]:
    value, pos = read_bytes(data, pos, where)
    return value.decode(), pos


def read_symbol(data: bytes, pos: int, symbols: tuple, where: str) -> tuple[str, int]:
    """An enum index the one-byte lookup did not cover: out of range, overlong, or >= 64."""
    i, pos = read_long(data, pos)
    if not 0 <= i < len(symbols):
        raise BodyError(f"{where}: enum index {i} out of range")
    return symbols[i], pos


def read_count(data: bytes, pos: int) -> tuple[int, int]:
    """A block count the one-byte lookup did not cover: 64 or more, or negative and followed by the
    block's size in bytes, which is skipped unused (as fastavro and the Java reader do)."""
    n, pos = read_long(data, pos)
    if n < 0:
        _, pos = read_long(data, pos)
        n = -n
    return n, pos


def bad_index(where: str, what: str, zigzagged: int) -> BodyError:
    return BodyError(f"{where}: {what} {(zigzagged >> 1) ^ -(zigzagged & 1)} out of range")


def bad_count(where: str, n: int, left: int) -> BodyError:
    if left < 0:  # a length before it ran past the end
        return Truncated("end of data")
    return BodyError(f"{where}: block of {n} items cannot fit in the {left} bytes left")


# Byte -> value for the one-byte varints that are most lengths, counts and indexes; 0, -1 or None
# sends the rest (longer, negative, overlong, out of range) to the functions above.
_LENGTH_OF = [1 + (b >> 1) if b < 0x80 and not b & 1 else 0 for b in range(256)]  # prefix included
_COUNT_OF = [b >> 1 if b < 0x80 and not b & 1 else -1 for b in range(256)]
_BOOLEAN = [False, True] + [None] * 254


def _symbol_of(symbols: list) -> list:
    return [symbols[b >> 1] if b < 0x80 and not b & 1 and b >> 1 < len(symbols) else None for b in range(256)]


# -- compiling -------------------------------------------------------------------------------------

def encoder(schema: dict) -> Callable[..., bytes] | None:
    """`encode(record, head=b"") -> head + Avro body`, or None when the schema is not covered."""
    code = _Code(schema)
    try:
        code.emit(0, "def encode(r, head=b''):")
        parts = _write(code, schema, "r", 1, code.top)
        code.emit(1, "return b''.join((", "    head,", *(f"    {part}," for part in parts), "))")
    except Unsupported:
        return None
    return code.build("encode")


def decoder(schema: dict) -> Callable[..., tuple[Any, int]] | None:
    """`decode(data, pos=0) -> (record, end position)` raising only BodyError, or None when the
    schema is not covered.

    A one-byte string or bytes length (under 64) is not checked against the end where it is read: a
    slice past the end is just short, and every later read fails, as does the final check that
    `pos` is in the data. Longer lengths are checked at once, so `pos` never runs far past it."""
    code = _Code(schema)
    try:
        code.emit(0, "def decode(data, pos=0):",
                  "    if type(data) is not bytes:", "        data = bytes(data)",
                  "    size = len(data)", "    try:")
        _read(code, schema, "rec", 2, code.top)
        code.emit(1, "except (IndexError, struct_error):", "    raise Truncated('end of data') from None",
                  "except UnicodeDecodeError as exc:", "    raise BodyError(f'invalid UTF-8: {exc.reason}') from None",
                  "if pos > size:", "    raise Truncated('end of data')", "return rec, pos")
    except Unsupported:
        return None
    return code.build("decode")


class _Code:
    """Python source being generated for one schema, and the constants it refers to."""

    def __init__(self, schema: Any):
        top = isinstance(schema, dict)
        self.named: dict[str, dict] = dict(schema.get("__named_schemas", {})) if top else {}
        self.top = schema.get("name", "value").rsplit(".", 1)[-1] if top else "value"
        self.env: dict[str, Any] = {name: globals()[name] for name in (
            "Unsupported", "BodyError", "Truncated", "write_long", "write_length", "read_long", "read_bytes",
            "read_string", "read_symbol", "read_count", "bad_index", "bad_count", "INT_MIN", "INT_MAX", "LENGTH",
        )}
        self.env.update(struct_error=struct.error, LENGTH_OF=_LENGTH_OF, COUNT_OF=_COUNT_OF, BOOLEAN=_BOOLEAN,
                        MAP_KEYS=_MAP_KEYS)
        self.lines: list[str] = []
        self.building: set[str] = set()  # records being compiled: a recursive one is not covered
        self.n = 0

    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def const(self, value: Any, stem: str = "K") -> str:
        name = self.fresh(stem)
        self.env[name] = value
        return name

    def emit(self, depth: int, *lines: str) -> None:
        self.lines.extend("    " * depth + line for line in lines)

    def kind(self, schema: Any) -> tuple[str, Any]:
        """(Avro type, definition), through named references and {"type": "long"} wrappers."""
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema, schema
            if schema in self.named:
                return self.kind(self.named[schema])
        elif isinstance(schema, list):
            return "union", schema
        elif isinstance(schema, dict) and "logicalType" not in schema:
            kind = schema.get("type")
            if kind in PRIMITIVES:
                return kind, kind
            if kind in ("record", "enum", "map", "array"):
                if "name" in schema:
                    self.named.setdefault(schema["name"], schema)
                return kind, schema
        raise Unsupported(f"schema {schema!r}")

    def min_size(self, schema: Any) -> int:
        """Fewest bytes a value takes: bounds block counts, so a corrupt count cannot loop for ever."""
        kind, s = self.kind(schema)
        if kind == "record":
            return sum(self.min_size(f["type"]) for f in s["fields"])
        return {"null": 0, "float": 4, "double": 8}.get(kind, 1)

    def union(self, s: list) -> tuple[int, int, str, Any]:
        """(null index, other index, other kind, other schema) of a [null, X] union."""
        kinds = [self.kind(branch) for branch in s]
        if len(s) != 2 or [k for k, _ in kinds].count("null") != 1:
            raise Unsupported(f"union {s!r}")
        null = 0 if kinds[0][0] == "null" else 1
        kind, schema = kinds[1 - null]
        if kind not in UNION_GUARDS:
            raise Unsupported(f"union {s!r}")
        return null, 1 - null, kind, schema

    def record(self, s: dict) -> list[list[dict]]:
        """The fields in order, runs of float/double fields grouped: one struct call per run. The
        caller discards the record from `building` once its fields are emitted."""
        if s["name"] in self.building:
            raise Unsupported(f"recursive record {s['name']}")
        self.building.add(s["name"])
        groups: list[list[dict]] = []
        for f in s["fields"]:
            floating = self.kind(f["type"])[0] in ("float", "double")
            if floating and groups and self.kind(groups[-1][0]["type"])[0] in ("float", "double"):
                groups[-1].append(f)
            else:
                groups.append([f])
        return groups

    def floats(self, schemas: list) -> str:
        return self.const(struct.Struct("<" + "".join(self.kind(s)[0][0] for s in schemas)), "S")

    def build(self, name: str) -> Callable:
        source = "\n".join(self.lines) + "\n"
        exec(compile(source, f"<avrofast {self.top}.{name}>", "exec"), self.env)
        fn = self.env[name]
        fn.source = source  # what was generated, for a reader of tracebacks
        return fn


def _write(c: _Code, schema: Any, v: str, d: int, where: str, checked: bool = True) -> list[str]:
    """Emit the statements that encode `v` (a local, or an expression used once) and return the
    expressions of its bytes, in order: the record's are joined once at the end. `checked=False`
    for map values and array items, which fastavro converts with the C double conversion that
    `struct` uses too, where a record field first goes through `float()`."""
    kind, s = c.kind(schema)
    if kind == "null":
        return []  # fastavro writes nothing for a null, whatever the value
    if kind == "boolean":
        return [f"(b'\\x01' if {v} else b'\\x00')"]  # truthiness, as fastavro's C bint
    if kind in ("int", "long"):
        return [f"write_long({v})"]
    if kind in ("float", "double"):
        if checked:
            c.emit(d, f"if type({v}) is not float:", f"    raise Unsupported({where!r})")
        return [f"{c.floats([kind])}.pack({v})"]
    if kind in ("string", "bytes"):
        x, n = c.fresh("x"), c.fresh("n")
        if kind == "string":
            c.emit(d, f"{x} = {v}.encode()")
        else:
            c.emit(d, f"{x} = {v}", f"if type({x}) is not bytes:", f"    raise Unsupported({where!r})")
        c.emit(d, f"{n} = len({x})")
        return [f"(LENGTH[{n}] if {n} < 2048 else write_length({n}))", x]
    if kind == "enum":
        index = {sym: write_long(i) for i, sym in enumerate(s["symbols"])}
        return [f"{c.const(index, 'E')}[{v}]"]
    if kind == "union":
        null, other, okind, oschema = c.union(s)
        u = c.fresh("u")
        c.emit(d, f"if {v} is None:", f"    {u} = {write_long(null)!r}", f"elif {UNION_GUARDS[okind].format(v=v)}:")
        parts = _write(c, oschema, v, d + 1, where)
        c.emit(d, f"    {u} = {' + '.join([repr(write_long(other))] + parts)}",
               "else:", f"    raise Unsupported({where!r})")
        return [u]
    if kind in ("map", "array"):
        m, k, x = c.fresh("m"), c.fresh("k"), c.fresh("x")
        c.emit(d, f"if type({v}) is not {'dict' if kind == 'map' else 'list'}:", f"    raise Unsupported({where!r})",
               f"if {v}:", f"    {m} = [write_long(len({v}))]")
        if kind == "map":
            c.emit(d + 1, f"for {k}, {x} in {v}.items():")
            parts = [f"MAP_KEYS[{k}]"] + _write(c, s["values"], x, d + 2, where + "[]", checked=False)
        else:
            c.emit(d + 1, f"for {x} in {v}:")
            parts = _write(c, s["items"], x, d + 2, where + "[]", checked=False)
            if not parts:
                raise Unsupported("array of nulls")  # as in the decoder
        c.emit(d + 2, f"{m} += ({', '.join(parts)},)")
        c.emit(d, f"    {m}.append(b'\\x00')", f"    {m} = b''.join({m})", "else:", f"    {m} = b'\\x00'")
        return [m]
    # record
    c.emit(d, f"if type({v}) is not dict:", f"    raise Unsupported({where!r})")
    parts = []
    for group in c.record(s):
        values = []
        for f in group:
            name, ftype = f["name"], f["type"]
            # fastavro's rule for a missing field: its default, or None where "null" is in the type.
            if "default" in f or "null" in ftype:
                values.append(f"{v}.get({name!r}, {c.const(f.get('default'))})")
            else:
                values.append(f"{v}[{name!r}]")
        if len(group) > 1:  # adjacent doubles: checked, then packed at once
            names = [c.fresh("f") for _ in group]
            c.emit(d, f"{', '.join(names)} = {', '.join(values)}",
                   f"if {' or '.join(f'type({n}) is not float' for n in names)}:", f"    raise Unsupported({where!r})")
            parts.append(f"{c.floats([f['type'] for f in group])}.pack({', '.join(names)})")
        elif c.kind(group[0]["type"])[0] in ("string", "int", "long", "enum"):
            parts += _write(c, group[0]["type"], values[0], d, f"{where}.{group[0]['name']}")  # used once
        else:
            name = c.fresh("f")
            c.emit(d, f"{name} = {values[0]}")
            parts += _write(c, group[0]["type"], name, d, f"{where}.{group[0]['name']}")
    c.building.discard(s["name"])
    return parts


def _read(c: _Code, schema: Any, t: str, d: int, where: str) -> None:
    """Emit code reading one value at `pos` of `data` into local `t`, advancing `pos`."""
    kind, s = c.kind(schema)
    if kind == "null":
        c.emit(d, f"{t} = None")
    elif kind == "boolean":
        c.emit(d, f"{t} = BOOLEAN[data[pos]]", f"if {t} is None:",
               f"    raise BodyError({where + ': boolean byte '!r} + str(data[pos]))", "pos += 1")
    elif kind in ("int", "long"):
        c.emit(d, f"{t} = data[pos]", f"if {t} < 0x80:", "    pos += 1", f"    {t} = ({t} >> 1) ^ -({t} & 1)",
               "else:", f"    {t}, pos = read_long(data, pos)")
    elif kind in ("float", "double"):
        c.emit(d, f"{t}, = {c.floats([kind])}.unpack_from(data, pos)", f"pos += {4 if kind == 'float' else 8}")
    elif kind in ("string", "bytes"):
        c.emit(d, "n = LENGTH_OF[data[pos]]", "if n:",
               f"    {t} = data[pos + 1:(pos := pos + n)]{'.decode()' if kind == 'string' else ''}",
               "else:", f"    {t}, pos = read_{kind}(data, pos, {where!r})")
    elif kind == "enum":
        symbols = c.const(tuple(s["symbols"]), "Y")
        c.emit(d, f"{t} = {c.const(_symbol_of(s['symbols']), 'YB')}[data[pos]]", f"if {t} is None:",
               f"    {t}, pos = read_symbol(data, pos, {symbols}, {where!r})", "else:", "    pos += 1")
    elif kind == "union":
        null, other, _, oschema = c.union(s)
        # The index compared zigzagged, as it is on the wire: an odd byte is a negative index.
        c.emit(d, f"{t} = data[pos]", f"if {t} < 0x80:", "    pos += 1",
               "else:", f"    {t}, pos = read_long(data, pos)", f"    {t} = ({t} << 1) ^ ({t} >> 63)",
               f"if {t} == {null << 1}:", f"    {t} = None", f"elif {t} == {other << 1}:")
        _read(c, oschema, t, d + 1, where)
        c.emit(d, "else:", f"    raise bad_index({where!r}, 'union index', {t})")
    elif kind in ("map", "array"):
        items = s["values" if kind == "map" else "items"]
        least = c.min_size(items) + (kind == "map")  # a map entry has a key, at least its length
        if least == 0:
            raise Unsupported("array of empty items: a corrupt count could not be bounded")
        count, k, x = c.fresh("count"), c.fresh("k"), c.fresh("x")
        read_count = [f"{count} = COUNT_OF[data[pos]]", f"if {count} < 0:", f"    {count}, pos = read_count(data, pos)",
                      "else:", "    pos += 1"]
        c.emit(d, f"{t} = {{}}" if kind == "map" else f"{t} = []", *read_count, f"while {count}:")
        c.emit(d + 1, f"if {count} * {least} > size - pos:", f"    raise bad_count({where!r}, {count}, size - pos)",
               f"for _ in range({count}):")
        if kind == "map":
            _read(c, "string", k, d + 2, where + "{}")
        _read(c, items, x, d + 2, where + "[]")
        c.emit(d + 2, f"{t}[{k}] = {x}" if kind == "map" else f"{t}.append({x})")
        c.emit(d + 1, *read_count)
    else:  # record
        names = []
        for group in c.record(s):
            names += [c.fresh("f") for _ in group]
            if len(group) == 1:
                _read(c, group[0]["type"], names[-1], d, f"{where}.{group[0]['name']}")
            else:
                fmt = c.floats([f["type"] for f in group])
                c.emit(d, f"{', '.join(names[-len(group):])} = {fmt}.unpack_from(data, pos)", f"pos += {fmt}.size")
        fields = ", ".join(f"{f['name']!r}: {n}" for f, n in zip(s["fields"], names))
        c.emit(d, f"{t} = {{{fields}}}")
        c.building.discard(s["name"])
