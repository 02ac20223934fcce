"""The two cloud APIs ``bankflow-infra doctor`` reads, and nothing else: read-only GETs.

DigitalOcean through ``pydo`` (DigitalOcean's official client; its ``endpoint`` keyword points
it at another base URL), Cloudflare through ``httpx`` (four GETs of the v4 API; Cloudflare's own
SDK would add a large generated package for them). Each failure is one :class:`ApiError` with
the HTTP status and the API's own message -- never the token: the token only ever travels in the
``Authorization`` header.

Base URLs are overridable for tests only, through :data:`DIGITALOCEAN_URL_ENV` and
:data:`CLOUDFLARE_URL_ENV`: an ``https://`` URL, or ``http://`` to a loopback address (the token
then never leaves the machine; pydo refuses a bearer token over plain HTTP otherwise).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

DIGITALOCEAN_TOKEN_ENV: Final = "DIGITALOCEAN_TOKEN"  # noqa: S105 - a variable name
CLOUDFLARE_TOKEN_ENV: Final = "CLOUDFLARE_API_TOKEN"  # noqa: S105 - a variable name
DIGITALOCEAN_URL_ENV: Final = "BANKFLOW_DOCTOR_DIGITALOCEAN_URL"
CLOUDFLARE_URL_ENV: Final = "BANKFLOW_DOCTOR_CLOUDFLARE_URL"
DIGITALOCEAN_URL: Final = "https://api.digitalocean.com"
CLOUDFLARE_URL: Final = "https://api.cloudflare.com/client/v4"

CONNECT_TIMEOUT_SECONDS: Final = 5.0
READ_TIMEOUT_SECONDS: Final = 15.0
PAGE_SIZE: Final = 200  # DigitalOcean's per_page maximum (shared/parameters.yml in digitalocean/openapi)
MAX_PAGES: Final = 50  # bounded: 10,000 VPCs or DNS records is far beyond any account of ours
_LOOPBACK_NAMES: Final = ("localhost",)


class ApiError(Exception):
    """An API answered with an error, or could not be reached (``status`` None)."""

    def __init__(self, api: str, status: int | None, message: str) -> None:
        self.api = api
        self.status = status
        self.message = message
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{api}: {where}: {message}")


class ConfigError(ValueError):
    """A missing token or a bad base-URL override: bad input, named by its variable."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    overridden: bool  # set through the environment: tests and debugging only

    @property
    def is_plain_http(self) -> bool:
        return self.base_url.startswith("http://")


def endpoint(environ: Mapping[str, str], variable: str, default: str) -> Endpoint:
    """The base URL of one API: ``default``, or the override in ``variable`` when it is safe."""
    value = environ.get(variable, "").strip()
    if not value:
        return Endpoint(default, overridden=False)
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return Endpoint(value.rstrip("/"), overridden=True)
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return Endpoint(value.rstrip("/"), overridden=True)
    raise ConfigError(
        f"{variable}={value!r} is not usable: give an https:// URL, or http:// to a loopback "
        "address (127.0.0.1, ::1, localhost); it is for tests only"
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token(environ: Mapping[str, str], variable: str) -> str:
    value = environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f'{variable} is not set: export it with the API token (see README "Credentials")')
    return value


# --------------------------------------------------------------------------- DigitalOcean


class DigitalOceanApi(Protocol):
    def account(self) -> Mapping[str, Any]: ...
    def vpcs(self) -> list[Mapping[str, Any]]: ...
    def probe(self, scope: str) -> None: ...


def digitalocean_client(
    pydo: Any, api_token: str, where: Endpoint, read_timeout: float
) -> tuple[Any, dict[str, Any]]:
    """A pydo client with bounded timeouts and one retry, and the per-call options: azure-core
    refuses a bearer token over http://, allowed only for a loopback override (``where``)."""
    client = pydo.Client(
        api_token,
        endpoint=where.base_url,
        connection_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retry_total=1,
    )
    return client, ({"enforce_https": False} if where.is_plain_http else {})


class PydoDigitalOcean:
    """``GET /v2/account``, ``/v2/vpcs`` (all pages) and one-item reads that prove a read scope."""

    API = "DigitalOcean"

    def __init__(self, api_token: str, where: Endpoint) -> None:
        import pydo  # lazy: only doctor needs it, and the CLI's other commands start faster

        self.base_url = where.base_url
        # Short timeouts and one retry: a pre-flight must answer in seconds, not pydo's 120 s.
        self._client, self._options = digitalocean_client(pydo, api_token, where, READ_TIMEOUT_SECONDS)

    def account(self) -> Mapping[str, Any]:
        document = self._call(self._client.account.get)
        return as_mapping(document.get("account"))

    def vpcs(self) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            document = self._call(self._client.vpcs.list, per_page=PAGE_SIZE, page=page)
            found.extend(as_mapping(vpc) for vpc in document.get("vpcs") or [])
            if not as_mapping(as_mapping(document.get("links")).get("pages")).get("next"):
                break
        return found

    def probe(self, scope: str) -> None:
        """A one-item read that needs ``scope``; raises ApiError (403) without it."""
        operation = {
            "actions:read": self._client.actions.list,
            "image:read": self._client.images.list,
            "regions:read": self._client.regions.list,
            "sizes:read": self._client.sizes.list,
            "vpc:read": self._client.vpcs.list,
        }[scope]
        self._call(operation, per_page=1)

    def _call(self, operation: Callable[..., Any], **arguments: Any) -> Mapping[str, Any]:
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            return as_mapping(operation(**arguments, **self._options))
        except HttpResponseError as error:
            status = error.status_code
            raise ApiError(self.API, status, digitalocean_message(error)) from None
        except AzureError as error:
            raise ApiError(self.API, None, f"cannot reach {self.base_url} ({type(error).__name__})") from None


def digitalocean_message(error: Any) -> str:
    # DigitalOcean's error body is {"id": ..., "message": ...}
    # (digitalocean/openapi specification/shared/models/error.yml).
    try:
        body = error.response.json()
    except ValueError:  # an unreadable body: fall back to the reason
        body = None
    if isinstance(body, dict) and body.get("message"):
        return f"{body.get('id', 'error')}: {body['message']}"
    return str(getattr(error, "reason", "") or "error")


# --------------------------------------------------------------------------- Cloudflare


class CloudflareApi(Protocol):
    def verify_token(self) -> Mapping[str, Any]: ...
    def zone(self, name: str) -> Mapping[str, Any] | None: ...
    def dns_records(self, zone_id: str) -> list[Mapping[str, Any]]: ...


class HttpxCloudflare:
    """``/user/tokens/verify``, ``/zones?name=``, ``/zones/{id}/dns_records`` (all pages)."""

    API = "Cloudflare"

    def __init__(self, api_token: str, where: Endpoint) -> None:
        self.base_url = where.base_url
        self._client = httpx.Client(
            base_url=where.base_url + "/",
            headers={"Authorization": f"Bearer {api_token}"},
            timeout=httpx.Timeout(READ_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            transport=httpx.HTTPTransport(retries=1),
            trust_env=False,  # a proxy variable must not reroute a credentialed pre-flight
        )

    def close(self) -> None:
        self._client.close()

    def verify_token(self) -> Mapping[str, Any]:
        return as_mapping(self._get("user/tokens/verify").get("result"))

    def zone(self, name: str) -> Mapping[str, Any] | None:
        zones = self._get("zones", {"name": name, "per_page": 5}).get("result") or []
        exact = [as_mapping(z) for z in zones if as_mapping(z).get("name") == name]
        return exact[0] if exact else None

    def dns_records(self, zone_id: str) -> list[Mapping[str, Any]]:
        return list(self._pages(f"zones/{zone_id}/dns_records"))

    def _pages(self, path: str) -> Iterator[Mapping[str, Any]]:
        for page in range(1, MAX_PAGES + 1):
            document = self._get(path, {"page": page, "per_page": PAGE_SIZE})
            yield from (as_mapping(item) for item in document.get("result") or [])
            info = as_mapping(document.get("result_info"))
            if page >= int(info.get("total_pages") or 1):
                return

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        try:
            response = self._client.get(path, params=dict(params or {}))
        except httpx.HTTPError as error:
            raise ApiError(self.API, None, f"cannot reach {self.base_url} ({type(error).__name__})") from None
        try:
            document = as_mapping(response.json())
        except ValueError:
            document = {}
        if response.status_code >= 400 or document.get("success") is False:
            raise ApiError(self.API, response.status_code, _cloudflare_message(document))
        return document


def _cloudflare_message(document: Mapping[str, Any]) -> str:
    # Cloudflare's envelope: {"success": false, "errors": [{"code": 1000, "message": ...}], ...}
    # (cloudflare/api-schemas, components.schemas *_api-response-common-failure).
    errors = [as_mapping(e) for e in document.get("errors") or []]
    described = [f"{e.get('code')} {e.get('message')}" for e in errors if e.get("message")]
    return "; ".join(described) or "error without a message"


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
