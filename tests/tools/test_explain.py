"""`leadpulse explain` against a canned HTTP server: formatting and every error path.
(The real thing, a worker fed by `simulate`, is in test_roundtrip.py.)"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.tools.conftest import one_error_line
from tools.runtime import free_port

ANSWER = {
    "contact_id": "alice", "at": 1_735_689_600_000, "score": 72.5, "engagement": 49.5, "fit": 23.0, "grade": "A",
    "temperature": "hot", "stage": "mql",
    "explanation": {"fit": 23.0, "email_open": 0.5, "demo_request": 30.0, "unsubscribe": -25.0, "webinar_attended": 44.0},
    "rules_version": "2024.11-default-1",
}


TOKEN = "read-token-0123456789abcdefghij"


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        status, body = self.routes.get(self.path, (404, json.dumps({"error": "unknown contact"})))
        if self.path == "/contacts/guarded" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            status, body = 401, json.dumps({"error": "a bearer token is required"})
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.routes = {
        "/contacts/alice": (200, json.dumps(ANSWER)),
        "/contacts/with%20space": (200, json.dumps({**ANSWER, "contact_id": "with space"})),
        "/contacts/broken": (500, json.dumps({"error": "table not ready"})),
        "/contacts/html": (200, "<html>hello</html>"),
        "/contacts/other": (200, json.dumps({"hello": "world"})),
        "/contacts/guarded": (200, json.dumps({**ANSWER, "contact_id": "guarded"})),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_human_output_sorted_by_magnitude(cli, server):
    rc, out, err = cli("explain", "alice", "--url", server)
    assert rc == 0 and err == ""
    assert "score 72.5" in out and "hot" in out and "mql" in out and "grade A" in out
    rows = [ln.split()[0] for ln in out.splitlines() if ln.strip() and ln.split()[0] in ANSWER["explanation"]]
    assert rows == ["webinar_attended", "demo_request", "unsubscribe", "fit", "email_open"]
    assert "-25.00" in out and "+44.00" in out


def test_json_is_passed_through(cli, server):
    rc, out, _ = cli("explain", "alice", "--url", server, "--json")
    assert rc == 0
    assert out == json.dumps(ANSWER) + "\n"


def test_ids_are_url_encoded(cli, server):
    rc, out, _ = cli("explain", "with space", "--url", server, "--json")
    assert rc == 0 and json.loads(out)["contact_id"] == "with space"


def test_default_url_from_the_environment(cli, server, monkeypatch):
    host, port = server.removeprefix("http://").split(":")
    monkeypatch.setenv("LEADPULSE_WEB_HOST", host)
    monkeypatch.setenv("LEADPULSE_WEB_PORT", port)
    assert cli("explain", "alice", "--json")[0] == 0


def test_unknown_contact(cli, server):
    rc, out, err = cli("explain", "nobody", "--url", server)
    assert rc == 1 and out == ""
    assert one_error_line(err) == f"leadpulse: error: unknown contact 'nobody' (worker at {server})"


@pytest.mark.parametrize("contact, message", [
    ("broken", "answered HTTP 500 Internal Server Error: table not ready"),
    ("html", "the answer is not JSON"),
    ("other", "the answer lacks contact_id"),
])
def test_bad_answers(cli, server, contact, message):
    rc, _, err = cli("explain", contact, "--url", server)
    assert rc == 2
    assert message in one_error_line(err)


def test_unreachable_worker_is_one_line_exit_2(cli):
    url = f"http://127.0.0.1:{free_port()}"
    rc, out, err = cli("explain", "alice", "--url", url)
    assert rc == 2 and out == ""
    assert one_error_line(err).startswith(f"leadpulse: error: cannot reach the worker at {url}: ")


def test_unreachable_worker_through_the_entry_point(tmp_path):
    """The installed entry point, in a real process: one line, no traceback, exit 2."""
    import subprocess
    import sys

    url = f"http://127.0.0.1:{free_port()}"
    p = subprocess.run([sys.executable, "-m", "tools.cli", "explain", "alice", "--url", url],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert one_error_line(p.stderr).startswith("leadpulse: error: cannot reach the worker")


def test_bad_url(cli):
    rc, _, err = cli("explain", "alice", "--url", "ftp://x")
    assert rc == 2
    assert "expected http://HOST:PORT" in one_error_line(err)


def test_a_lookup_api_that_needs_a_token(cli, server, monkeypatch):
    monkeypatch.delenv("LEADPULSE_API_TOKEN", raising=False)
    rc, out, err = cli("explain", "guarded", "--url", server)
    assert rc == 2 and "HTTP 401" in one_error_line(err) and "LEADPULSE_API_TOKEN" in err
    monkeypatch.setenv("LEADPULSE_API_TOKEN", TOKEN)
    rc, out, err = cli("explain", "guarded", "--url", server, "--json")
    assert rc == 0 and json.loads(out)["contact_id"] == "guarded" and TOKEN not in out + err
