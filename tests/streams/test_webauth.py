"""Bearer tokens with roles (streams.webauth): the tokens file, the access policy, the aiohttp
middleware and decorator, and the wiring into a Faust app's web server (the lookup API's)."""

from __future__ import annotations

import hashlib
import logging
from types import SimpleNamespace

import faust
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams import webauth
from streams.webauth import AccessPolicy, TokenFileError, TokenStore

READ = "read-token-4b9f2c7e1d0a8b6c5d4e3f2a"
ADMIN = "admin-token-8c7d6e5f4a3b2c1d0e9f8a7b"
HASHED = "hashed-token-1a2b3c4d5e6f7a8b9c0d1e2f"


def store() -> TokenStore:
    return TokenStore.from_lines([
        "# name role token", f"crm-sync read {READ}", "", f"ops admin {ADMIN}",
        f"bi read sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}",
    ])


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_tokens_file_and_roles():
    s = store()
    assert s.authenticate(READ) == webauth.Principal("crm-sync", "read")
    assert s.authenticate(ADMIN).allows("read") and s.authenticate(ADMIN).allows("admin")
    assert s.authenticate(HASHED).name == "bi"  # the file held only its digest
    assert not s.authenticate(READ).allows("admin")
    assert s.authenticate("nope") is None and s.authenticate(None) is None and s.authenticate("") is None
    assert READ not in repr(s) and len(s) == 3


@pytest.mark.parametrize("lines,message", [
    (["a read"], "line 1: expected"),
    (["a write " + READ], "role 'write'"),
    (["a read short"], "shorter than 24"),
    ([f"a read {READ}", f"b admin {READ}"], "line 2: token 'b': the same token as 'a'"),
    (["a read sha256:abc"], "64 hex digits"),
])
def test_token_file_errors_name_the_line_never_the_token(lines, message):
    with pytest.raises(TokenFileError) as exc:
        TokenStore.from_lines(lines, "tokens")
    assert message in str(exc.value) and READ not in str(exc.value)


def test_from_file(tmp_path):
    f = tmp_path / "tokens"
    f.write_text(f"crm read {READ}\n")
    assert TokenStore.from_file(f).authenticate(READ).name == "crm"
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenStore.from_file(tmp_path / "missing")


@pytest.mark.parametrize("path,role", [
    ("/contacts/c-1", "read"), ("/health/live", None), ("/health/ready", None), ("/metrics", None),
    ("/router/", "admin"), ("/", "admin"), ("/contactsx", "admin"), ("/health", None),
])
def test_the_worker_policy(path, role):
    assert AccessPolicy().role_for(path) == role


@pytest.mark.parametrize("header,user", [
    ("Basic d2stMTIzOg==", "wk-123"), ("basic d2stMTIzOnB3", "wk-123"), ("Bearer d2stMTIzOg==", None),
    ("Basic ***", None), ("Basic", None), (None, None), ("Basic OnB3", None),
])
def test_basic_user_names(header, user):
    assert webauth.basic_username(header) == user


@pytest_asyncio.fixture(loop_scope="function")
async def faust_client():
    """A Faust app's own web server (what serves GET /contacts/{id} on a worker), wired as the
    README says: `web_application_options={"middlewares": [...]}`; no broker needed."""
    app = faust.App("webauth-test", broker="kafka://127.0.0.1:1",
                    web_application_options={"middlewares": [webauth.middleware(store())]})

    @app.page("/contacts/{contact_id}")
    class Contact(faust.web.View):
        async def get(self, request, contact_id):
            return self.json({"contact_id": contact_id, "who": webauth.principal_of(request).name})

    @app.page("/health/live")
    class Live(faust.web.View):
        async def get(self, request):
            return self.json({"status": "live"})

    app.web.init_server()
    client = TestClient(TestServer(app.web.web_app, host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


async def test_the_lookup_api_of_a_faust_app_needs_a_token(faust_client, caplog):
    caplog.set_level(logging.DEBUG)
    resp = await faust_client.get("/contacts/c-1")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="leadpulse"'
    assert "c-1" not in await resp.text()
    assert (await faust_client.get("/contacts/c-1", headers=bearer("wrong-token-000000000000000"))).status == 401
    resp = await faust_client.get("/contacts/c-1", headers=bearer(READ))
    assert resp.status == 200 and await resp.json() == {"contact_id": "c-1", "who": "crm-sync"}
    assert (await faust_client.get("/health/live")).status == 200
    assert (await faust_client.get("/router/", headers=bearer(READ))).status == 403  # Faust's own pages: admin
    assert (await faust_client.get("/router/", headers=bearer(ADMIN))).status == 200
    assert READ not in caplog.text and ADMIN not in caplog.text


async def test_the_decorator_on_a_plain_handler_and_a_view_method():
    s = store()

    @webauth.require(s, "admin")
    async def purge(request):
        return web.json_response({"ok": True})

    class View:
        @webauth.require(s, "read")
        async def get(self, request):
            return web.json_response({"who": webauth.principal_of(request).name})

    view = View()
    app = web.Application()
    app.router.add_post("/purge", purge)

    async def contact(request):
        return await view.get(request)

    app.router.add_get("/c", contact)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        assert (await c.post("/purge", headers=bearer(READ))).status == 403
        assert (await c.post("/purge", headers=bearer(ADMIN))).status == 200
        assert (await c.get("/c")).status == 401
        assert await (await c.get("/c", headers=bearer(READ))).json() == {"who": "crm-sync"}


async def test_middleware_from_settings(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"crm read {READ}\n")

    async def serve(settings):
        async def contact(request):
            return web.json_response({"id": request.match_info["id"]})

        app = web.Application(middlewares=[webauth.middleware_from_settings(settings)])
        app.router.add_get("/contacts/{id}", contact)
        return TestClient(TestServer(app, host="127.0.0.1"))

    for settings, anonymous, with_token in (
        (SimpleNamespace(api_auth="required", api_tokens_file=str(tokens)), 401, 200),
        (SimpleNamespace(api_auth="required", api_tokens_file=None), 401, 401),   # no tokens: nothing served
        (SimpleNamespace(api_auth="disabled", api_tokens_file=None), 200, 200),
    ):
        async with await serve(settings) as c:
            assert (await c.get("/contacts/x")).status == anonymous
            assert (await c.get("/contacts/x", headers=bearer(READ))).status == with_token


async def test_server_ssl_context_serves_https(tmp_path):
    """The TLS option of the collector (and of a worker, through Faust's web_ssl_context)."""
    import ssl

    import aiohttp

    from streams.localkafka import make_tls_files
    from tools.runtime import free_port

    tls = make_tls_files(tmp_path)  # a throw-away CA and a certificate for 127.0.0.1
    ctx = webauth.server_ssl_context(str(tls.keystore), str(tls.keystore))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2

    async def hello(request):
        return web.json_response({"tls": request.secure})

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        trust = ssl.create_default_context(cafile=str(tls.ca))
        async with aiohttp.ClientSession() as s:
            async with s.get(f"https://127.0.0.1:{port}/", ssl=trust) as resp:
                assert await resp.json() == {"tls": True}
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(f"https://127.0.0.1:{port}/")  # the system trust store does not know this CA
    finally:
        await runner.cleanup()


def test_a_bad_tokens_file_stops_a_worker_before_it_starts(tmp_path):
    from streams.preflight import PreflightError, check_api_tokens

    bad = tmp_path / "tokens"
    bad.write_text(f"crm reader {READ}\n")
    with pytest.raises(PreflightError) as exc:
        check_api_tokens(SimpleNamespace(api_tokens_file=str(bad)))
    assert "line 1" in str(exc.value) and "LEADPULSE_API_TOKENS_FILE" in str(exc.value)
    assert READ not in str(exc.value)
    bad.write_text(f"crm read {READ}\n")
    check_api_tokens(SimpleNamespace(api_tokens_file=str(bad)))
    check_api_tokens(SimpleNamespace(api_tokens_file=None))
