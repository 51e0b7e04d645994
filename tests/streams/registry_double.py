"""A TEST DOUBLE of a Confluent-compatible Schema Registry, for unit tests only (never for the kafka
tests, which use the real Apicurio Registry of the `schema_registry_url` fixture).

It serves the two calls leadpulse makes, as Confluent documents them: `POST /subjects/{s}/versions`
(register; the same schema text gets the same id in every subject) and `GET /schemas/ids/{id}`
(`schemaType` left out for Avro, 404 with error_code 40403 for an unknown id). A test can put any
answer in place of the spec's (`answer_with`) to play a registry that is down, slow, or answers a
JSON Schema or Protobuf schema, and reads what was asked in `requests`."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Answer:
    status: int
    body: bytes | dict | list | None = None
    delay_s: float = 0.0


@dataclass
class Asked:
    method: str
    path: str
    body: dict | None
    authorization: str | None


@dataclass
class RegistryDouble:
    schemas: dict[int, dict] = field(default_factory=dict)  # id -> {"schema": ..., "schemaType"?: ...}
    subjects: dict[str, list[int]] = field(default_factory=dict)
    requests: list[Asked] = field(default_factory=list)
    override: Callable[[Asked], Answer | None] | None = None

    def __post_init__(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                asked = Asked(self.command, self.path, json.loads(raw) if raw else None,
                              self.headers.get("Authorization"))
                double.requests.append(asked)
                answer = (double.override(asked) if double.override else None) or double.spec_answer(asked)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                body = answer.body
                data = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            do_GET = do_POST = _serve

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, schema: dict) -> int:
        """Put a schema answer in place under the next id, as another producer would have."""
        schema_id = max(self.schemas, default=0) + 1
        self.schemas[schema_id] = schema
        return schema_id

    def answer_with(self, fn: Callable[[Asked], Answer | None]) -> None:
        self.override = fn

    def spec_answer(self, asked: Asked) -> Answer:
        parts = asked.path.split("?")[0].strip("/").split("/")
        if asked.method == "POST" and len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            text = asked.body["schema"]
            for sid, known in self.schemas.items():
                if known["schema"] == text and known.get("schemaType", "AVRO") == asked.body.get("schemaType", "AVRO"):
                    break
            else:
                sid = self.add({"schema": text, **({"schemaType": asked.body["schemaType"]}
                                                   if asked.body.get("schemaType", "AVRO") != "AVRO" else {})})
            versions = self.subjects.setdefault(parts[1], [])
            if sid not in versions:
                versions.append(sid)
            return Answer(200, {"id": sid})
        if asked.method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            known = self.schemas.get(int(parts[2]))
            if known is None:
                return Answer(404, {"error_code": 40403, "message": f"Schema {parts[2]} not found"})
            return Answer(200, known)
        return Answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
