"""The DigitalOcean calls of the managed-database fork (ops/backups_fork.py), through pydo.

The token (``DIGITALOCEAN_TOKEN``) travels only in pydo's Authorization header; errors carry the
HTTP status and DigitalOcean's own message (ops/doctor_apis.py), never the token. The base URL
override is doctor's, for tests only (``BANKFLOW_DOCTOR_DIGITALOCEAN_URL``: https, or http to
loopback). Calls are bounded: 5 s to connect, 30 s to read, one retry (a create is retried by
pydo only on a connection error, before the request reached DigitalOcean).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

# doctor's error reading, shared: DigitalOcean's {id, message} body, never the token.
from bankflow_infra.ops.doctor_apis import (
    ApiError,
    Endpoint,
    as_mapping,
    digitalocean_client,
    digitalocean_message,
)

READ_TIMEOUT_SECONDS: Final = 30.0  # a fork's create answers slower than doctor's reads


class PydoDatabases:
    API = "DigitalOcean"

    def __init__(self, api_token: str, where: Endpoint) -> None:
        import pydo  # lazy: only the managed restore needs it

        self.base_url = where.base_url
        self._client, self._options = digitalocean_client(pydo, api_token, where, READ_TIMEOUT_SECONDS)

    def clusters(self) -> list[Mapping[str, Any]]:
        # GET /v2/databases is not paginated (pydo list_clusters takes no page/per_page).
        document = self._call(self._client.databases.list_clusters)
        return [as_mapping(item) for item in document.get("databases") or []]

    def backups(self, cluster_id: str) -> list[Mapping[str, Any]]:
        document = self._call(self._client.databases.list_backups, database_cluster_uuid=cluster_id)
        return [as_mapping(item) for item in document.get("backups") or []]

    def firewall(self, cluster_id: str) -> list[Mapping[str, Any]]:
        document = self._call(self._client.databases.list_firewall_rules, database_cluster_uuid=cluster_id)
        return [as_mapping(item) for item in document.get("rules") or []]

    def create(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        document = self._call(self._client.databases.create_cluster, body=dict(body))
        return as_mapping(document.get("database"))

    def cluster(self, cluster_id: str) -> Mapping[str, Any]:
        document = self._call(self._client.databases.get_cluster, database_cluster_uuid=cluster_id)
        return as_mapping(document.get("database"))

    def set_firewall(self, cluster_id: str, rules: Sequence[Mapping[str, Any]]) -> None:
        self._call(self._client.databases.update_firewall_rules, database_cluster_uuid=cluster_id,
                   body={"rules": [dict(rule) for rule in rules]})

    def _call(self, operation: Callable[..., Any], **arguments: Any) -> Mapping[str, Any]:
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            return as_mapping(operation(**arguments, **self._options))
        except HttpResponseError as error:
            raise ApiError(self.API, error.status_code, digitalocean_message(error)) from None
        except AzureError as error:
            raise ApiError(self.API, None, f"cannot reach {self.base_url} ({type(error).__name__})") from None
