"""A fast writer of Avro object container files for the few schema shapes leadpulse produces.

fastavro interprets the schema for every datum (~10 µs a record for our wrapper); `simulate` writes
millions of records whose strings, enums and property maps repeat endlessly.  This writer compiles
the schema once into encoder closures and caches the encodings of repeated values (contact ids,
sources, property maps shared by many events), which makes it several times faster.

It produces exactly what `fastavro.writer` produces for the same records, metadata, codec and sync
marker — same header (written by fastavro itself), same block boundaries (a block is closed once it
holds >= 16,000 bytes), same block encoding — and the tests hold it to that, byte for byte.

Supported: records, string, bytes, int, long, boolean, float, double, enum, null, unions of null and
one other type, maps and arrays of these; named types referenced by name.  Anything else raises
`NotImplementedError` at compile time, so a schema change can never silently write garbage.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, BinaryIO, Callable, Iterable

import fastavro

SYNC_INTERVAL = 16_000  # fastavro's default (1000 * sync marker size)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints by 14-bit slices: a full varint below 2**14, and two continued 7-bit groups.
_VAR14 = [_varint(n) for n in range(1 << 14)]
_CONT14 = [bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(1 << 14)]


def zigzag(v: int) -> bytes:
    """Avro `long`/`int`: zig-zag, then base-128 varint (table driven: epoch-ms timestamps are 6 bytes)."""
    n = (v << 1) ^ (v >> 63)
    if n < 16384:
        return _VAR14[n]
    lo = n & 16383
    n >>= 14
    if n < 16384:
        return _CONT14[lo] + _VAR14[n]
    mid = n & 16383
    n >>= 14
    if n < 16384:
        return _CONT14[lo] + _CONT14[mid] + _VAR14[n]
    return _CONT14[lo] + _CONT14[mid] + _varint(n)


Encoder = Callable[[Any], bytes]


class _Compiler:
    def __init__(self, nocache: frozenset[str]):
        self.named: dict[str, Any] = {}
        self.nocache = nocache

    def compile(self, schema, field: str = "") -> Encoder:
        if isinstance(schema, str):
            if schema in self.named:
                return self.named[schema]
            return self.primitive(schema, field)
        if isinstance(schema, list):
            return self.union(schema, field)
        t = schema["type"]
        if t == "record":
            return self.record(schema)
        if t == "enum":
            return self.enum(schema)
        if t == "map":
            return self.map(schema["values"], field)
        if t == "array":
            return self.array(schema["items"], field)
        if isinstance(t, str) and t in ("string", "bytes", "int", "long", "boolean", "float", "double", "null"):
            return self.primitive(t, field)
        raise NotImplementedError(f"avrofile: unsupported schema {schema!r}")

    def _name(self, schema) -> str:
        name = schema["name"]
        ns = schema.get("namespace")
        return f"{ns}.{name}" if ns and "." not in name else name

    def primitive(self, t: str, field: str) -> Encoder:
        if t == "string":
            if field in self.nocache:
                def enc_str(v: str) -> bytes:
                    b = v.encode()
                    return zigzag(len(b)) + b
                return enc_str
            cache: dict[str, bytes] = {}

            def enc_str_cached(v: str) -> bytes:
                b = cache.get(v)
                if b is None:
                    raw = v.encode()
                    b = zigzag(len(raw)) + raw
                    if len(cache) > 500_000:
                        cache.clear()
                    cache[v] = b
                return b
            return enc_str_cached
        if t == "bytes":
            return lambda v: zigzag(len(v)) + bytes(v)
        if t in ("int", "long"):
            return zigzag
        if t == "boolean":
            return lambda v: b"\x01" if v else b"\x00"
        if t == "float":
            return struct.Struct("<f").pack
        if t == "double":
            return struct.Struct("<d").pack
        if t == "null":
            return lambda v: b""
        raise NotImplementedError(f"avrofile: unsupported type {t!r}")

    def record(self, schema) -> Encoder:
        # Generated straight-line code: one call per field, no loop (the record is the hot path).
        # A forward reference (recursive type) goes through `impl`, filled in below.
        impl: list[Encoder] = []

        def enc_record(rec) -> bytes:
            return impl[0](rec)

        self.named[self._name(schema)] = enc_record
        self.named[schema["name"]] = enc_record
        env = {f"f{i}": self.compile(fd["type"], fd["name"]) for i, fd in enumerate(schema["fields"])}
        body = "b''.join((" + "".join(f"f{i}(rec[{fd['name']!r}]), " for i, fd in enumerate(schema["fields"])) + "))"
        exec(f"def enc(rec):\n    return {body}\n", env)  # noqa: S102 - names come from the schema, quoted by repr
        impl.append(env["enc"])
        return env["enc"]

    def enum(self, schema) -> Encoder:
        table = {s: zigzag(i) for i, s in enumerate(schema["symbols"])}

        def enc_enum(v: str) -> bytes:
            try:
                return table[v]
            except KeyError:
                raise ValueError(f"{v!r} is not a symbol of enum {schema['name']}") from None

        self.named[self._name(schema)] = enc_enum
        self.named[schema["name"]] = enc_enum
        return enc_enum

    def union(self, branches: list, field: str) -> Encoder:
        if len(branches) != 2 or "null" not in branches:
            raise NotImplementedError(f"avrofile: only [null, T] unions are supported, not {branches!r}")
        i = 1 - branches.index("null")
        inner = self.compile(branches[i], field)
        null, some = zigzag(branches.index("null")), zigzag(i)

        def enc_optional(v) -> bytes:
            if v is None:
                return null
            if v.__class__ is tuple:  # fastavro's tuple notation: (type name, value)
                v = v[1]
            return some + inner(v)
        return enc_optional

    def map(self, values, field: str) -> Encoder:
        key = self.primitive("string", "")
        val = self.compile(values, field)
        memo: dict[int, tuple[dict, bytes]] = {}

        def enc_map(m: dict) -> bytes:
            if not m:
                return b"\x00"
            hit = memo.get(id(m))
            if hit is not None and hit[0] is m:  # the very same dict (shared property maps)
                return hit[1]
            b = zigzag(len(m)) + b"".join([key(k) + val(v) for k, v in m.items()]) + b"\x00"
            if len(memo) > 100_000:
                memo.clear()
            memo[id(m)] = (m, b)
            return b
        return enc_map

    def array(self, items, field: str) -> Encoder:
        item = self.compile(items, field)
        return lambda a: (zigzag(len(a)) + b"".join([item(x) for x in a]) + b"\x00") if a else b"\x00"


def compile_schema(schema, nocache: Iterable[str] = ()) -> Encoder:
    """An encoder `datum -> Avro binary` for `schema` (a plain JSON schema, not a parsed one).

    Map values are memoised by identity: do not mutate a dict after it has been written."""
    return _Compiler(frozenset(nocache)).compile(schema)


def header(schema, metadata: dict[str, str], codec: str, sync_marker: bytes) -> bytes:
    """The container header, written by fastavro itself (no records)."""
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [], codec=codec, sync_marker=sync_marker, metadata=metadata)
    return buf.getvalue()


def write(fh: BinaryIO, schema, encoded: Iterable[bytes], *, metadata: dict[str, str], sync_marker: bytes,
          codec: str = "null", on_block: Callable[[int], None] | None = None) -> int:
    """Write a container of already-encoded data; returns the number of records written."""
    if codec not in ("null", "deflate"):
        raise NotImplementedError(f"avrofile: codec {codec!r}")
    if len(sync_marker) != 16:
        raise ValueError("the sync marker must be 16 bytes")
    fh.write(header(schema, metadata, codec, sync_marker))
    parts: list[bytes] = []
    size = count = total = 0

    def dump() -> None:
        data = b"".join(parts)
        if codec == "deflate":
            data = zlib.compress(data)[2:-1]
        fh.write(zigzag(count) + zigzag(len(data)) + data + sync_marker)

    for b in encoded:
        parts.append(b)
        size += len(b)
        count += 1
        if size >= SYNC_INTERVAL:
            dump()
            total += count
            if on_block:
                on_block(count)
            parts.clear()
            size = count = 0
    if count:
        dump()
        total += count
        if on_block:
            on_block(count)
    return total


def compile_tagged(schema, tag: str = "kind", nocache: Iterable[str] = ()) -> dict[str, Encoder]:
    """Encoders for a "tagged" wrapper record: an enum field `tag` whose symbols name the record's
    other fields, each optional (`[null, T]`); exactly the field named by the tag is set.

    Returns symbol -> encoder of the *inner* value to the encoding of the whole wrapper record, so
    no wrapper dict is built per datum."""
    comp = _Compiler(frozenset(nocache))
    fields = schema["fields"]
    names = [f["name"] for f in fields]
    if names[0] != tag:
        raise NotImplementedError(f"avrofile: the tag {tag!r} must be the first field")
    symbols = fields[0]["type"]["symbols"]
    enum_enc = comp.compile(fields[0]["type"], tag)
    out: dict[str, Encoder] = {}
    optional = fields[1:]
    for f in optional:
        if not (isinstance(f["type"], list) and len(f["type"]) == 2 and "null" in f["type"]):
            raise NotImplementedError(f"avrofile: field {f['name']!r} of the tagged record must be [null, T]")
    encs = {f["name"]: comp.compile(f["type"][1 - f["type"].index("null")], f["name"]) for f in optional}
    for sym in symbols:
        if sym not in encs:
            raise NotImplementedError(f"avrofile: tag symbol {sym!r} names no field")
        before, after = [], []
        seen = False
        for f in optional:
            n, null_i = f["name"], f["type"].index("null")
            if n == sym:
                seen = True
                continue
            (after if seen else before).append(zigzag(null_i))
        own = [f for f in optional if f["name"] == sym][0]
        prefix = enum_enc(sym) + b"".join(before) + zigzag(1 - own["type"].index("null"))
        suffix = b"".join(after)
        inner = encs[sym]
        out[sym] = (lambda inner, prefix, suffix: lambda v: prefix + inner(v) + suffix)(inner, prefix, suffix)
    return out
