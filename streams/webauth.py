"""Authentication of leadpulse's HTTP surfaces: bearer tokens with roles for the worker's lookup
API (aiohttp underneath Faust's web server), the Authorization-header parsing the collector's
write keys use too, and TLS contexts for both servers.

Roles: `read` (score lookups: `GET /contacts/{id}` carries contact ids, personal data) and `admin`
(everything, including Faust's own pages); `admin` implies `read`. A path needs no token, `read`
or `admin` by an `AccessPolicy`: the first rule whose prefix matches decides, unlisted paths need
`admin` (default deny).

Tokens file (`LEADPULSE_API_TOKENS_FILE`), one token a line, `#` comments:

    <name> <role> <token>              e.g.  crm-sync read 3b1f...            (at least 24 characters)
    <name> <role> sha256:<hex digest>  the file then holds no usable token: sha256 of the token

Tokens are looked up by their SHA-256 digest (what a timing difference could leak is about the
digest of the guess, not about a stored token); a token
never appears in a log line, an error or a repr, only the token's name does.

Wiring (aiohttp): `web.Application(middlewares=[middleware(store, policy)])`; for one handler,
`@require(store, "read")`. Faust: `faust.App(..., web_application_options={"middlewares":
[middleware_from_settings(settings)]})` (see the README, "Authentication of the lookup API").
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from aiohttp import web

log = logging.getLogger("leadpulse.webauth")

ROLES = ("read", "admin")
MIN_TOKEN_CHARS = 24
#: The worker's paths: health and metrics stay open (probes, Prometheus; no personal data), score
#: and account lookups need `read`, anything else (Faust's /router, /table... pages) `admin`.
WORKER_RULES: tuple[tuple[str, str | None], ...] = (
    ("/health/", None), ("/metrics", None), ("/contacts/", "read"), ("/accounts/", "read"),
)


class TokenFileError(ValueError):
    """The tokens file cannot be used; names the file and the line, never a token."""


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to."""

    name: str
    role: str

    def allows(self, role: str | None) -> bool:
        return role is None or self.role == "admin" or self.role == role


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class TokenStore:
    """Bearer tokens by SHA-256 digest."""

    _by_digest: dict[bytes, Principal] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"TokenStore({len(self._by_digest)} tokens)"

    def add(self, name: str, role: str, token: str | None = None, *, sha256_hex: str | None = None) -> None:
        if role not in ROLES:
            raise TokenFileError(f"token {name!r}: role {role!r}, expected one of {', '.join(ROLES)}")
        if sha256_hex is not None:
            try:
                digest = bytes.fromhex(sha256_hex)
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise TokenFileError(f"token {name!r}: sha256: needs 64 hex digits")
        else:
            if token is None or len(token) < MIN_TOKEN_CHARS:
                raise TokenFileError(f"token {name!r}: shorter than {MIN_TOKEN_CHARS} characters "
                                     f"(make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
            digest = _digest(token)
        if digest in self._by_digest:
            raise TokenFileError(f"token {name!r}: the same token as {self._by_digest[digest].name!r}")
        self._by_digest[digest] = Principal(name, role)

    @classmethod
    def from_lines(cls, lines: Iterable[str], origin: str = "tokens") -> "TokenStore":
        store = cls()
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3:
                raise TokenFileError(f"{origin} line {n}: expected `<name> <role> <token>` (3 fields, got {len(parts)})")
            name, role, secret = parts
            try:
                if secret.startswith("sha256:"):
                    store.add(name, role, sha256_hex=secret[len("sha256:"):])
                else:
                    store.add(name, role, secret)
            except TokenFileError as exc:
                raise TokenFileError(f"{origin} line {n}: {exc}") from None
        return store

    @classmethod
    def from_file(cls, path: str | Path) -> "TokenStore":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise TokenFileError(f"tokens file {path}: cannot read it ({reason})") from None
        return cls.from_lines(text.splitlines(), f"tokens file {path}")

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        # A lookup by digest: what a timing difference could reveal is about the digest of the
        # guess, which says nothing about a stored token.
        return self._by_digest.get(_digest(token))

    def __len__(self) -> int:
        return len(self._by_digest)


@dataclass(frozen=True)
class AccessPolicy:
    """Which role each path needs (None: no token). First matching prefix wins; else `default`."""

    rules: tuple[tuple[str, str | None], ...] = WORKER_RULES
    default: str | None = "admin"

    def role_for(self, path: str) -> str | None:
        for prefix, role in self.rules:
            if path == prefix.rstrip("/") or path.startswith(prefix):
                return role
        return self.default


#: Where an authenticated request keeps its Principal (aiohttp's typed request key when it has one).
PRINCIPAL: Any = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"


def principal_of(request: Any) -> Principal | None:
    """Who the request was authenticated as (None on an open path)."""
    return request.get(PRINCIPAL)


# -- Authorization header --------------------------------------------------------------------------

def credentials(header: str | None, scheme: str) -> str | None:
    """The credentials of an `Authorization: <scheme> <credentials>` header, else None."""
    if not header:
        return None
    got, _, value = header.strip().partition(" ")
    if got.lower() != scheme.lower() or not value.strip():
        return None
    return value.strip()


def basic_username(header: str | None) -> str | None:
    """The user name of HTTP Basic credentials (Segment: the write key, with an empty password)."""
    raw = credentials(header, "Basic")
    if raw is None:
        return None
    try:
        decoded = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


# -- aiohttp -----------------------------------------------------------------------------------------

def _refusal(status: int, error: str, realm: str):
    headers = {"WWW-Authenticate": f'Bearer realm="{realm}"'} if status == 401 else {}
    return web.json_response({"error": error}, status=status, headers=headers)


def check(request: Any, store: TokenStore, role: str | None, realm: str = "leadpulse"):
    """None when the request may go on (and `principal_of(request)` says who), else the 401/403."""
    if role is None:
        return None
    principal = store.authenticate(credentials(request.headers.get("Authorization"), "Bearer"))
    if principal is None:
        return _refusal(401, "a bearer token is required (Authorization: Bearer <token>)", realm)
    if not principal.allows(role):
        log.info("webauth: token %r (role %s) refused on %s: needs %s", principal.name, principal.role,
                 request.path, role)
        return _refusal(403, f"the token's role ({principal.role}) does not allow this; it needs {role}", realm)
    request[PRINCIPAL] = principal
    return None


def middleware(store: TokenStore, policy: AccessPolicy = AccessPolicy(), realm: str = "leadpulse"):
    """An aiohttp middleware enforcing `policy` on every request (CORS preflights pass: they carry
    no credentials by design and answer nothing)."""

    @web.middleware
    async def bearer_auth(request, handler):
        if request.method != "OPTIONS":
            refused = check(request, store, policy.role_for(request.path), realm)
            if refused is not None:
                return refused
        return await handler(request)

    return bearer_auth


def require(store: TokenStore, role: str, realm: str = "leadpulse"):
    """A decorator for one handler: an aiohttp `handler(request)` or a Faust View method
    `get(self, request, ...)` (the first argument that is a request is checked)."""

    def wrap(fn: Callable[..., Awaitable[Any]]):
        @functools.wraps(fn)
        async def guarded(*args, **kwargs):
            request = next((a for a in args if hasattr(a, "headers") and hasattr(a, "path")), None)
            if request is None:
                raise TypeError("webauth.require: the handler got no request")
            refused = check(request, store, role, realm)
            if refused is not None:
                return refused
            return await fn(*args, **kwargs)

        return guarded

    return wrap


def middleware_from_settings(settings: Any):
    """The worker's middleware from `Settings`: tokens from `LEADPULSE_API_TOKENS_FILE`, the worker
    policy. `LEADPULSE_API_AUTH=disabled` lets everything through (and says so in the log); with
    `required` (the default) and no tokens file, every path that needs a role answers 401."""
    if settings.api_auth == "disabled":
        log.warning("webauth: LEADPULSE_API_AUTH=disabled: the lookup API answers without a token")

        @web.middleware
        async def open_access(request, handler):
            return await handler(request)

        return open_access
    store = TokenStore.from_file(settings.api_tokens_file) if settings.api_tokens_file else TokenStore()
    if not len(store):
        log.warning("webauth: no API tokens (LEADPULSE_API_TOKENS_FILE): score lookups answer 401")
    return middleware(store, AccessPolicy())


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) from PEM certificate chain and key files."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
