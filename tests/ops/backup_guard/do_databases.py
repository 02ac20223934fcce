"""A loopback stand-in for DigitalOcean's managed-database API (the calls the fork makes).

Shapes from pydo's generated operations (venv pydo/operations/_operations.py, built from
digitalocean/openapi): ``GET /v2/databases`` -> ``{"databases": [cluster]}``; ``POST
/v2/databases`` -> 201 ``{"database": cluster}`` with ``status`` "creating"; ``GET
/v2/databases/{id}`` -> ``{"database": cluster}``; ``GET .../backups`` -> ``{"backups":
[{created_at, size_gigabytes}]}``; ``GET|PUT .../firewall`` -> ``{"rules": [...]}`` / 204.
Errors are ``{"id", "message"}``; a wrong bearer token is 401. Every request is recorded
(method, path, JSON body, the Authorization header) so tests can say what touched what.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "dop_v1_" + "c" * 64  # never a real token: tests assert it is never printed


@dataclass
class Request:
    method: str
    path: str
    body: Any
    authorization: str


@dataclass
class DatabasesState:
    clusters: list[dict[str, Any]] = field(default_factory=list)
    backups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    firewalls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reads_until_online: int = 2  # GETs of a new cluster before it says "online"
    keep_rules_on_create: bool = True  # False: a create that drops `rules` (the command sets them)
    requests: list[Request] = field(default_factory=list)
    _reads: dict[str, int] = field(default_factory=dict)

    def cluster(self, cluster_id: str) -> dict[str, Any] | None:
        return next((c for c in self.clusters if c["id"] == cluster_id), None)


def live_cluster(name: str = "bankflow-scaled-db") -> dict[str, Any]:
    cluster_id = str(uuid.uuid4())
    return {
        "id": cluster_id, "name": name, "engine": "pg", "version": "15", "region": "nyc3",
        "size": "db-s-2vcpu-4gb", "num_nodes": 2, "status": "online", "tags": ["stack-scaled"],
        "private_network_uuid": "c33931f2-a26a-4e61-b85c-4e95a2ec431b",
        "private_connection": {"host": f"private-{name}.db.ondigitalocean.com", "port": 25060},
    }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    state: DatabasesState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        authorization = self.headers.get("Authorization", "")
        self.state.requests.append(Request(self.command, self.path, body, authorization))
        return body

    def _send(self, status: int, document: Any = None) -> None:
        data = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"id": "Unauthorized", "message": "Unable to authenticate you"})
            return False
        return True

    def _parts(self) -> list[str]:
        return [p for p in self.path.split("?")[0].split("/") if p]

    def do_GET(self) -> None:
        self._record()
        if not self._authorized():
            return
        parts = self._parts()
        if parts == ["v2", "databases"]:
            return self._send(200, {"databases": self.state.clusters})
        cluster = self.state.cluster(parts[2]) if len(parts) >= 3 else None
        if cluster is None:
            return self._send(404, {"id": "not_found", "message": "The resource could not be found."})
        if len(parts) == 3:
            reads = self.state._reads[cluster["id"]] = self.state._reads.get(cluster["id"], 0) + 1
            if cluster["status"] == "creating" and reads >= self.state.reads_until_online:
                cluster["status"] = "online"
            return self._send(200, {"database": cluster})
        if parts[3] == "backups":
            return self._send(200, {"backups": self.state.backups.get(cluster["id"], [])})
        if parts[3] == "firewall":
            return self._send(200, {"rules": self.state.firewalls.get(cluster["id"], [])})
        return self._send(404, {"id": "not_found", "message": "no such path"})

    def do_POST(self) -> None:
        body = self._record()
        if not self._authorized():
            return
        if self._parts() != ["v2", "databases"] or not isinstance(body, dict):
            return self._send(404, {"id": "not_found", "message": "no such path"})
        if any(c["name"] == body.get("name") for c in self.state.clusters):
            return self._send(422, {"id": "unprocessable_entity", "message": "name is already in use"})
        host = f"private-{body['name']}.db.ondigitalocean.com"
        cluster = {**body, "id": str(uuid.uuid4()), "status": "creating",
                   "private_connection": {"host": host, "port": 25060}}
        cluster.pop("rules", None)
        cluster.pop("backup_restore", None)
        self.state.clusters.append(cluster)
        rules = body.get("rules") or [] if self.state.keep_rules_on_create else []
        self.state.firewalls[cluster["id"]] = [dict(r) for r in rules]
        return self._send(201, {"database": cluster})

    def do_PUT(self) -> None:
        body = self._record()
        if not self._authorized():
            return
        parts = self._parts()
        cluster = self.state.cluster(parts[2]) if len(parts) == 4 and parts[3] == "firewall" else None
        if cluster is None or not isinstance(body, dict):
            return self._send(404, {"id": "not_found", "message": "no such path"})
        self.state.firewalls[cluster["id"]] = [dict(r) for r in body.get("rules") or []]
        return self._send(204)

    def do_DELETE(self) -> None:  # the fork never deletes: make any attempt loud
        self._record()
        self._send(405, {"id": "method_not_allowed", "message": "the stand-in refuses deletes"})


@contextmanager
def databases_api(state: DatabasesState) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
