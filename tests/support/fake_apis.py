"""One HTTP server on loopback answering like DigitalOcean's and Cloudflare's APIs, for doctor.

DigitalOcean under ``/v2/...``, Cloudflare under ``/client/v4/...``; both check the bearer token
as the real APIs do. The state is plain data a test edits before (or while) the server runs.
Shapes, per endpoint, and where they come from:

- DigitalOcean ``GET /v2/account``: ``{"account": {...}}`` (digitalocean/openapi
  specification/resources/account/models/account.yml: droplet_limit, floating_ip_limit, email,
  uuid, email_verified, status active|warning|locked, status_message, team).
- ``GET /v2/vpcs``: ``{"vpcs": [...], "links": {"pages": {"next": URL}}, "meta": {"total": N}}``
  (resources/vpcs/responses/all_vpcs.yml; vpc.yml: id, urn, name, region, ip_range, default,
  created_at; shared/pages.yml for ``links.pages``). ``/v2/actions``, ``/v2/images``,
  ``/v2/regions``, ``/v2/sizes`` answer the same list envelope under their own key.
- DigitalOcean errors: ``{"id": ..., "message": ...}`` (shared/models/error.yml); 401
  ``Unauthorized``/"Unable to authenticate you", 403 for a scope the token lacks ("Scopes for API
  Tokens": a custom-scoped token gets 403 on an endpoint outside its scopes).
- Cloudflare envelope: ``{"success", "errors": [{"code", "message"}], "messages", "result",
  "result_info": {"page", "per_page", "count", "total_count", "total_pages"}}`` (Cloudflare API
  v4 reference; the same fields in Cloudflare's generated SDK types).
- ``GET /client/v4/user/tokens/verify``: result ``{"id", "status": active|disabled|expired,
  "expires_on"?, "not_before"?}``; an unknown token is HTTP 401, error code 1000 "Invalid API
  Token".
- ``GET /client/v4/zones?name=``: result ``[zone]`` with ``id``, ``name``, ``status``,
  ``permissions`` ("Available permissions on the zone for the current user").
- ``GET /client/v4/zones/{id}/dns_records``: result ``[record]`` with ``id``, ``name`` (FQDN),
  ``type``, ``content``, ``proxied``, ``ttl``, ``comment``; paginated by ``page``/``per_page``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DO_TOKEN = "dop_v1_" + "f" * 64  # never a real token: tests assert it never appears in output
CF_TOKEN = "cf-test-" + "e" * 32
ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"
DO_LIST_KEYS = {
    "vpcs": "vpc:read",
    "actions": "actions:read",
    "images": "image:read",
    "regions": "regions:read",
    "sizes": "sizes:read",
}


@dataclass
class FakeState:
    account: dict[str, Any] = field(
        default_factory=lambda: {
            "droplet_limit": 25,
            "floating_ip_limit": 5,
            "email": "ops@conciliaextrato.com",
            "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
            "email_verified": True,
            "status": "active",
            "status_message": " ",
        }
    )
    vpcs: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "id": "d455e75d-4858-4eec-8c95-da2f0a5f93a7",
                "urn": "do:vpc:d455e75d-4858-4eec-8c95-da2f0a5f93a7",
                "name": "default-nyc3",
                "description": "",
                "region": "nyc3",
                "ip_range": "10.100.0.0/20",
                "created_at": "2019-11-19T22:19:35Z",
                "default": True,
            }
        ]
    )
    do_missing_scopes: set[str] = field(default_factory=set)
    cf_verify_status: str = "active"
    cf_token_expires_on: str | None = None
    zones: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "id": ZONE_ID,
                "name": "conciliaextrato.com",
                "status": "active",
                "permissions": [
                    "#zone:read",
                    "#dns_records:read",
                    "#dns_records:edit",
                    "#zone_settings:edit",
                ],
            }
        ]
    )
    dns_records: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query)


def dns_record(
    name: str, record_type: str, content: str, record_id: str, comment: str | None = None
) -> dict[str, Any]:
    return {
        "id": record_id,
        "zone_id": ZONE_ID,
        "zone_name": "conciliaextrato.com",
        "name": name,
        "type": record_type,
        "content": content,
        "proxiable": True,
        "proxied": True,
        "ttl": 1,
        "comment": comment,
        "tags": [],
        "created_on": "2026-01-01T00:00:00Z",
        "modified_on": "2026-01-01T00:00:00Z",
    }


def _page(items: list[Any], query: dict[str, list[str]]) -> tuple[list[Any], int, int, int]:
    per_page = max(1, int(query.get("per_page", ["20"])[0]))
    page = max(1, int(query.get("page", ["1"])[0]))
    total_pages = max(1, -(-len(items) // per_page))
    return items[(page - 1) * per_page : page * per_page], page, per_page, total_pages


class _Handler(BaseHTTPRequestHandler):
    state: FakeState  # set on the subclass each server makes

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
        pass

    def do_GET(self) -> None:
        self.state.requests.append(("GET", self.path))
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path.startswith("/v2/"):
            self._digitalocean(parts.path.removeprefix("/v2/"), query)
        elif parts.path.startswith("/client/v4/"):
            self._cloudflare(parts.path.removeprefix("/client/v4/"), query)
        else:
            self._send(404, {"id": "not_found", "message": "The resource you requested could not be found."})

    def do_POST(self) -> None:  # doctor must never write: make any attempt loud
        self.state.requests.append(("POST", self.path))
        self._send(405, {"id": "method_not_allowed", "message": "doctor must only read"})

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _digitalocean(self, path: str, query: dict[str, list[str]]) -> None:
        if self.headers.get("Authorization") != f"Bearer {DO_TOKEN}":
            return self._send(401, {"id": "Unauthorized", "message": "Unable to authenticate you"})
        scope = "account:read" if path == "account" else DO_LIST_KEYS.get(path)
        if scope is None:
            return self._send(
                404, {"id": "not_found", "message": "The resource you requested could not be found."}
            )
        if scope in self.state.do_missing_scopes:
            return self._send(
                403, {"id": "Forbidden", "message": "You are not authorized to perform this operation"}
            )
        if path == "account":
            return self._send(200, {"account": self.state.account})
        items = self.state.vpcs if path == "vpcs" else []
        shown, page, per_page, total_pages = _page(items, query)
        next_page = {"next": f"http://{self.headers['Host']}/v2/{path}?page={page + 1}&per_page={per_page}"}
        links = {"pages": next_page} if page < total_pages else {}
        return self._send(200, {path: shown, "links": links, "meta": {"total": len(items)}})

    def _cloudflare(self, path: str, query: dict[str, list[str]]) -> None:
        if self.headers.get("Authorization") != f"Bearer {CF_TOKEN}":
            return self._cf_error(401, 1000, "Invalid API Token")
        if path == "user/tokens/verify":
            result = {"id": "ed17574386854bf78a67040be0a770b0", "status": self.state.cf_verify_status}
            if self.state.cf_token_expires_on:
                result["expires_on"] = self.state.cf_token_expires_on
            return self._cf_ok(result, [{"code": 10000, "message": "This API Token is valid and active"}])
        if path == "zones":
            names = query.get("name", [])
            zones = [z for z in self.state.zones if not names or z["name"] == names[0]]
            return self._cf_list(zones, query)
        zone_id, _, rest = path.removeprefix("zones/").partition("/")
        if rest == "dns_records" and any(z["id"] == zone_id for z in self.state.zones):
            if "#dns_records:read" not in self._zone(zone_id).get("permissions", ["#dns_records:read"]):
                return self._cf_error(403, 10000, "Authentication error")
            return self._cf_list([r for r in self.state.dns_records if r["zone_id"] == zone_id], query)
        return self._cf_error(
            404, 7003, "Could not route to /" + path + ", perhaps your object identifier is invalid?"
        )

    def _zone(self, zone_id: str) -> dict[str, Any]:
        return next(z for z in self.state.zones if z["id"] == zone_id)

    def _cf_ok(self, result: Any, messages: list[dict[str, Any]] | None = None) -> None:
        self._send(200, {"success": True, "errors": [], "messages": messages or [], "result": result})

    def _cf_list(self, items: list[Any], query: dict[str, list[str]]) -> None:
        shown, page, per_page, total_pages = _page(items, query)
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(shown),
            "total_count": len(items),
            "total_pages": total_pages,
        }
        self._send(200, {"success": True, "errors": [], "messages": [], "result": shown, "result_info": info})

    def _cf_error(self, status: int, code: int, message: str) -> None:
        self._send(
            status,
            {
                "success": False,
                "errors": [{"code": code, "message": message}],
                "messages": [],
                "result": None,
            },
        )

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass(frozen=True)
class FakeApis:
    state: FakeState
    base: str  # http://127.0.0.1:PORT

    @property
    def digitalocean_url(self) -> str:
        return self.base

    @property
    def cloudflare_url(self) -> str:
        return f"{self.base}/client/v4"


@contextmanager
def fake_apis(state: FakeState | None = None) -> Iterator[FakeApis]:
    """Serve both APIs on 127.0.0.1 (a free port) until the block ends."""
    current = state or FakeState()
    handler = type("Handler", (_Handler,), {"state": current})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield FakeApis(current, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
