"""The typed settings of one stack, with every default and every validation rule.

Stack config (``Pulumi.<stack>.yaml``, namespace ``bankflow``) arrives here as plain Python
values (``pulumi.Config`` / YAML). :func:`parse_settings` turns it into frozen dataclasses or
raises one :class:`SettingsError` listing *every* problem with its full key
(``bankflow:server.size: ...``) and what would be valid -- before any resource exists.

Imports nothing from pulumi so the renderers, the ops CLI and the tests can use it.

- ``model``: the dataclasses and ``SettingsError``
- ``defaults``: every default (``defaults(environment)``), the namespace and the top-level keys
- ``checks``: the problem collector and the typed checks the parsers share
- ``server`` / ``edge`` / ``release`` / ``operations``: one parser per config section
- ``scale``: ``database`` / ``cache`` / ``uploads`` (issue 13) and the checks across them and the server
- ``parse``: ``parse_settings`` and the checks across sections
"""

from bankflow_infra.contract.services import APP_SERVICES, ENVIRONMENTS, Environment
from bankflow_infra.settings.checks import namespace_problems
from bankflow_infra.settings.defaults import (
    CONFIG_NAMESPACES,
    DROPLET_IMAGE,
    NAMESPACE,
    SECRET_KEYS,
    TOP_LEVEL_KEYS,
    defaults,
)
from bankflow_infra.settings.edge import (
    ORIGIN_CERT_VALIDITIES,
    advanced_certificate_hosts,
    below_universal_ssl,
)
from bankflow_infra.settings.model import (
    AlertSettings,
    BackupSettings,
    EdgeSettings,
    MaintenanceWindow,
    ManagedCacheSettings,
    ManagedDatabaseSettings,
    NginxSettings,
    ReleaseSettings,
    ScaleSettings,
    ServerSettings,
    Settings,
    SettingsError,
    SharedUploadsSettings,
)
from bankflow_infra.settings.parse import environment_of_stack_name, parse_settings
from bankflow_infra.settings.server import DO_RESERVED_RANGES
from bankflow_infra.settings.slugs import SPACES_REGIONS

__all__ = [
    "APP_SERVICES",
    "CONFIG_NAMESPACES",
    "DO_RESERVED_RANGES",
    "DROPLET_IMAGE",
    "ENVIRONMENTS",
    "NAMESPACE",
    "ORIGIN_CERT_VALIDITIES",
    "SECRET_KEYS",
    "SPACES_REGIONS",
    "TOP_LEVEL_KEYS",
    "AlertSettings",
    "BackupSettings",
    "EdgeSettings",
    "Environment",
    "MaintenanceWindow",
    "ManagedCacheSettings",
    "ManagedDatabaseSettings",
    "NginxSettings",
    "ReleaseSettings",
    "ScaleSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "SharedUploadsSettings",
    "advanced_certificate_hosts",
    "below_universal_ssl",
    "defaults",
    "environment_of_stack_name",
    "namespace_problems",
    "parse_settings",
]
