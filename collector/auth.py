"""Segment write keys: which source a request comes from. A write key is a secret (whoever has it
can write events as that source): kept only as a SHA-256 digest, never logged; errors and metrics
name the source.

File (`LEADPULSE_COLLECTOR_WRITE_KEYS_FILE`), one key a line, `#` comments:

    website  8f2c0a6b1e9d4c7f...       <source name> <write key>  (keys: at least 16 characters)

or `LEADPULSE_COLLECTOR_WRITE_KEYS=website:8f2c...,backend:41d0...`. The source name is stamped
on every record (`source`) and labels the metrics.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable

from streams.settings import CollectorSettings
from streams.webauth import basic_username

MIN_KEY_CHARS = 16
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RESERVED = ("hubspot", "mautic")  # the webhook adapters' source names


class WriteKeyError(ValueError):
    """The write keys cannot be used; names the file and line or the source, never a key."""


class WriteKeys:
    def __init__(self) -> None:
        self._sources: dict[bytes, str] = {}

    def __repr__(self) -> str:
        return f"WriteKeys(sources={sorted(set(self._sources.values()))})"

    def add(self, source: str, key: str) -> None:
        if not SOURCE_NAME.fullmatch(source):
            raise WriteKeyError(f"source name {source!r}: letters, digits, '_', '.', '-' (at most 64)")
        if source in RESERVED:
            raise WriteKeyError(f"source name {source!r} is reserved for its webhook adapter")
        if "CHANGE-ME" in key.upper():
            raise WriteKeyError(f"the write key of source {source!r} is a placeholder (CHANGE-ME): put a real key "
                                f"in the Secret (python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        if len(key) < MIN_KEY_CHARS:
            raise WriteKeyError(f"the write key of source {source!r} is shorter than {MIN_KEY_CHARS} characters")
        digest = hashlib.sha256(key.encode()).digest()
        if digest in self._sources:
            raise WriteKeyError(f"source {source!r} has the same write key as {self._sources[digest]!r}")
        self._sources[digest] = source

    @classmethod
    def from_lines(cls, lines: Iterable[str], origin: str) -> "WriteKeys":
        keys = cls()
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise WriteKeyError(f"{origin} line {n}: expected `<source name> <write key>`")
            try:
                keys.add(*parts)
            except WriteKeyError as exc:
                raise WriteKeyError(f"{origin} line {n}: {exc}") from None
        return keys

    @classmethod
    def from_settings(cls, s: CollectorSettings) -> "WriteKeys":
        if s.write_keys_file:
            try:
                text = Path(s.write_keys_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
                raise WriteKeyError(f"LEADPULSE_COLLECTOR_WRITE_KEYS_FILE={s.write_keys_file!r}: cannot read it "
                                    f"({reason})") from None
            return cls.from_lines(text.splitlines(), f"write keys file {s.write_keys_file}")
        keys = cls()
        if s.write_keys is not None:
            for n, item in enumerate(s.write_keys.reveal().split(","), 1):
                source, sep, key = item.strip().partition(":")
                if not sep:
                    raise WriteKeyError(f"LEADPULSE_COLLECTOR_WRITE_KEYS item {n}: expected `<source name>:<write key>`")
                try:
                    keys.add(source.strip(), key.strip())
                except WriteKeyError as exc:
                    raise WriteKeyError(f"LEADPULSE_COLLECTOR_WRITE_KEYS item {n}: {exc}") from None
        return keys

    def source_of(self, key: str | None) -> str | None:
        """The source a write key belongs to, or None (a lookup by digest: see streams.webauth)."""
        if not key:
            return None
        return self._sources.get(hashlib.sha256(key.encode()).digest())

    def source_of_header(self, authorization: str | None) -> str | None:
        """Segment's way: HTTP Basic, the write key as user name, an empty password."""
        return self.source_of(basic_username(authorization))

    def sources(self) -> list[str]:
        return sorted(set(self._sources.values()))

    def __len__(self) -> int:
        return len(self._sources)
